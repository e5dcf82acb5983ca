"""GRAG training cost: time per training step of PostGRAG (and PreGRAG, PreSFT(TST)) relative to PreSFT(Hist).

Each model is built on a fresh copy of the same backbone and trained on the *same*
batches (the built-in corpus' training examples, with generic responses written by the
embedded SmolLM2 and cached under ``benchmarks/results/tmp/``), with AdamW, in one
process.  A training step is forward + backward + optimiser step on one batch.  After
``--warmup`` untimed steps per model, the models take turns step by step (A, B, C, D, A,
B, ...) for ``--steps`` timed steps each, so that a change in machine load hits every
model alike; the table reports the median step time and its ratio to PreSFT(Hist).

Goal (issue 3): PostGRAG / PreSFT(Hist) <= 1.5x at equal batch and backbone.  PostGRAG
does more work by construction (it encodes P, H, R_G and R_P, and decodes both R_P and
the style-removal target R_G); :mod:`personakit.models.grag.encoding` groups the rows of
the four encodings by length into at most ``encoder_passes`` batched passes (4, the
default; the row "PostGRAG, 1 encoder pass" pads all four to the longest), embeds the
tokens of all passes in one lookup, and decodes R_P and R_G in two passes each padded to
its own length (the row "PostGRAG, 1 decoder pass" stacks them into one).  On a decoder-only backbone the decodings
continue the key/value caches of the encodings of H and R_P, so nothing is read twice.

Backbones: the MiniLM BERT2BERT encoder-decoder (default) and SmolLM2-135M with LoRA
(``--backbones minilm smollm2``).

    python benchmarks/grag_step_time.py                         # both backbones, batch 8
    python benchmarks/grag_step_time.py --backbones minilm --steps 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, machine_info, machine_line, now, write_results  # noqa: E402

MODELS = [("PreSFT(Hist)", "presft-hist", {}), ("PreSFT(TST)", "presft-tst", {}),
          ("PreGRAG", "pregrag", {"beta": 0.05}), ("PostGRAG", "postgrag", {"alpha": 0.5, "beta": 0.05}),
          ("PostGRAG, 1 decoder pass", "postgrag", {"alpha": 0.5, "beta": 0.05, "decoder_passes": 1}),
          ("PostGRAG, 1 encoder pass", "postgrag", {"alpha": 0.5, "beta": 0.05, "encoder_passes": 1})]
LENGTHS = dict(max_persona_tokens=96, max_history_tokens=128, max_generic_tokens=48, max_response_tokens=48)


def load_examples(n: int, cache: Path, progress: bool):
    from personakit.augment import GenericResponseAugmenter
    from personakit.data import dialogues_to_examples, load_builtin_corpus
    from personakit.llm import GenerationSettings, HFGenerator, ResponseCache
    from personakit.recipes.demo import DEMO_TEMPLATE

    examples = dialogues_to_examples(load_builtin_corpus("train"), agent="agent")[:n]
    generator = HFGenerator.from_pretrained("smollm2")
    augmenter = GenericResponseAugmenter(generator, template=DEMO_TEMPLATE,
                                         settings=GenerationSettings(max_new_tokens=32),
                                         cache=ResponseCache(cache), batch_size=16)
    augmented = augmenter.augment(examples, progress=progress)
    return [ex for ex in augmented if ex.generic_response]  # the 135M model sometimes returns an empty reply


def time_backbone(name: str, examples: list, args: argparse.Namespace) -> dict:
    import torch

    from personakit.models import build_grag_model
    from personakit.models.grag.base import load_backbone

    base, tokenizer = load_backbone(name)
    lora = {"lora": {"r": 16, "lora_alpha": 32}} if not getattr(base.config, "is_encoder_decoder", False) else {}
    batches = [examples[i:i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
    batches = [b for b in batches if len(b) == args.batch_size]
    runs = []
    for label, kind, settings in MODELS:
        model = build_grag_model(kind, copy.deepcopy(base), tokenizer, **settings, **lora)
        collator = model.make_collator(tokenizer, **LENGTHS)
        collated = [collator(b) for b in batches]
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5)
        runs.append({"label": label, "model": model, "batches": collated, "optimizer": optimizer,
                     "trainable": sum(p.numel() for p in params), "times": [], "terms": None})

    def step(run: dict, i: int) -> float:
        batch = run["batches"][i % len(run["batches"])]
        run["model"].train()
        start = time.perf_counter()
        out = run["model"](**batch)
        out.loss.backward()
        run["optimizer"].step()
        run["optimizer"].zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        run["terms"] = [t for t in ("loss_p", "loss_g", "loss_cjepa") if getattr(out, t) is not None]
        return elapsed

    # arithmetic of one training step (forward + backward) on the first batch, counted by torch
    from torch.utils.flop_counter import FlopCounterMode

    for run in runs:
        run["model"].train()
        with FlopCounterMode(display=False) as counter:
            run["model"](**run["batches"][0]).loss.backward()
        run["optimizer"].zero_grad(set_to_none=True)
        run["flops"] = counter.get_total_flops()

    for i in range(args.warmup):
        for run in runs:
            step(run, i)
    for i in range(args.steps):
        for run in runs:
            run["times"].append(step(run, args.warmup + i))
    base_median = statistics.median(runs[0]["times"])
    base_flops = runs[0]["flops"]
    rows = []
    for run in runs:
        median = statistics.median(run["times"])
        rows.append({"model": run["label"], "median_step_s": median, "mean_step_s": statistics.fmean(run["times"]),
                     "min_step_s": min(run["times"]), "ratio_vs_presft_hist": median / base_median,
                     "gflop_per_step": run["flops"] / 1e9, "flop_ratio_vs_presft_hist": run["flops"] / base_flops,
                     "trainable_parameters": run["trainable"], "loss_terms": run["terms"], "step_times_s": run["times"]})
    return {"backbone": name, "lora": bool(lora), "rows": rows,
            "postgrag_ratio": next(r["ratio_vs_presft_hist"] for r in rows if r["model"] == "PostGRAG"),
            "postgrag_flop_ratio": next(r["flop_ratio_vs_presft_hist"] for r in rows if r["model"] == "PostGRAG")}


def to_markdown(report: dict) -> str:
    lines = ["# GRAG training step time", "",
             f"Batch {report['batch_size']}, {report['warmup']} warm-up and {report['steps']} timed steps per model, "
             "models interleaved step by step on the same batches, AdamW, float32, CPU. "
             f"Input limits (tokens): {report['lengths']}. Goal: PostGRAG / PreSFT(Hist) <= {report['goal']}x.", ""]
    for bb in report["backbones"]:
        lora = " + LoRA (r 16)" if bb["lora"] else ""
        lines += [f"## {bb['backbone']}{lora}", "",
                  "| model | loss terms | trainable params | median step (s) | ratio vs PreSFT(Hist) | "
                  "GFLOP per step | FLOP ratio |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in bb["rows"]:
            lines.append(f"| {r['model']} | {', '.join(r['loss_terms'])} | {r['trainable_parameters']:,} | "
                         f"{r['median_step_s']:.3f} | {r['ratio_vs_presft_hist']:.2f}x | {r['gflop_per_step']:.0f} | "
                         f"{r['flop_ratio_vs_presft_hist']:.2f}x |")
        verdict = "met" if bb["postgrag_ratio"] <= report["goal"] else "NOT met"
        lines += ["", f"PostGRAG / PreSFT(Hist) = **{bb['postgrag_ratio']:.2f}x** (goal {verdict}); it does "
                  f"{bb['postgrag_flop_ratio']:.2f}x the arithmetic (forward + backward FLOPs of one step, counted "
                  "by `torch.utils.flop_counter`).", ""]
    lines += [machine_line(report["machine"]), f"Date: {report['date']}; wall time {report['wall_time_s']:.0f} s.", "",
              f"Reproduce: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["minilm", "smollm2"], help="embedded names or folders")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--examples", type=int, default=48, help="training examples cycled through")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    start = time.perf_counter()
    examples = load_examples(args.examples, RESULTS / "tmp" / "grag_step_time_llm_cache.jsonl", progress=True)
    backbones = []
    for name in args.backbones:
        print(f"timing {name} ...", flush=True)
        backbones.append(time_backbone(name, examples, args))
    report = {"benchmark": "grag_step_time", "date": now(), "command": command_line(), "goal": 1.5,
              "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "lengths": LENGTHS,
              "backbones": backbones, "wall_time_s": time.perf_counter() - start, "machine": machine_info()}
    md = to_markdown(report)
    write_results("grag_step_time", report, md, args.out_dir)
    print(md)
    return report


if __name__ == "__main__":
    main()
