"""bf16 against fp32 on SmolLM2-135M + LoRA: GRAG and questioner training step time, generation speed, loss curves.

Both precisions run side by side in one process, on the same batches:

* **fp32**: the whole model in float32 (the loaders' default);
* **bf16**: the recipe of :func:`personakit.backbones.cast_frozen`: the frozen backbone
  in bfloat16, the trainable LoRA adapters (r 16, alpha 32, the other LoRA settings at
  their defaults) and GRAG's extra modules in float32, AdamW on the fp32 weights.

(a) **Training steps** of PreSFT(Hist) and PostGRAG (the GRAG settings of
``grag_step_time.py``), on the built-in corpus' training examples with generic responses
written by the embedded SmolLM2 (``grag_step_time.load_examples``, same cache).  Each
system's two precisions start from the same weights (the bf16 model is a cast copy of
the fp32 one) and take turns step by step (fp32, bf16, fp32, ...) on the same batches,
reseeded alike before each step (LoRA dropout), so that a change in machine load hits
both alike.  A step is forward + backward + AdamW step; the median over the steps after
``--warmup`` is reported.
The questioner family's two trained systems (``--systems questioner-lora
questioner-dual-tower``) are built as ``personakit run questioner --config tiny`` builds
them (:func:`~personakit.recipes.questioner.run_questioner_recipe`):
:class:`~personakit.models.questioner.DualTowerResponder` from the backbone, without the
specific stream (``kind: lora``, a plain LoRA fine-tune) or with it and the ``tiny``
settings (``kind: dual-tower``: rank 16, 2 views, contrastive weight 0.5, temperature
0.01), its collator with the config's prompt budgets, the training examples of the
built-in corpus (the recipe's ``builtin`` source) assigned to the config's question
clusters (MiniLM k-means), and the batches of
:class:`~personakit.training.QuestionerTrainer`'s cluster-grouped order (its
``step_indices``; the short last batch of an epoch is skipped).  The loss is the model's
own (:math:`L_{LM} + 0.5 L_{QC}` for the dual tower); its terms are compared too.  A run
of only these systems writes ``questioner_bf16_speed.{json,md,png}`` (and
``_speedup.png``), so the GRAG results are not overwritten, and skips (b) unless
``--generation``.
(b) **Generation** with :class:`~personakit.llm.HFGenerator` (greedy, batch
``--gen-batch-size``) on fixed prompts (the generic-response prompts of the corpus' test
examples), the model loaded with ``dtype=torch.float32`` and ``dtype=torch.bfloat16``;
the prompt passes alone are timed separately (``_common.prompt_pass_seconds``), decoding
is the rest.  Tokens are the re-encoded outputs.
(c) **Loss curves**: every step of (a) is also a point of the loss curves (``--lr``,
``--steps`` steps, same seed and batches).  Tolerance: the mean loss of the last
``min(10, steps // 3)`` steps of bf16 within 2 % of fp32's; the largest relative gap of
the smoothed curves (trailing mean over 5 steps) is reported beside it.

The header records the CPU model, its ``amx_bf16`` and ``avx512_bf16`` flags, the torch
threads and the load average at the start.  A system whose bf16 run fails (e.g. a dtype
mismatch in a module fed bf16 states) is reported with its error; the others still run.

    python benchmarks/bf16_speed.py            # default: batch 8, 30 steps, 32 prompts (~30 min on 2 cores)
    python benchmarks/bf16_speed.py --quick    # smoke setting: batch 4, 6 steps, 8 prompts (~4 min on 2 cores)
    python benchmarks/bf16_speed.py --plot-only   # redraw both plots from the committed JSON (no run)
    python benchmarks/bf16_speed.py --systems questioner-lora questioner-dual-tower   # questioner_bf16_speed.*

Plots: ``bf16_speed.png`` (the loss curves) and ``bf16_speed_speedup.png`` (the fp32 / bf16
time ratios of the training steps and of generation).

``--name`` sets the base name of the result files (default: ``bf16_speed`` when a GRAG
system runs, else ``questioner_bf16_speed``).

The first run with a GRAG system also writes the generic responses of ``--examples`` training examples with
SmolLM2 (a few minutes; cached in ``results/tmp/grag_step_time_llm_cache.jsonl``).
``$PERSONAKIT_DTYPE`` changes nothing here: both precisions are explicit.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, command_line, machine_info, machine_line, now, prompt_pass_seconds,  # noqa: E402
                     pyplot, save_figure, write_results)
from grag_step_time import LENGTHS, MODELS, load_examples  # noqa: E402

NAME = "bf16_speed"
QUESTIONER_NAME = "questioner_bf16_speed"
LORA = {"r": 16, "lora_alpha": 32}
GRAG_SYSTEMS = ("PreSFT(Hist)", "PostGRAG")
QUESTIONER_SYSTEMS = {"questioner-lora": "lora", "questioner-dual-tower": "dual-tower"}
"""``--systems`` name -> ``kind`` of a system of the questioner recipe's ``tiny`` config."""
SYSTEMS = GRAG_SYSTEMS + tuple(QUESTIONER_SYSTEMS)
QUESTIONER_CONFIG = "tiny"
PRECISIONS = ("fp32", "bf16")
TOLERANCE = 0.02  # relative gap of the final mean losses
GRAG_LR = 1e-4
NEAR_ZERO = 1e-4  # a loss term whose fp32 final mean is below this is not judged by its relative gap
SMOOTH = 5
SETTINGS = {
    "default": dict(batch_size=8, steps=30, warmup=2, examples=96, gen_prompts=32, gen_batch_size=8,
                    max_new_tokens=32),
    "quick": dict(batch_size=4, steps=6, warmup=1, examples=24, gen_prompts=8, gen_batch_size=8, max_new_tokens=16),
}


