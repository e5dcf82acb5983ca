"""bf16 against fp32 on SmolLM2-135M + LoRA: GRAG training step time, generation speed and loss curves.

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

Plots: ``bf16_speed.png`` (the loss curves) and ``bf16_speed_speedup.png`` (the fp32 / bf16
time ratios of the training steps and of generation).

The first run also writes the generic responses of ``--examples`` training examples with
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
LORA = {"r": 16, "lora_alpha": 32}
SYSTEMS = ("PreSFT(Hist)", "PostGRAG")
PRECISIONS = ("fp32", "bf16")
TOLERANCE = 0.02  # relative gap of the final mean losses
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


def _error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 400 else text[:400] + " ..."


def train_side_by_side(label: str, base: Any, tokenizer: Any, batches: list[list], args: argparse.Namespace
                       ) -> dict[str, Any]:
    """(a) and (c) for one system: both precisions, interleaved step by step on the same batches."""
    import torch

    from personakit.backbones import cast_frozen
    from personakit.models import build_grag_model

    kind, settings = next((k, s) for lbl, k, s in MODELS if lbl == label)
    torch.manual_seed(args.seed)
    reference = build_grag_model(kind, copy.deepcopy(base), tokenizer, **settings, lora=LORA)
    collated = [reference.make_collator(tokenizer, **LENGTHS)(b) for b in batches]
    runs = {}
    for precision in PRECISIONS:
        run: dict[str, Any] = {"precision": precision, "losses": [], "step_s": [], "error": None}
        try:
            model = reference if precision == "fp32" else cast_frozen(copy.deepcopy(reference), torch.bfloat16)
            params = [p for p in model.parameters() if p.requires_grad]
            run.update(model=model, optimizer=torch.optim.AdamW(params, lr=args.lr),
                       trainable=sum(p.numel() for p in params),
                       dtypes=sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()}))
        except Exception as err:  # noqa: BLE001 - reported per system and precision
            run["error"] = _error(err)
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
                loss = run["model"](**batch).loss
                loss.backward()
                run["optimizer"].step()
            except Exception as err:  # noqa: BLE001
                run["error"] = f"step {step}: {_error(err)}"
                print(f"  {label} {run['precision']} failed: {run['error']}", flush=True)
                continue
            finally:
                run["optimizer"].zero_grad(set_to_none=True)
            run["step_s"].append(time.perf_counter() - start)
            run["losses"].append(float(loss.detach()))
        if step == 0 or (step + 1) % 5 == 0:
            shown = ", ".join(f"{p} {r['losses'][-1]:.3f} ({r['step_s'][-1]:.2f} s)" for p, r in runs.items()
                              if r["losses"] and not r["error"])
            print(f"  {label} step {step + 1}/{args.steps}: {shown}", flush=True)

    out: dict[str, Any] = {"system": label, "kind": kind, "settings": settings, "precisions": {}}
    for precision, run in runs.items():
        timed = run["step_s"][args.warmup:]
        out["precisions"][precision] = {
            "error": run["error"], "trainable_parameters": run.get("trainable"), "parameter_dtypes": run.get("dtypes"),
            "median_step_s": statistics.median(timed) if timed else None,
            "mean_step_s": statistics.fmean(timed) if timed else None,
            "timed_steps": len(timed), "train_s": sum(run["step_s"]), "losses": run["losses"],
            "step_times_s": run["step_s"]}
    p32, p16 = out["precisions"]["fp32"], out["precisions"]["bf16"]
    if p32["median_step_s"] and p16["median_step_s"]:
        out["step_ratio_bf16_fp32"] = p16["median_step_s"] / p32["median_step_s"]
    out["curves"] = compare_curves(p32["losses"], p16["losses"])
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
            rows[precision] = {"error": _error(err)}
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


def to_markdown(report: dict) -> str:
    prec = report["precision"]
    s = report["setting"]
    lines = [
        "# bf16 vs fp32 on CPU: SmolLM2-135M + LoRA", "",
        f"CPU **{prec['cpu']}**: `amx_bf16` {'yes' if prec['amx_bf16'] else 'no'}, "
        f"`avx512_bf16` {'yes' if prec['avx512_bf16'] else 'no'} (so `dtype=\"auto\"` picks {prec['auto_dtype']}"
        f"{'; $PERSONAKIT_DTYPE=' + prec['env_override'] if prec['env_override'] else ''}); "
        f"{report['threads']} torch threads; 1-minute load average {report['load_at_start'][0]:.2f} at the start.", "",
        f"fp32: everything in float32. bf16: frozen backbone in bfloat16, LoRA adapters (r {LORA['r']}, alpha "
        f"{LORA['alpha']}) and GRAG's extra modules in float32 (`cast_frozen`). Training: batch {s['batch_size']}, "
        f"{s['steps']} steps per precision ({s['warmup']} untimed), AdamW lr {report['lr']}, the two precisions "
        f"interleaved step by step on the same batches from the same weights; {report['train_examples']} training "
        f"examples of the built-in corpus, input limits {LENGTHS}.", "",
        "## (a) Training step time", "",
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
    gen = report["generation"]
    lines += ["", "## (b) Generation", "",
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
    lines += ["", "## (c) Loss curves", "",
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
    lines += ["", machine_line(report["machine"]), f"Date: {report['date']}; wall time {report['wall_time_s']:.0f} s.", "",
              f"Reproduce: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke setting (" + ", ".join(
        f"{k} {v}" for k, v in SETTINGS["quick"].items()) + ")")
    for key, value in SETTINGS["default"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {value}")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--plot-only", action="store_true",
                        help=f"redraw {NAME}.png and {NAME}_speedup.png from {NAME}.json in --out-dir; runs nothing")
    args = parser.parse_args(argv)
    if args.plot_only:
        report = json.loads((args.out_dir / f"{NAME}.json").read_text(encoding="utf-8"))
        curves, bars = args.out_dir / f"{NAME}.png", args.out_dir / f"{NAME}_speedup.png"
        for path, ok in ((curves, plot_curves(report["systems"], curves)), (bars, plot_speedups(report, bars))):
            print(f"wrote {path}" if ok else f"no plot written: {path.name}")
        return report
    setting = dict(SETTINGS["quick" if args.quick else "default"])
    for key in setting:
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    vars(args).update(setting)

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
    examples = load_examples(args.examples, RESULTS / "tmp" / "grag_step_time_llm_cache.jsonl", progress=True)
    batches = [examples[i:i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
    batches = [b for b in batches if len(b) == args.batch_size]
    if not batches:
        parser.error(f"fewer than --batch-size {args.batch_size} usable examples ({len(examples)})")

    base, tokenizer = load_causal_lm("smollm2")
    systems = []
    for label in args.systems:
        print(f"training {label}: fp32 and bf16 side by side ...", flush=True)
        systems.append(train_side_by_side(label, base, tokenizer, batches, args))
        gc.collect()
    del base
    gc.collect()

    print("generation ...", flush=True)
    # the augmenter only renders the prompts here (its generator is never called)
    builder = GenericResponseAugmenter(CallableGenerator(str), template=DEMO_TEMPLATE)
    test = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")[:args.gen_prompts]
    generation = time_generation([builder.build_prompt(ex) for ex in test], args)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot = args.out_dir / f"{NAME}.png"
    plotted = plot_curves(systems, plot)
    report = {"benchmark": NAME, "date": now(), "command": command_line(argv), "setting": setting,
              "lr": args.lr, "seed": args.seed, "lora": LORA, "lengths": LENGTHS, "tolerance": TOLERANCE,
              "precision": precision, "threads": torch.get_num_threads(), "load_at_start": load_at_start,
              "train_examples": len(examples), "systems": systems, "generation": generation,
              "plot": plot.name if plotted else None, "wall_time_s": time.perf_counter() - start,
              "machine": machine_info(("torch", "transformers", "peft"))}
    md = to_markdown(report)
    write_results(NAME, report, md, args.out_dir)
    plot_speedups(report, args.out_dir / f"{NAME}_speedup.png")
    print(md)
    return report


if __name__ == "__main__":
    main()
