"""How far the style path of trained PostGRAG / PreGRAG units moved from its initialisation.

A diagnostic of ``benchmarks/grag_quality.py``: PostGRAG's controls show that the trained model
hardly reads its generic response. PostGRAG starts its style path at zero
(``style_init="zero"``: the extractors' output projections are zero, so the model begins as the
pretrained decoder); if those projections are still small after training, the style vector
added to the decoder is small and the scaffold cannot matter. This script reads the ``best``
checkpoint of each finished GRAG unit in the benchmark's work folder and reports, for each style
extractor, the Frobenius norm of every projection beside the norm the same projection has at a
fresh Xavier initialisation (what ``style_init="paper"`` starts from).

    python benchmarks/grag_style_norms.py [--work-dir benchmarks/results/tmp/grag_quality-default]

Writes ``benchmarks/results/grag_style_norms.{json,md}``. It reads checkpoints only (no model
forward), so it takes seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RESULTS, command_line, machine_info, now, write_results  # noqa: E402

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def fresh_norms(d_model: int, heads: int = 8, seeds: int = 5) -> dict[str, float]:
    """Mean Frobenius norm of each projection weight of a freshly initialised ``StyleExtractor`` (Xavier)."""
    import torch

    from personakit.modules import StyleExtractor

    sums = dict.fromkeys(PROJECTIONS, 0.0)
    for seed in range(seeds):
        torch.manual_seed(seed)
        extractor = StyleExtractor(d_model, num_heads=heads)
        for name in PROJECTIONS:
            sums[name] += float(getattr(extractor, name).weight.detach().norm()) / seeds
    return sums


def unit_norms(weights: Path) -> dict[str, dict[str, float]]:
    """``{extractor: {projection: Frobenius norm of its weight}}`` from a checkpoint's model.safetensors."""
    from safetensors.torch import load_file

    state = load_file(str(weights))
    out: dict[str, dict[str, float]] = {}
    for key, value in state.items():
        parts = key.split("/")
        if len(parts) >= 3 and parts[-1] == "weight" and parts[-2] in PROJECTIONS and "extractor" in parts[-3]:
            extractor = parts[-3].split(".")[-1]
            out.setdefault(extractor, {})[parts[-2]] = float(value.float().norm())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "tmp" / "grag_quality-default")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and markdown results")
    args = parser.parse_args(argv)
    shown = args.work_dir.resolve()
    shown = shown.relative_to(HERE.parent) if shown.is_relative_to(HERE.parent) else shown

    rows = []
    d_model = None
    for ckpt_dir in sorted(args.work_dir.glob("*/checkpoints/*")):
        best = sorted((ckpt_dir / "best").glob("checkpoint-*/modules/model.safetensors"))
        if not best:
            continue
        norms = unit_norms(best[-1])
        if not norms:
            continue  # PreSFT: no style path
        dataset, unit = ckpt_dir.parent.parent.name, ckpt_dir.name
        step = int(best[-1].parent.parent.name.split("-")[-1])
        for extractor, by_proj in sorted(norms.items()):
            rows.append({"dataset": dataset, "unit": unit, "best_step": step, "extractor": extractor, **by_proj})
        if d_model is None:
            from safetensors import safe_open

            with safe_open(str(best[-1]), "pt") as f:
                name = next(k for k in f.keys() if k.endswith("out_proj/weight"))
                d_model = f.get_slice(name).get_shape()[0]
    if not rows:
        print(f"no finished GRAG unit with a style path under {args.work_dir}")
        return 1
    fresh = fresh_norms(d_model)
    lines = ["# Style path after training: projection norms against a fresh initialisation", "",
             f"`{command_line()}`, {now()}. Checkpoints: the `best` weights of each finished unit in "
             f"`{shown}`. Fresh: mean Frobenius norm of a new `StyleExtractor({d_model})` (Xavier; "
             "`style_init=\"paper\"` starts there; `\"zero\"` starts the output projection at 0).", "",
             "| dataset | unit | best step | extractor | " + " | ".join(PROJECTIONS) + " | out_proj / fresh |",
             "| --- | --- | ---: | --- |" + " ---: |" * (len(PROJECTIONS) + 1)]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['unit']} | {r['best_step']} | {r['extractor']} | "
                     + " | ".join(f"{r.get(p, float('nan')):.3f}" for p in PROJECTIONS)
                     + f" | {r.get('out_proj', float('nan')) / fresh['out_proj']:.3f} |")
    lines.append("| (fresh initialisation) | | | | " + " | ".join(f"{fresh[p]:.3f}" for p in PROJECTIONS) + " | 1.000 |")
    report = {"command": command_line(), "date": now(), "machine": machine_info(), "work_dir": str(shown),
              "d_model": d_model, "fresh": fresh, "units": rows}
    json_path, md_path = write_results("grag_style_norms", report, "\n".join(lines), args.out)
    print("\n".join(lines))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
