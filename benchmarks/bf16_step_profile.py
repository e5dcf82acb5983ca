"""Where a training step's time goes, fp32 against bf16: why a faster matmul speeds a step up less.

``bf16_speed.py`` times whole training steps; this script asks what they are made of.  It
builds PreSFT(Hist) and PostGRAG on SmolLM2-135M + LoRA (r 16, alpha 32: the settings of
``bf16_speed.py``, on the same built-in training examples and batches) in four variants.
``--systems`` adds the other families' trained systems at the sequence lengths of their
learning-scale benchmarks: ``questioner-lora`` and ``questioner-dual-tower`` (as
``bf16_speed.py`` builds them from the questioner recipe, with the prompt budgets of
``questioner_pfg.py``), and ``copersona`` (full CoPersona, soft prompt + LoRA, with the model
settings of ``copersona_pfg.py``, on the built-in Persuasion-for-Good users' training items
and a stand-in user context: random facet embeddings, a ring graph and history text in the
text branches, :func:`copersona_context`; no facet stage runs).  The variants:

* **fp32**: everything in float32;
* **bf16**: :func:`personakit.backbones.cast_frozen`, the library's path (frozen backbone in
  bfloat16; LoRA adapters and GRAG's extra modules in float32; peft's LoRA layers cast
  their bf16 input to fp32 and their output back);
* **bf16 + autocast** (a measured alternative, not what the library does): the same weights,
  the step run under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with peft's input cast
  switched off (``peft.helpers.disable_input_dtype_casting``), so the adapters compute in
  bf16 from fp32 master weights and the bf16 activations are not copied to fp32 at every
  adapter.
* **bf16, eager attention** (measured, not the library's default): the bf16 model run under
  :func:`personakit.backbones.attention_implementation` ``(model, "eager")``, transformers' eager
  attention (two batched matmuls and a softmax) in place of its default fused SDPA kernel
  (what ``TrainingConfig.attn_implementation="eager"`` does).

The variants take turns step by step on the same batches from the same weights
(``--steps`` timed after one untimed step each); forward + backward is timed apart from the
AdamW step.  Then one more forward + backward of each is run under ``torch.profiler`` and
its self CPU time is grouped by operator: matrix products, attention, copies and dtype
casts, loss and softmax, and the rest (element-wise ops, norms, embedding).  A
micro-benchmark of one matmul at SmolLM2's shapes (``1024x576 @ 576x1536``) in fp32 and
bf16 in the same process gives the hardware's own ratio beside them.  The loss of the last
timed step of each variant is reported against fp32's.

    python benchmarks/bf16_step_profile.py --threads 1          # ~10 min on 2 cores
    python benchmarks/bf16_step_profile.py --quick              # smoke: batch 4, 1 timed step
    python benchmarks/bf16_step_profile.py --threads 1 --systems questioner-lora questioner-dual-tower copersona \
        --name family_step_profile                                 # the other families' systems

Writes ``benchmarks/results/bf16_step_profile.{json,md,png}`` (``--name`` changes the base
name).  The header records the CPU model and its ``amx_bf16`` / ``avx512_bf16`` flags.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PFG_DATA, RESULTS, command_line, machine_info, machine_line, now, pyplot, save_figure,  # noqa: E402
                     write_results)
from bf16_speed import (QUESTIONER_CONFIG, QUESTIONER_SYSTEMS, build_grag_system, build_questioner,  # noqa: E402
                        error_text, grag_batches, load_questioner_data, merge_setting, whole_batches)

NAME = "bf16_step_profile"
VARIANTS = ("fp32", "bf16", "bf16 + autocast", "bf16, eager attention")
SHARED = ("bf16", "bf16 + autocast", "bf16, eager attention")
"""Variants that run one module (their trainable weights and optimiser state are swapped in before each step)."""
CATEGORIES = ("matrix products", "attention", "copies and dtype casts", "loss and softmax", "other")
MATMUL_SHAPE = (1024, 576, 1536)  # (rows, inner, columns): SmolLM2's MLP up-projection at 1024 tokens
SETTINGS = {"default": dict(batch_size=8, steps=4, examples=96), "quick": dict(batch_size=4, steps=1, examples=8)}
GRAG_SYSTEMS = ("PreSFT(Hist)", "PostGRAG")
DATA_LABELS = {"pfg": " (PFG-Questioner)", "SPC": " (SPC)", "PFG": " (PFG)", "ED": " (ED)"}
SYSTEMS = GRAG_SYSTEMS + tuple(QUESTIONER_SYSTEMS) + ("copersona",)
COPERSONA_FACETS, COPERSONA_FACET_DIM = 8, 384
"""The synthetic CoPersona context: facets per user and the facet-embedding size (MiniLM's)."""


def sequence_lengths(collated: list[dict]) -> dict[str, float]:
    """Mean padded length and mean real tokens per sequence of the batches (soft-prompt tokens not counted)."""
    padded = [float(b["input_ids"].shape[1]) for b in collated]
    real = [float(b["attention_mask"].sum()) / b["attention_mask"].shape[0] for b in collated]
    return {"padded_length": statistics.mean(padded), "tokens_per_sequence": statistics.mean(real)}


def questioner_examples(source: str) -> tuple[Any, list]:
    """The questioner recipe's ``tiny`` config and training examples assigned to its question clusters: the
    built-in corpus (``builtin``) or PFG-Questioner's training split as ``questioner_pfg.py`` builds it
    (``pfg``: its default split and merged history turns, from ``../shared/data``; prompts of its length)."""
    if source == "builtin":
        return load_questioner_data()
    from questioner_pfg import SETTINGS as Q_SETTINGS

    from personakit.data import build_pfg_questioner_task
    from personakit.modules.question_clusterer import QuestionClusterer
    from personakit.recipes.base import load_recipe_config

    config = load_recipe_config("questioner", QUESTIONER_CONFIG)
    q = Q_SETTINGS["default"]
    if not PFG_DATA.exists():
        raise SystemExit(f"--questioner-data pfg: no Persuasion-for-Good folder at {PFG_DATA}")
    train = build_pfg_questioner_task(PFG_DATA, split_by="turn", split_fractions=q["split_fractions"],
                                      history_turns=q["history_turns"])["train"]
    return config, QuestionClusterer(**config.clusterer.to_dict()).assign(train, fit=True)


def build_questioner_system(label: str, base: Any, tokenizer: Any, args: argparse.Namespace
                            ) -> tuple[Any, list[dict], dict[str, Any]]:
    """``questioner-lora`` / ``questioner-dual-tower`` as ``bf16_speed.py`` builds them (the recipe's ``tiny``
    systems), on ``--questioner-data``'s examples with the prompt budgets of ``questioner_pfg.py``'s default
    setting."""
    from questioner_pfg import SETTINGS as Q_SETTINGS

    source = getattr(args, "questioner_data", "builtin")
    config, train = questioner_examples(source)
    q = Q_SETTINGS["default"]
    inputs = {"max_prompt_tokens": q["prompt_tokens"], "max_response_tokens": q["response_tokens"]}
    ns = argparse.Namespace(**{**vars(args), "steps": args.steps + 2})
    reference, collated, info = build_questioner(label, base, tokenizer, config, train, ns, inputs=inputs)
    return reference, collated, {**info, "inputs": inputs, "data": source}


def copersona_context(users: list[Any], seed: int) -> Any:
    """A stand-in :class:`~personakit.models.copersona.CoPersonaContext` over ``users`` with no facet stage.

    The text branches get text of the lengths they have in ``copersona_pfg.py`` (the profile summary: the
    user's first 60 history words; the peer context: the next user's first 100); the graph gets random
    facet embeddings (:data:`COPERSONA_FACETS` x :data:`COPERSONA_FACET_DIM`), random reliability levels
    and a ring of neighbours (each user hears the users before and after it).  Step time depends on the
    shapes, not on what the text says.
    """
    import torch

    from personakit.models.copersona import CoPersonaContext

    ids = [u.user_id for u in users]
    n = len(ids)
    words = {u.user_id: " ".join(item.text for item in u.items).split() for u in users}
    g = torch.Generator().manual_seed(seed)
    src = torch.tensor([(i + 1) % n for i in range(n)] + [(i - 1) % n for i in range(n)])
    dst = torch.tensor(list(range(n)) * 2)
    return CoPersonaContext(
        user_ids=ids, histories={u.user_id: u for u in users},
        profile_summary={u: "Hobbies: " + " ".join(words[u][:60]) for u in ids},
        peer_context={u: "[Hobbies]\n- peer (similarity 0.80): " + " ".join(words[ids[(i + 1) % n]][:100])
                      for i, u in enumerate(ids)},
        facet_embeddings=torch.randn(n, COPERSONA_FACETS, COPERSONA_FACET_DIM, generator=g),
        reliability=torch.randint(0, 4, (n, COPERSONA_FACETS), generator=g), edge_index=torch.stack([src, dst]))


def build_copersona_system(base: Any, tokenizer: Any, args: argparse.Namespace
                           ) -> tuple[Any, list[dict], dict[str, Any]]:
    """Full CoPersona (soft prompt from the facet graph + LoRA r 16, alpha 32) with the model settings of
    ``copersona_pfg.py``'s default setting, on the built-in Persuasion-for-Good users' training items and a
    stand-in context (:func:`copersona_context`)."""
    import torch
    from copersona_pfg import SETTINGS as C_SETTINGS

    from personakit.data import builtin_pfg_dialogues
    from personakit.data.copersona_users import build_pfg_users
    from personakit.models.copersona import CoPersonaModel

    data = build_pfg_users(builtin_pfg_dialogues(), seed=args.seed)
    pool = data.train or data.test
    need = (args.steps + 2) * args.batch_size
    items = [pool[i % len(pool)] for i in range(need)]
    m = C_SETTINGS["default"]["model"]
    torch.manual_seed(args.seed)
    reference = CoPersonaModel.from_backbone(
        copy.deepcopy(base), tokenizer, context=copersona_context(data.users, args.seed), variant="copersona",
        num_facets=COPERSONA_FACETS, facet_dim=COPERSONA_FACET_DIM,
        lora={"r": 16, "lora_alpha": 32, "lora_dropout": 0.05}, **m)
    collator = reference.make_collator()
    collated = [collator(items[i:i + args.batch_size]) for i in range(0, need, args.batch_size)]
    return reference, collated, {"kind": "copersona", "settings": dict(m), "users": len(data.users),
                                 "items": len(pool)}


def grag_quality_settings() -> dict[str, Any]:
    """``grag_quality.py``'s default setting (its token budgets ``lengths``)."""
    from grag_quality import SETTINGS as GQ_SETTINGS

    return GQ_SETTINGS["default"]


def grag_quality_batches(args: argparse.Namespace) -> tuple[list[list], dict[str, int]]:
    """Full batches of the first ``args.examples`` training examples of ``grag_quality.py``'s prepared
    ``--grag-data`` dataset (its work folder, generic responses included) and that benchmark's token budgets."""
    from grag_quality import NAME as GQ_NAME

    from personakit.augment import load_examples

    path = RESULTS / "tmp" / f"{GQ_NAME}-default" / args.grag_data / "train.jsonl"
    if not path.is_file():
        raise SystemExit(f"--grag-data {args.grag_data}: {path} is missing; grag_quality.py writes it when it "
                         f"prepares {args.grag_data} (python benchmarks/grag_quality.py --datasets {args.grag_data} "
                         "--only sanity)")
    batches = whole_batches(load_examples(path)[:args.examples], args.batch_size)
    p, h, g, r = grag_quality_settings()["lengths"]
    return batches, {"max_persona_tokens": p, "max_history_tokens": h, "max_generic_tokens": g,
                     "max_response_tokens": r}


def build_system(label: str, base: Any, tokenizer: Any, batches: list[list] | None, args: argparse.Namespace
                 ) -> tuple[Any, list[dict], dict[str, Any]]:
    """System ``label``'s fp32 model, its collated batches and its description (with the sequence lengths)."""
    if label in GRAG_SYSTEMS and getattr(args, "grag_data", "builtin") != "builtin":
        batches, lengths = grag_quality_batches(args)
        reference, collated, info = build_grag_system(label, base, tokenizer, batches, args.seed, lengths)
        info = {**info, "data": args.grag_data, "lengths": lengths}
    elif label in GRAG_SYSTEMS:
        reference, collated, info = build_grag_system(label, base, tokenizer, batches, args.seed)
    elif label in QUESTIONER_SYSTEMS:
        reference, collated, info = build_questioner_system(label, base, tokenizer, args)
    else:
        reference, collated, info = build_copersona_system(base, tokenizer, args)
    return reference, collated, {**info, **sequence_lengths(collated)}


def categorise(name: str) -> str:
    """The :data:`CATEGORIES` entry of a profiler event named ``name`` (an ``aten::`` operator)."""
    op = name.split("::", 1)[-1].lower()
    if "scaled_dot_product" in op or "flash_attention" in op or op.startswith("_efficient_attention"):
        return "attention"
    if op in {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "linear", "dot", "mv"} or op.startswith("mkldnn"):
        return "matrix products"
    if op in {"copy_", "_to_copy", "to", "clone", "contiguous", "_copy_from", "_copy_from_and_resize"}:
        return "copies and dtype casts"
    if "softmax" in op or op.startswith("nll_loss") or op.startswith("cross_entropy"):
        return "loss and softmax"
    return "other"


def breakdown(events: Iterable[Any]) -> dict[str, float]:
    """Self CPU seconds per category over profiler ``key_averages()`` rows (``aten::`` operators only)."""
    out = {c: 0.0 for c in CATEGORIES}
    for event in events:
        if not event.key.startswith("aten::"):
            continue  # autograd / profiler bookkeeping: their own (self) time is tiny and not an operator's
        out[categorise(event.key)] += event.self_cpu_time_total / 1e6
    return out


def matmul_rate(dtype: Any, repeats: int = 20) -> float:
    """GFLOP/s of one ``MATMUL_SHAPE`` product in ``dtype`` (median of ``repeats`` after two warm-ups)."""
    import torch

    m, k, n = MATMUL_SHAPE
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        a @ b
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def variant_context(variant: str, model: Any) -> contextlib.ExitStack:
    """The context a step of ``variant`` runs in: autocast with peft's input cast off, or eager attention
    (:func:`personakit.backbones.attention_implementation`), or nothing."""
    import torch

    from personakit.backbones import attention_implementation

    stack = contextlib.ExitStack()
    if variant == "bf16 + autocast":
        from peft.helpers import disable_input_dtype_casting

        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        stack.enter_context(disable_input_dtype_casting(model))
    elif variant == "bf16, eager attention":
        stack.enter_context(attention_implementation(model, "eager"))
    return stack


def trainable_state(model: Any) -> dict[str, Any]:
    """A copy of ``model``'s trainable parameters (the frozen ones never change), for ``load_state_dict(strict=False)``."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def forward_backward(model: Any, batch: dict, variant: str) -> float:
    with variant_context(variant, model):
        loss = model(**batch).loss
    loss.backward()
    return float(loss.detach())


def profile_system(label: str, reference: Any, collated: list[dict], info: dict[str, Any], args: argparse.Namespace
                   ) -> dict[str, Any]:
    """Time and profile the four variants of system ``label`` (``reference``: its fp32 model) on the batches
    ``collated`` (see the module docstring)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from personakit.backbones import cast_frozen

    models = {"fp32": reference}
    bf16 = cast_frozen(copy.deepcopy(reference), torch.bfloat16)
    models["bf16"] = bf16
    for variant in SHARED[1:]:
        models[variant] = bf16  # the same module; only the context of its step differs
    optimizers = {v: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
                  for v, m in models.items()}
    runs: dict[str, dict[str, Any]] = {v: {"fwd_bwd_s": [], "optimizer_s": [], "losses": []} for v in VARIANTS}
    for model in models.values():
        model.train()
    # interleaved: the variants take turns on each batch (each bf16 variant's own trainable weights swapped in)
    states = {v: trainable_state(models[v]) for v in SHARED}
    opt_states = {v: copy.deepcopy(optimizers[v].state_dict()) for v in SHARED}
    failed: dict[str, str] = {}  # variant -> its error (a bf16 variant the model cannot run; fp32 must run)
    for step in range(args.steps + 1):
        batch = collated[step % len(collated)]
        for variant in [v for v in VARIANTS if v not in failed]:
            model, optimizer = models[variant], optimizers[variant]
            if variant in SHARED:  # the bf16 variants share one module: load this variant's own state
                model.load_state_dict(states[variant], strict=False)
                optimizer.load_state_dict(opt_states[variant])
            torch.manual_seed(args.seed * 100_003 + step)  # the same dropout masks for every variant
            start = time.perf_counter()
            try:
                loss = forward_backward(model, batch, variant)
            except (RuntimeError, NotImplementedError) as err:
                if variant == "fp32":
                    raise
                failed[variant] = error_text(err)
                print(f"  {label} {variant}: failed ({failed[variant]}); left out", flush=True)
                model.zero_grad(set_to_none=True)
                continue
            middle = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end = time.perf_counter()
            if variant in SHARED:
                states[variant] = trainable_state(model)
                opt_states[variant] = copy.deepcopy(optimizer.state_dict())
            if step > 0:  # the first step of each is untimed
                runs[variant]["fwd_bwd_s"].append(middle - start)
                runs[variant]["optimizer_s"].append(end - middle)
            runs[variant]["losses"].append(loss)
        print(f"  {label} step {step}/{args.steps}: " + ", ".join(
            f"{v} {runs[v]['losses'][-1]:.4f}" + (f" ({runs[v]['fwd_bwd_s'][-1]:.2f} s)" if step else "")
            for v in VARIANTS if v not in failed), flush=True)

    out: dict[str, Any] = {"system": label, **info, "variants": {v: {"error": e} for v, e in failed.items()}}
    batch = collated[(args.steps + 1) % len(collated)]
    for variant in [v for v in VARIANTS if v not in failed]:
        model = models[variant]
        if variant in SHARED:
            model.load_state_dict(states[variant], strict=False)
        torch.manual_seed(args.seed)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward_backward(model, batch, variant)
        model.zero_grad(set_to_none=True)
        cats = breakdown(prof.key_averages())
        total = sum(cats.values())
        run = runs[variant]
        out["variants"][variant] = {
            "median_fwd_bwd_s": statistics.median(run["fwd_bwd_s"]),
            "median_optimizer_s": statistics.median(run["optimizer_s"]),
            "fwd_bwd_s": run["fwd_bwd_s"], "optimizer_s": run["optimizer_s"], "losses": run["losses"],
            "profiled_s": total, "categories_s": cats,
            "top_ops": [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count}
                        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]]}
    fp32 = out["variants"]["fp32"]
    for variant in [v for v in VARIANTS if v not in failed]:
        v = out["variants"][variant]
        v["ratio_to_fp32"] = v["median_fwd_bwd_s"] / fp32["median_fwd_bwd_s"]
        v["last_loss_gap"] = abs(v["losses"][-1] - fp32["losses"][-1]) / abs(fp32["losses"][-1])
    del models, optimizers, reference, bf16, states, opt_states
    gc.collect()
    return out