def smooth(values: list[float], window: int = SMOOTH) -> list[float]:
    """Trailing mean over ``window`` points (fewer at the start)."""
    return [statistics.fmean(values[max(0, i + 1 - window):i + 1]) for i in range(len(values))]


def compare_curves(fp32: list[float], bf16: list[float]) -> dict[str, Any]:
    """Largest relative gaps of the raw and smoothed curves, and of the final mean losses."""
    n = min(len(fp32), len(bf16))
    if n == 0:
        return {}
    tail = max(1, min(10, n // 3))
    final32, final16 = statistics.fmean(fp32[n - tail:n]), statistics.fmean(bf16[n - tail:n])
    s32, s16 = smooth(fp32[:n]), smooth(bf16[:n])
    rel_final = abs(final16 - final32) / abs(final32)
    return {"steps_compared": n, "final_steps": tail, "final_mean_fp32": final32, "final_mean_bf16": final16,
            "final_rel_diff": rel_final, "within_tolerance": rel_final <= TOLERANCE,
            "max_rel_diff_raw": max(abs(b - a) / abs(a) for a, b in zip(fp32[:n], bf16[:n])),
            "max_rel_diff_smoothed": max(abs(b - a) / abs(a) for a, b in zip(s32, s16))}


def error_text(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 400 characters): fits one markdown table cell."""
    lines = str(err).splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 400 else text[:400] + " ..."


def result_name(systems: list[str], name: str | None = None) -> str:
    """Base name of the result files: ``name`` if given, :data:`NAME` when a GRAG system runs, else
    :data:`QUESTIONER_NAME` (so a questioner-only run leaves the committed GRAG results alone)."""
    if name:
        return name
    return NAME if any(s in GRAG_SYSTEMS for s in systems) else QUESTIONER_NAME


def full_batches(indices_of_step: Any, batch_size: int, count: int, max_steps: int = 10_000) -> list[list[int]]:
    """The index lists of the first ``count`` steps of ``indices_of_step(step)`` that hold ``batch_size`` items.

    ``indices_of_step`` is a trainer's ``step_indices`` (the short last step of an epoch is skipped,
    so every timed step has the same batch size).
    """
    out: list[list[int]] = []
    for step in range(max_steps):
        if len(out) == count:
            break
        idx = [int(i) for i in indices_of_step(step)]
        if len(idx) == batch_size:
            out.append(idx)
    if len(out) < count:
        raise ValueError(f"full_batches: only {len(out)} steps of {batch_size} items in {max_steps} steps")
    return out


def _term_curves(terms32: list[dict[str, float]], terms16: list[dict[str, float]]) -> dict[str, Any]:
    """:func:`compare_curves` of every loss term (``loss_*``) logged at every step of both precisions."""
    n = min(len(terms32), len(terms16))
    if n == 0:
        return {}
    names = {k for k in set.intersection(*(set(t) for t in terms32[:n] + terms16[:n])) if k.startswith("loss_")}
    return {k: compare_curves([t[k] for t in terms32[:n]], [t[k] for t in terms16[:n]]) for k in sorted(names)}


def load_questioner_data(config_name: str = QUESTIONER_CONFIG) -> tuple[Any, list]:
    """The questioner recipe config and its training examples, assigned to the config's question clusters."""
    from personakit.modules.question_clusterer import QuestionClusterer
    from personakit.recipes.base import load_recipe_config
    from personakit.recipes.questioner import load_questioner_splits

    config = load_recipe_config("questioner", config_name)
    train, _ = load_questioner_splits(config.data, config.seed)
    train = QuestionClusterer(**config.clusterer.to_dict()).assign(train, fit=True)
    return config, train


def build_questioner(label: str, base: Any, tokenizer: Any, config: Any, train: list, args: argparse.Namespace,
                     inputs: dict[str, int] | None = None) -> tuple[Any, list[dict], dict[str, Any]]:
    """The fp32 reference model, the collated batches and the description of a questioner system.

    As :func:`~personakit.recipes.questioner.run_questioner_recipe` builds it: the ``tiny``
    system of that kind, ``DualTowerResponder.from_backbone`` on a copy of the backbone,
    ``make_collator`` with the config's prompt budgets, and the batches of a
    :class:`~personakit.training.QuestionerTrainer` with the config's training settings
    (``--batch-size`` instead of the config's; ``inputs``: prompt budgets instead of the config's,
    e.g. ``{"max_prompt_tokens": 192, "max_response_tokens": 48}``).
    """
    import torch

    from personakit.models.questioner import DualTowerResponder
    from personakit.training.questioner import QuestionerTrainer, QuestionerTrainingConfig

    kind = QUESTIONER_SYSTEMS[label]
    spec = next(s for s in config.systems if s.kind == kind)
    questioners = sorted({ex.questioner_id for ex in train})
    torch.manual_seed(args.seed)
    reference = DualTowerResponder.from_backbone(copy.deepcopy(base), tokenizer, questioners=questioners,
                                                 use_specific=kind == "dual-tower", **dict(spec.settings))
    collator = reference.make_collator(**{**config.inputs.to_dict(), **(inputs or {})})
    tcfg = QuestionerTrainingConfig.from_dict(
        {**config.training.to_dict(), "batch_size": args.batch_size, "progress": False, "eval_at_epoch_end": False,
         "eval_steps": None, "output_dir": None, "use_cpu": True}, source="training")
    trainer = QuestionerTrainer(reference, tcfg, train_examples=train, collator=collator)
    plan = trainer.plan()
    batches = full_batches(lambda step: trainer.step_indices(step, plan), args.batch_size, args.steps)
    collated = [collator([train[i] for i in idx]) for idx in batches]
    cfg = reference.config
    info = {"kind": kind, "settings": dict(spec.settings), "recipe_config": QUESTIONER_CONFIG,
            "lr": getattr(args, "system_lr", config.training.learning_rate),
            "lora": cfg.lora_settings.to_dict(),
            "added_parameters_per_layer": reference.added_parameters_per_layer(),
            "clusters_per_batch": [len({int(train[i].metadata.get("question_cluster", 0)) for i in idx})
                                   for idx in batches]}
    del trainer
    return reference, collated, info


def build_grag_system(label: str, base: Any, tokenizer: Any, batches: list[list], seed: int,
                      lengths: dict[str, int] | None = None) -> tuple[Any, list[dict], dict[str, Any]]:
    """GRAG system ``label`` (fp32, LoRA :data:`LORA`) on a copy of ``base``, ``batches`` collated (token budgets
    ``lengths``, default ``grag_step_time.LENGTHS``), and its kind and settings."""
    import torch

    from personakit.models import build_grag_model

    kind, settings = next((k, s) for lbl, k, s in MODELS if lbl == label)
    torch.manual_seed(seed)
    reference = build_grag_model(kind, copy.deepcopy(base), tokenizer, **settings, lora=LORA)
    collated = [reference.make_collator(tokenizer, **(lengths or LENGTHS))(b) for b in batches]
    return reference, collated, {"kind": kind, "settings": settings}


def merge_setting(args: argparse.Namespace, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``settings["quick"]`` (``--quick``) or ``["default"]`` with the options given on the command line; set on ``args``."""
    setting = dict(settings["quick" if args.quick else "default"])
    for key in setting:
        if getattr(args, key, None) is not None:
            setting[key] = getattr(args, key)
    vars(args).update(setting)
    return setting


def whole_batches(examples: list, size: int) -> list[list]:
    """``examples`` in consecutive batches of ``size``, the short last one dropped."""
    return [examples[i:i + size] for i in range(0, len(examples) - size + 1, size)]


def grag_batches(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list, list[list]]:
    """The first ``args.examples`` built-in training examples with generic responses (cached) and their full batches."""
    examples = load_examples(args.examples, RESULTS / "tmp" / "grag_step_time_llm_cache.jsonl", progress=True)
    batches = whole_batches(examples, args.batch_size)
    if not batches:
        parser.error(f"fewer than --batch-size {args.batch_size} usable examples ({len(examples)})")
    return examples, batches


def train_side_by_side(label: str, base: Any, tokenizer: Any, batches: list[list], args: argparse.Namespace
                       ) -> dict[str, Any]:
    """(a) and (c) for one GRAG system: both precisions, interleaved step by step on the same batches."""
    reference, collated, info = build_grag_system(label, base, tokenizer, batches, args.seed)
    return interleave(label, reference, collated, args, {**info, "lr": getattr(args, "system_lr", GRAG_LR)})


def interleave(label: str, reference: Any, collated: list[dict], args: argparse.Namespace,
               info: dict[str, Any]) -> dict[str, Any]:
    """Train ``reference`` (fp32) and its ``cast_frozen`` bf16 copy step by step in turn on ``collated``."""
    import torch

    from personakit.backbones import cast_frozen

    runs = {}
    for precision in PRECISIONS:
        run: dict[str, Any] = {"precision": precision, "losses": [], "terms": [], "step_s": [], "error": None}
        try:
            model = reference if precision == "fp32" else cast_frozen(copy.deepcopy(reference), torch.bfloat16)
            params = [p for p in model.parameters() if p.requires_grad]
            run.update(model=model, optimizer=torch.optim.AdamW(params, lr=info.get("lr", args.lr)),
                       trainable=sum(p.numel() for p in params),
                       dtypes=sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()}))
        except Exception as err:  # noqa: BLE001 - reported per system and precision
            run["error"] = error_text(err)
        runs[precision] = run

    for step in range(args.steps):
        batch = collated[step % len(collated)]
        for run in runs.values():
            if run["error"]:
                continue
            torch.manual_seed(args.seed * 100_003 + step)  # the same dropout masks for both precisions
            run["model"].train()
            start = time.perf_counter()
            try:
                output = run["model"](**batch)
                loss = output.loss
                loss.backward()
                run["optimizer"].step()
            except Exception as err:  # noqa: BLE001
                run["error"] = f"step {step}: {error_text(err)}"
                print(f"  {label} {run['precision']} failed: {run['error']}", flush=True)
                continue
            finally:
                run["optimizer"].zero_grad(set_to_none=True)
            run["step_s"].append(time.perf_counter() - start)
            run["losses"].append(float(loss.detach()))
            terms = getattr(output, "losses", None)
            run["terms"].append(terms() if callable(terms) else {})
        if step == 0 or (step + 1) % 5 == 0:
            shown = ", ".join(f"{p} {r['losses'][-1]:.3f} ({r['step_s'][-1]:.2f} s)" for p, r in runs.items()
                              if r["losses"] and not r["error"])
            print(f"  {label} step {step + 1}/{args.steps}: {shown}", flush=True)

    out: dict[str, Any] = {"system": label, **info, "precisions": {}}
    for precision, run in runs.items():
        timed = run["step_s"][args.warmup:]
        out["precisions"][precision] = {
            "error": run["error"], "trainable_parameters": run.get("trainable"), "parameter_dtypes": run.get("dtypes"),
            "median_step_s": statistics.median(timed) if timed else None,
            "mean_step_s": statistics.fmean(timed) if timed else None,
            "timed_steps": len(timed), "train_s": sum(run["step_s"]), "losses": run["losses"],
            "loss_terms": run["terms"], "step_times_s": run["step_s"]}
    p32, p16 = out["precisions"]["fp32"], out["precisions"]["bf16"]
    if p32["median_step_s"] and p16["median_step_s"]:
        out["step_ratio_bf16_fp32"] = p16["median_step_s"] / p32["median_step_s"]
    out["curves"] = compare_curves(p32["losses"], p16["losses"])
    out["term_curves"] = _term_curves(p32["loss_terms"], p16["loss_terms"])
    return out


def time_generation(prompts: list, args: argparse.Namespace) -> dict[str, Any]:
    """(b): greedy generation with the model loaded in fp32 and in bf16, on the same prompts."""
    import torch

    from personakit.backbones import load_causal_lm
    from personakit.llm import GenerationSettings, HFGenerator

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
    rows: dict[str, Any] = {}
    outputs: dict[str, list[str]] = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        try:
            model, tokenizer = load_causal_lm("smollm2", dtype=dtype)
            generator = HFGenerator(model, tokenizer, batch_size=args.gen_batch_size, model_id=f"smollm2-{precision}")
            generator.generate(prompts[:2], settings, progress=False)  # warm-up
            prefill_s = prompt_pass_seconds(generator, prompts, args.gen_batch_size)
            start = time.perf_counter()
            texts = generator.generate(prompts, settings, progress=False)
            total_s = time.perf_counter() - start
        except Exception as err:  # noqa: BLE001
            rows[precision] = {"error": error_text(err)}
            continue
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        decode_s = max(total_s - prefill_s, 1e-9)
        rows[precision] = {"error": None, "total_s": total_s, "prompt_pass_s": prefill_s, "decode_s": decode_s,
                           "new_tokens": tokens, "tokens_per_s": tokens / total_s,
                           "decode_tokens_per_s": tokens / decode_s,
                           "prompt_pass_prompts_per_s": len(prompts) / prefill_s}
        outputs[precision] = texts
        del model, generator
        gc.collect()
    result: dict[str, Any] = {"prompts": len(prompts), "batch_size": args.gen_batch_size,
                              "max_new_tokens": args.max_new_tokens, "precisions": rows}
    if len(outputs) == 2:
        same = sum(a == b for a, b in zip(outputs["fp32"], outputs["bf16"]))
        result["identical_outputs"] = same
        result["samples"] = [{"fp32": a, "bf16": b} for a, b in list(zip(outputs["fp32"], outputs["bf16"]))[:3]]
    return result


def plot_curves(systems: list[dict], path: Path) -> bool:
    """The loss curves of both precisions per system (raw thin, smoothed thick), written atomically."""
    plt = pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(systems), figsize=(5 * len(systems), 3.6), squeeze=False)
    for ax, system in zip(axes[0], systems):
        for precision, colour in zip(PRECISIONS, ("tab:blue", "tab:orange")):
            losses = system["precisions"][precision]["losses"]
            if not losses:
                continue
            steps = range(1, len(losses) + 1)
            ax.plot(steps, losses, color=colour, alpha=0.35, linewidth=0.8)
            ax.plot(steps, smooth(losses), color=colour, linewidth=2, label=f"{precision} (mean of {SMOOTH})")
        curves = system.get("curves") or {}
        gap = f", final gap {100 * curves['final_rel_diff']:.2f} %" if curves else ""
        ax.set_title(f"{system['system']}{gap}", fontsize=9)
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("SmolLM2-135M + LoRA: fp32 vs frozen bf16 base with fp32 adapters (same batches, same seed)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def speedups(report: dict) -> list[tuple[str, float]]:
    """``(label, fp32 time / bf16 time)`` of every training system and generation stage in ``report``."""
    out = []
    for system in report.get("systems", []):
        p = system["precisions"]
        if p["fp32"].get("median_step_s") and p["bf16"].get("median_step_s"):
            out.append((f"{system['system']}\ntraining step", p["fp32"]["median_step_s"] / p["bf16"]["median_step_s"]))
    gen = (report.get("generation") or {}).get("precisions", {})
    for key, label in (("total_s", "generation\ntotal"), ("prompt_pass_s", "generation\nprompt passes"),
                       ("decode_s", "generation\ndecoding")):
        if gen.get("fp32", {}).get(key) and gen.get("bf16", {}).get(key):
            out.append((label, gen["fp32"][key] / gen["bf16"][key]))
    return out


def plot_speedups(report: dict, path: Path) -> bool:
    """Bar chart of :func:`speedups` (above 1: bf16 is faster), written atomically."""
    plt = pyplot()
    rows = speedups(report)
    if plt is None or not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = ax.bar(range(len(rows)), [v for _, v in rows], color=["C0"] * sum("training" in k for k, _ in rows)
                  + ["C1"] * sum("training" not in k for k, _ in rows))
    for bar in bars:
        ax.annotate(f"{bar.get_height():.2f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.axhline(1.0, color="0.3", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(rows)), [k for k, _ in rows], fontsize=8)
    ax.set_ylabel("fp32 time / bf16 time")
    ax.set_ylim(0, max(v for _, v in rows) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    cpu = (report.get("precision") or {}).get("cpu", "CPU")
    ax.set_title(f"bf16 speed-up on {cpu}, {report.get('threads', '?')} torch thread(s): SmolLM2-135M + LoRA",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _system_kinds(report: dict) -> tuple[bool, bool]:
    """Whether ``report`` holds a GRAG system and a questioner system."""
    names = [system["system"] for system in report["systems"]]
    return any(n in GRAG_SYSTEMS for n in names), any(n in QUESTIONER_SYSTEMS for n in names)


def summary_rows(report: dict) -> list[dict[str, Any]]:
    """Per system: median step time of each precision, their ratio (bf16 / fp32) and whether the curves agree."""
    rows = []
    for system in report["systems"]:
        p = system["precisions"]
        curves = system.get("curves") or {}
        rows.append({"system": system["system"], "fp32_median_step_s": p["fp32"]["median_step_s"],
                     "bf16_median_step_s": p["bf16"]["median_step_s"],
                     "ratio_bf16_fp32": system.get("step_ratio_bf16_fp32"),
                     "final_rel_diff": curves.get("final_rel_diff"),
                     "within_tolerance": curves.get("within_tolerance"),
                     "errors": {k: v["error"] for k, v in p.items() if v.get("error")}})
    return rows


def _setup_lines(report: dict) -> list[str]:
    s = report["setting"]
    grag, questioner = _system_kinds(report)
    lora = report.get("lora") or LORA
    alpha = lora.get("lora_alpha", lora.get("alpha"))  # the committed JSON predates the key's rename
    def common(lr: Any) -> str:
        return (f"Training: batch {s['batch_size']}, {s['steps']} steps per precision ({s['warmup']} untimed), AdamW "
                f"lr {lr}, the two precisions interleaved step by step on the same batches from the same weights")

    lines = []
    if grag:
        lines += [f"fp32: everything in float32. bf16: frozen backbone in bfloat16, LoRA adapters (r {lora['r']}, alpha "
                  f"{alpha}) and GRAG's extra modules in float32 (`cast_frozen`). {common(report['lr'])}; "
                  f"{report['train_examples']} training examples of the built-in corpus, input limits "
                  f"{report.get('lengths', LENGTHS)}.", ""]
    q = report.get("questioner")
    if questioner and q:
        settings = next((system.get("settings") for system in report["systems"]
                         if system["system"] == "questioner-dual-tower"), None)
        lr = next((system.get("lr") for system in report["systems"] if system["system"] in QUESTIONER_SYSTEMS),
                  q.get("learning_rate"))
        lines += [f"Questioner systems (`DualTowerResponder`, built as `personakit run questioner --config "
                  f"{q['config']}` builds them): `questioner-lora` is `kind: lora` (no specific stream), "
                  f"`questioner-dual-tower` is `kind: dual-tower`"
                  + (f" with settings {settings}" if settings else "")
                  + f". fp32: everything in float32; bf16: frozen backbone in bfloat16, LoRA adapters "
                  f"(r {q['lora']['r']}, alpha {q['lora']['lora_alpha']}) and the specific stream, views and "
                  f"questioner embeddings in float32 (`cast_frozen`). {common(lr)}; {q['train_examples']} training "
                  f"examples of the built-in corpus (the recipe's `builtin` source, {q['questioners']} questioners) "
                  f"in {q['clusters']} question clusters, batches in `QuestionerTrainer`'s cluster-grouped order, "
                  f"prompt budgets {q['inputs']}.", ""]
    return lines


def to_markdown(report: dict) -> str:
    prec = report["precision"]
    lines = [
        "# bf16 vs fp32 on CPU: SmolLM2-135M + LoRA", "",
        f"CPU **{prec['cpu']}**: `amx_bf16` {'yes' if prec['amx_bf16'] else 'no'}, "
        f"`avx512_bf16` {'yes' if prec['avx512_bf16'] else 'no'} (so `dtype=\"auto\"` picks {prec['auto_dtype']}"
        f"{'; $PERSONAKIT_DTYPE=' + prec['env_override'] if prec['env_override'] else ''}); "
        f"{report['threads']} torch threads; 1-minute load average {report['load_at_start'][0]:.2f} at the start.", "",
        *_setup_lines(report),
        "## Summary", "",
        f"Median training step (forward + backward + AdamW) of each precision and whether the loss curves agree "
        f"(final mean loss of bf16 within {100 * TOLERANCE:.0f} % of fp32's).", "",
        "| system | fp32 median step (s) | bf16 median step (s) | bf16 / fp32 | loss curves agree |",
        "|---|---:|---:|---:|---|"]
    for row in summary_rows(report):
        ratio, gap = row["ratio_bf16_fp32"], row["final_rel_diff"]
        agree = ("failed: " + ", ".join(row["errors"]) if row["errors"] else "no curve" if gap is None
                 else f"{'yes' if row['within_tolerance'] else '**no**'} (final gap {100 * gap:.2f} %)")
        lines.append(f"| {row['system']} | {_cell(row['fp32_median_step_s'], '.3f')} | "
                     f"{_cell(row['bf16_median_step_s'], '.3f')} | {_cell(ratio, '.2f')}{'x' if ratio else ''} | "
                     f"{agree} |")
    lines += [
        "", "## (a) Training step time", "",
        "| system | fp32 median step (s) | bf16 median step (s) | bf16 / fp32 | fp32 / bf16 wall, all steps (s) | "
        "trainable params | note |",
        "|---|---:|---:|---:|---:|---:|---|"]
    for system in report["systems"]:
        p32, p16 = system["precisions"]["fp32"], system["precisions"]["bf16"]
        note = "; ".join(f"{p} failed: {r['error']}" for p, r in system["precisions"].items() if r["error"])
        ratio = system.get("step_ratio_bf16_fp32")
        lines.append(f"| {system['system']} | {_cell(p32['median_step_s'], '.3f')} | {_cell(p16['median_step_s'], '.3f')} "
                     f"| {_cell(ratio, '.2f')}{'x' if ratio else ''} | {p32['train_s']:.0f} / {p16['train_s']:.0f} "
                     f"| {_cell(p32['trainable_parameters'], ',')} "
                     f"| {note.replace('|', '/')} |")
    lines += _generation_lines(report.get("generation"))
    lines += _curve_lines(report)
    lines += ["", machine_line(report["machine"]), f"Date: {report['date']}; wall time {report['wall_time_s']:.0f} s.", "",
              f"Reproduce: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def _generation_lines(gen: dict | None) -> list[str]:
    if not gen:
        return ["", "## (b) Generation", "", "Not run (`--no-generation`, the default without a GRAG system)."]
    lines = ["", "## (b) Generation", "",
             f"`HFGenerator`, greedy, batch {gen['batch_size']}, {gen['prompts']} generic-response prompts of the "
             f"built-in test split, at most {gen['max_new_tokens']} new tokens; model loaded in each dtype.", "",
             "| precision | total (s) | prompt passes (s) | decoding (s) | new tokens | tokens/s | decoding tokens/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = gen["precisions"]
    for precision in PRECISIONS:
        r = rows.get(precision, {})
        if r.get("error"):
            lines.append(f"| {precision} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {precision} | {r['total_s']:.2f} | {r['prompt_pass_s']:.2f} | {r['decode_s']:.2f} | "
                     f"{r['new_tokens']} | {r['tokens_per_s']:.1f} | {r['decode_tokens_per_s']:.1f} |")
    if all(not rows.get(p, {}).get("error") for p in PRECISIONS) and len(rows) == 2:
        a, b = rows["fp32"], rows["bf16"]
        lines.append(f"| **bf16 / fp32** | {b['total_s'] / a['total_s']:.2f}x | {b['prompt_pass_s'] / a['prompt_pass_s']:.2f}x "
                     f"| {b['decode_s'] / a['decode_s']:.2f}x | | {b['tokens_per_s'] / a['tokens_per_s']:.2f}x | "
                     f"{b['decode_tokens_per_s'] / a['decode_tokens_per_s']:.2f}x |")
        lines += ["", f"Identical outputs: {gen['identical_outputs']} of {gen['prompts']} (greedy; bf16 changes a "
                  "token where two logits are close).", ""]
        for sample in gen["samples"]:
            lines += [f"* fp32: {sample['fp32']!r}", f"  bf16: {sample['bf16']!r}"]
    return lines


def _curve_lines(report: dict) -> list[str]:
    lines = ["", "## (c) Loss curves", "",
             f"Tolerance: the mean loss of the last steps (`min(10, steps // 3)`) of bf16 within "
             f"{100 * TOLERANCE:.0f} % of fp32's. Plot: `{report['plot'] or 'not written'}`.", "",
             "| system | final steps | fp32 final mean | bf16 final mean | relative gap | within tolerance | "
             "max gap, smoothed | max gap, per step |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for system in report["systems"]:
        c = system["curves"]
        if not c:
            lines.append(f"| {system['system']} | – | – | – | – | no curve to compare | – | – |")
            continue
        lines.append(f"| {system['system']} | {c['final_steps']} | {c['final_mean_fp32']:.4f} | "
                     f"{c['final_mean_bf16']:.4f} | {100 * c['final_rel_diff']:.2f} % | "
                     f"{'yes' if c['within_tolerance'] else '**no**'} | {100 * c['max_rel_diff_smoothed']:.2f} % | "
                     f"{100 * c['max_rel_diff_raw']:.2f} % |")
    terms = [(system["system"], name, c) for system in report["systems"]
             for name, c in (system.get("term_curves") or {}).items()]
    if terms:
        lines += ["", f"The loss terms (same tolerance; not judged where fp32's final mean is below {NEAR_ZERO:g}, "
                  "where relative gaps mean little):", "",
                  "| system | term | fp32 final mean | bf16 final mean | relative gap | within tolerance |",
                  "|---|---|---:|---:|---:|---|"]
        for name, term, c in terms:
            verdict = ("– (near zero)" if abs(c["final_mean_fp32"]) < NEAR_ZERO
                       else "yes" if c["within_tolerance"] else "**no**")
            lines.append(f"| {name} | `{term}` | {c['final_mean_fp32']:.4g} | {c['final_mean_bf16']:.4g} | "
                         f"{100 * c['final_rel_diff']:.2f} % | {verdict} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke setting (" + ", ".join(
        f"{k} {v}" for k, v in SETTINGS["quick"].items()) + ")")
    for key, value in SETTINGS["default"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {value}")
    parser.add_argument("--systems", nargs="+", default=list(GRAG_SYSTEMS), choices=SYSTEMS,
                        help=f"default: the GRAG systems; the questioner ones: {' '.join(QUESTIONER_SYSTEMS)}")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"default {GRAG_LR} for GRAG, the {QUESTIONER_CONFIG} config's learning rate for the "
                             "questioner systems")
    parser.add_argument("--generation", action=argparse.BooleanOptionalAction, default=None,
                        help="time generation (b) (default: only when a GRAG system runs)")
    parser.add_argument("--name", default=None,
                        help=f"base name of the result files (default: {NAME} when a GRAG system runs, else "
                             f"{QUESTIONER_NAME})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw NAME.png and NAME_speedup.png from NAME.json in --out-dir (NAME: see --name); "
                             "runs nothing")
    args = parser.parse_args(argv)
    name = result_name(args.systems, args.name)
    if args.plot_only:
        report = json.loads((args.out_dir / f"{name}.json").read_text(encoding="utf-8"))
        curves, bars = args.out_dir / f"{name}.png", args.out_dir / f"{name}_speedup.png"
        for path, ok in ((curves, plot_curves(report["systems"], curves)), (bars, plot_speedups(report, bars))):
            print(f"wrote {path}" if ok else f"no plot written: {path.name}")
        return report
    setting = merge_setting(args, SETTINGS)

    import torch

    from personakit.augment import GenericResponseAugmenter
    from personakit.backbones import describe_precision, load_causal_lm
    from personakit.data import dialogues_to_examples, load_builtin_corpus
    from personakit.llm import CallableGenerator
    from personakit.recipes.demo import DEMO_TEMPLATE

    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else [float("nan")]
    precision = describe_precision()
    print(f"precision: {precision}; threads {torch.get_num_threads()}; load {load_at_start[0]:.2f}", flush=True)
    start = time.perf_counter()
    grag = [label for label in args.systems if label in GRAG_SYSTEMS]
    examples: list = []
    batches: list[list] = []
    if grag:
        examples, batches = grag_batches(args, parser)
    questioner: dict[str, Any] | None = None
    if len(grag) < len(args.systems):
        print(f"questioner data: the {QUESTIONER_CONFIG} config's builtin source and question clusters ...", flush=True)
        q_config, q_train = load_questioner_data()
        clusters = sorted({int(ex.metadata.get("question_cluster", 0)) for ex in q_train})
        questioner = {"config": QUESTIONER_CONFIG, "train_examples": len(q_train),
                      "questioners": len({ex.questioner_id for ex in q_train}), "clusters": len(clusters),
                      "inputs": q_config.inputs.to_dict(), "learning_rate": q_config.training.learning_rate}

    base, tokenizer = load_causal_lm("smollm2")
    systems = []
    for label in args.systems:
        print(f"training {label}: fp32 and bf16 side by side ...", flush=True)
        if label in GRAG_SYSTEMS:
            args.system_lr = args.lr if args.lr is not None else GRAG_LR
            systems.append(train_side_by_side(label, base, tokenizer, batches, args))
        else:
            args.system_lr = args.lr if args.lr is not None else questioner["learning_rate"]  # type: ignore[index]
            reference, collated, info = build_questioner(label, base, tokenizer, q_config, q_train, args)
            questioner["lora"] = info["lora"]  # type: ignore[index]
            systems.append(interleave(label, reference, collated, args, info))
            del reference, collated
        gc.collect()
    del base
    gc.collect()

    generation = None
    if args.generation if args.generation is not None else bool(grag):
        print("generation ...", flush=True)
        # the augmenter only renders the prompts here (its generator is never called)
        builder = GenericResponseAugmenter(CallableGenerator(str), template=DEMO_TEMPLATE)
        test = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")[:args.gen_prompts]
        generation = time_generation([builder.build_prompt(ex) for ex in test], args)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot = args.out_dir / f"{name}.png"
    plotted = plot_curves(systems, plot)
    report = {"benchmark": name, "date": now(), "command": command_line(argv), "setting": setting,
              "lr": args.lr if args.lr is not None else GRAG_LR, "seed": args.seed, "lora": LORA, "lengths": LENGTHS,
              "tolerance": TOLERANCE, "precision": precision, "threads": torch.get_num_threads(),
              "load_at_start": load_at_start, "train_examples": len(examples), "questioner": questioner,
              "systems": systems, "generation": generation, "plot": plot.name if plotted else None,
              "wall_time_s": time.perf_counter() - start, "machine": machine_info(("torch", "transformers", "peft"))}
    md = to_markdown(report)
    write_results(name, report, md, args.out_dir)
    plot_speedups(report, args.out_dir / f"{name}_speedup.png")
    print(md)
    return report


if __name__ == "__main__":
    main()