def plot(report: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    rows = [(f"{s['system']}\n{v}", s["variants"][v]["categories_s"]) for s in report["systems"] for v in VARIANTS
            if "error" not in s["variants"][v]]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.4))
    left = [0.0] * len(rows)
    for cat in CATEGORIES:
        values = [c[cat] for _, c in rows]
        ax.barh(range(len(rows)), values, left=left, label=cat)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(range(len(rows)), [r for r, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("self CPU seconds of one forward + backward (torch.profiler)")
    ax.set_title(f"{report['machine'].get('cpu', 'CPU')} (AMX {'yes' if report['precision'].get('amx_bf16') else 'no'}),"
                 f" {report['threads']} thread(s)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
    return True


def to_markdown(report: dict[str, Any]) -> str:
    p = report["precision"]
    mm = report["matmul"]
    lines = [f"# Where a training step's time goes: fp32 against bf16", "",
             f"Command: `{report['command']}`; {report['date']}.", "",
             f"CPU **{report['machine'].get('cpu')}**: `amx_bf16` {'yes' if p.get('amx_bf16') else 'no'}, "
             f"`avx512_bf16` {'yes' if p.get('avx512_bf16') else 'no'}; {report['threads']} torch thread(s); "
             f"1-minute load average {report['load_at_start'][0]:.2f} at the start.", "",
             f"SmolLM2-135M + LoRA (r 16, alpha 32), batch {report['setting']['batch_size']} of the built-in corpus' "
             f"training examples (GRAG: the batches of `bf16_speed.py`), {report['setting']['steps']} timed steps per variant "
             "after one untimed, the variants interleaved step by step from the same weights. *bf16*: `cast_frozen` (the "
             "library's path); *bf16 + autocast*: the same weights under `torch.autocast` with peft's input cast off "
             "(measured here, not the library's default); *bf16, eager attention*: `cast_frozen` with transformers' eager "
             "attention in place of SDPA (measured here, not the library's default).", "",
             f"One matmul `{MATMUL_SHAPE[0]}x{MATMUL_SHAPE[1]} @ {MATMUL_SHAPE[1]}x{MATMUL_SHAPE[2]}` in the same "
             f"process: fp32 {mm['fp32_gflops']:.0f} GFLOP/s, bf16 {mm['bf16_gflops']:.0f} GFLOP/s "
             f"(**{mm['bf16_gflops'] / mm['fp32_gflops']:.1f}x**).", "",
             "## Step time", "",
             "| system | variant | forward + backward, median (s) | / fp32 | AdamW step (s) | last loss | gap to fp32 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in report["systems"]:
        for v in VARIANTS:
            r = s["variants"][v]
            if "error" in r:
                lines.append(f"| {s['system']} | {v} | failed: {r['error']} | | | | |")
                continue
            lines.append(f"| {s['system']} | {v} | {r['median_fwd_bwd_s']:.2f} | {r['ratio_to_fp32']:.2f}x | "
                         f"{r['median_optimizer_s']:.3f} | {r['losses'][-1]:.4f} | {100 * r['last_loss_gap']:.2f} % |")
    lines += ["", "Sequences (mean over the batches; soft-prompt tokens not counted): " + "; ".join(
        f"{s['system']}{DATA_LABELS.get(s.get('data'), '')} {s['padded_length']:.0f} padded, "
        f"{s['tokens_per_sequence']:.0f} real tokens"
        for s in report["systems"] if "padded_length" in s) + "."]
    lines += ["", "## What the time is spent on", "",
              "Self CPU time of one profiled forward + backward, by operator group (share of the profiled total):", "",
              "| system | variant | total (s) | " + " | ".join(CATEGORIES) + " |",
              "|---|---|---:|" + "---:|" * len(CATEGORIES)]
    for s in report["systems"]:
        for v in [v for v in VARIANTS if "error" not in s["variants"][v]]:
            r = s["variants"][v]
            cells = [f"{r['categories_s'][c]:.2f} ({100 * r['categories_s'][c] / r['profiled_s']:.0f} %)"
                     for c in CATEGORIES]
            lines.append(f"| {s['system']} | {v} | {r['profiled_s']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Top operators of the bf16 variant (self time):", ""]
    for s in report["systems"]:
        ops = ", ".join(f"`{o['op']}` {o['self_s']:.2f} s ({o['calls']} calls)" for o in s["variants"]["bf16"]["top_ops"][:5])
        lines.append(f"* {s['system']}: {ops}")
    lines += ["", f"Plot: `{report['plot']}`." if report.get("plot") else "", machine_line(report["machine"]),
              f"Wall time {report['wall_time_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke setting (batch 4, 1 timed step, 8 examples)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8")
    parser.add_argument("--systems", nargs="+", default=list(GRAG_SYSTEMS), choices=SYSTEMS,
                        help="GRAG systems (default), the questioner recipe's and full CoPersona")
    parser.add_argument("--grag-data", choices=["builtin", "SPC", "PFG", "ED"], default="builtin",
                        help="the GRAG systems' examples: the built-in corpus with grag_step_time.py's token budgets, or "
                             "a dataset grag_quality.py has prepared, with its budgets (its training lengths)")
    parser.add_argument("--questioner-data", choices=["builtin", "pfg"], default="builtin",
                        help="the questioner systems' examples: the built-in corpus (short prompts) or PFG-Questioner's "
                             "training split (questioner_pfg.py's prompt lengths; needs ../shared/data)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=NAME, help=f"base name of the result files (default {NAME})")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    setting = merge_setting(args, SETTINGS)

    import torch

    from personakit.backbones import describe_precision, load_causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else [float("nan")]
    start = time.perf_counter()
    matmul = {"fp32_gflops": matmul_rate(torch.float32), "bf16_gflops": matmul_rate(torch.bfloat16)}
    print(f"matmul {MATMUL_SHAPE}: fp32 {matmul['fp32_gflops']:.0f} GFLOP/s, bf16 {matmul['bf16_gflops']:.0f} GFLOP/s",
          flush=True)
    batches = grag_batches(args, parser)[1] if set(args.systems) & set(GRAG_SYSTEMS) and args.grag_data == "builtin" \
        else None
    base, tokenizer = load_causal_lm("smollm2")
    systems = []
    for label in args.systems:
        print(f"{label}: {', '.join(VARIANTS)} ...", flush=True)
        reference, collated, info = build_system(label, base, tokenizer, batches, args)
        systems.append(profile_system(label, reference, collated, info, args))
        del reference, collated
    report = {"benchmark": args.name, "date": now(), "command": command_line(argv), "setting": setting,
              "seed": args.seed, "threads": torch.get_num_threads(), "load_at_start": load_at_start,
              "precision": describe_precision(), "matmul": matmul, "systems": systems,
              "wall_time_s": time.perf_counter() - start, "machine": machine_info(("torch", "transformers", "peft"))}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    png = args.out_dir / f"{args.name}.png"
    report["plot"] = png.name if plot(report, png) else None
    md = to_markdown(report)
    write_results(args.name, report, md, args.out_dir)
    print(md)
    return report


if __name__ == "__main__":
    main()
