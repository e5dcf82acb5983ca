"""Does PostGRAG's style path learn faster with its own learning rate? A short pilot on SPC.

A diagnostic of ``benchmarks/grag_quality.py``: the trained PostGRAG unit reads neither its
persona nor its generic response (its BPC is the same with a shuffled persona or a blanked
$R_G$), and ``benchmarks/grag_style_norms.py`` shows why: the zero-initialised output
projections of the style extractors reach only ~6% of a fresh initialisation's norm by the
best step. In PostGRAG the persona and $R_G$ reach the decoder *only* through the style
vector, so a style path that stays near zero leaves a history-only model.

This pilot trains PostGRAG on the benchmark's SPC training sample (same data, seed, batch,
learning rate and schedule as the benchmark's unit) for the first ``--steps`` steps, once per
style learning-rate multiplier (``GRAGTrainingConfig.learning_rate_multipliers =
{"*style_extractor.*": m}``), and at every ``--eval-every`` steps measures on ``--dev`` dev
examples:

* the dev loss $L_P$ with each example's own persona and with personas shuffled across
  examples: the gap (shuffled minus own) is how much the model uses the persona;
* the same with $R_G$ blanked: the gap is how much it uses the generic response;
* the output projections' norm as a share of a fresh Xavier initialisation.

    python benchmarks/grag_style_lr.py [--multipliers 1 10 30] [--steps 80] [--eval-every 40]

``--style-layers 0`` adds the style at those decoder layers only (``GRAGConfig.style_layers``;
default: every layer, the paper's form) and ``--name`` names the results, so a second pilot
does not overwrite the first; the report then shows the every-layer runs of
``benchmarks/results/grag_style_lr.json`` (when present) beside its own, as committed rows:

    python benchmarks/grag_style_lr.py --multipliers 1 10 --steps 60 --eval-every 20 --dev 48 \
        --style-layers 0 --name grag_style_layer0

It reads the prepared data of ``grag_quality.py`` (run that first, or it prepares it) and
writes ``benchmarks/results/<name>.{json,md,png}``; checkpoints go to the work folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (RESULTS, SHARED_DATA, command_line, machine_info, machine_line, now, pyplot,  # noqa: E402
                     save_figure, write_results)

NAME = "grag_style_lr"
PATTERN = "*style_extractor.*"


def out_proj_share(model, fresh: float) -> float:
    """Mean Frobenius norm of the two extractors' output projections over a fresh initialisation's."""
    norms = [float(m.out_proj.weight.detach().float().norm())
             for m in (model.style_extractor, model.generic_style_extractor)]
    return sum(norms) / len(norms) / fresh


def dev_losses(trainer, dev: list, shuffled: list, blank: list) -> dict[str, float]:
    own = trainer.evaluate(dev)["loss_p"]
    return {"loss_p": own, "persona_gap": trainer.evaluate(shuffled)["loss_p"] - own,
            "generic_gap": trainer.evaluate(blank)["loss_p"] - own}


def run_one(multiplier: float, args: argparse.Namespace, d: dict, s: dict, fresh: float, work: Path) -> dict:
    import torch

    import grag_quality as gq
    from personakit.eval.controls import blank_generic, shuffle_personas
    from personakit.recipes.grag import GRAGModelSpec, build_recipe_model
    from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig

    torch.manual_seed(0)
    bb, tok = gq.backbone(s["backbone"])
    layers = list(args.style_layers) if args.style_layers else None
    spec = GRAGModelSpec(kind="postgrag", name="PostGRAG", settings={"style_layers": layers} if layers else {})
    model, dtype = build_recipe_model(spec, bb, tok, dtype="auto")
    p, h, g, r = s["lengths"]
    collator = model.make_collator(max_persona_tokens=p, max_history_tokens=h, max_generic_tokens=g,
                                   max_response_tokens=r)
    multipliers = {} if multiplier == 1 else {PATTERN: float(multiplier)}
    cfg = GRAGTrainingConfig(
        output_dir=str(work / (f"m{multiplier:g}" + ("" if not layers else "-L" + "_".join(map(str, layers))))),
        max_steps=s["max_steps"], batch_size=s["batch"],
        learning_rate=s["lr"], final_lr_fraction=0.5, seed=0, logging_steps=5, eval_at_epoch_end=False,
        save_steps=args.eval_every, keep_last=1, eval_metrics=["loss"], eval_batch_size=16,
        learning_rate_multipliers=multipliers, use_cpu=True, progress=True)
    dev = d["dev"][:args.dev]
    shuffled, blank = shuffle_personas(dev, seed=0), blank_generic(dev)
    trainer = GRAGTrainer(model, cfg, train_examples=d["train"], eval_examples=dev, collator=collator)
    from personakit.training.checkpoint import latest_checkpoint

    found = latest_checkpoint(cfg.output_dir)
    resumed_at = int(found.name.split("-")[-1]) if found is not None else 0
    points = []
    t0 = time.perf_counter()
    for stop in range(0, args.steps + 1, args.eval_every):
        if stop:
            trainer.train(resume_from="latest", stop_after_step=stop)
        point = {"step": stop, **dev_losses(trainer, dev, shuffled, blank), "out_proj_share": out_proj_share(model, fresh)}
        print(f"[{NAME}] x{multiplier:g} step {stop}: " + ", ".join(f"{k} {v:.4f}" for k, v in point.items()
                                                                    if k != "step"), flush=True)
        points.append(point)
    return {"multiplier": multiplier, "style_layers": layers, "dtype": dtype, "points": points,
            "seconds": time.perf_counter() - t0, "resumed_at_step": resumed_at}


def run_label(run: dict) -> str:
    """``m = 10, every layer`` / ``m = 10, layer 0``."""
    layers = run.get("style_layers")
    where = "every layer" if not layers else ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))
    return f"m = {run['multiplier']:g}, {where}"


def to_markdown(result: dict) -> str:
    lines = ["# PostGRAG style path (learning rate, where the style is added): a pilot on SPC", "",
             f"`{result['command']}`, {result['date']}. {result['n_train']} training and {result['n_dev']} dev "
             f"examples of `grag_quality.py`'s SPC sample; PostGRAG (`style_init=\"zero\"`) on SmolLM2 + LoRA, "
             f"frozen weights in {result['runs'][0]['dtype']}, batch {result['batch']}, learning rate "
             f"{result['lr']:g} (the benchmark unit's), the style extractors' rate multiplied by *m* "
             f"(`learning_rate_multipliers={{\"{PATTERN}\": m}}`).", "",
             "Persona gap: dev $L_P$ with shuffled personas minus with the examples' own (how much the model "
             "uses the persona; 0 = not at all). Generic gap: the same with $R_G$ blanked. Out-proj share: "
             "the style extractors' output projection norm over a fresh Xavier initialisation's.", "",
             "Style layers: where the style is added (`GRAGConfig.style_layers`; every layer is the paper's "
             "form). Rows marked *earlier run* come from the committed results named below, not from this "
             "invocation.", "",
             "| m | style layers | step | dev L_P | persona gap | generic gap | out-proj share |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in result.get("baseline_runs", []) + result["runs"]:
        layers = run.get("style_layers")
        where = ("every" if not layers else ", ".join(map(str, layers))) + (" (*earlier run*)" if run.get("earlier") else "")
        for pt in run["points"]:
            lines.append(f"| {run['multiplier']:g} | {where} | {pt['step']} | {pt['loss_p']:.4f} | "
                         f"{pt['persona_gap']:+.4f} | {pt['generic_gap']:+.4f} | {pt['out_proj_share']:.3f} |")
    if result.get("baseline_source"):
        lines += ["", f"Earlier runs: `{result['baseline_source']}` ({result.get('baseline_date', '?')}, "
                      f"`{result.get('baseline_command', '?')}`)."]
    lines += ["", "Wall time per run (this invocation; a run resumed from a checkpoint counts only the steps "
              "after it): " + ", ".join(
                  f"m={r['multiplier']:g} {r['seconds'] / 60:.1f} min"
                  + (f" (resumed at step {r['resumed_at_step']})" if r.get("resumed_at_step") else "")
                  for r in result["runs"]) + ".", "",
              result['machine_line'], "", f"Reproduce: `{result['command']}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for run in result.get("baseline_runs", []) + result["runs"]:
        steps = [p["step"] for p in run["points"]]
        for ax, key in zip(axes, ("loss_p", "persona_gap", "out_proj_share")):
            ax.plot(steps, [p[key] for p in run["points"]], marker="o", linestyle="--" if run.get("earlier") else "-",
                    label=run_label(run) + (" (earlier run)" if run.get("earlier") else ""))
    for ax, title in zip(axes, ("dev L_P", "persona gap (shuffled - own)", "out-proj norm / fresh")):
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 10.0, 30.0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--eval-every", type=int, default=40)
    parser.add_argument("--dev", type=int, default=64, help="dev examples evaluated")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "tmp" / "grag_quality-default")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--style-layers", type=int, nargs="*", default=None,
                        help="decoder layers that get the style (default: every layer, the paper's form)")
    parser.add_argument("--name", default=NAME, help="results name (benchmarks/results/<name>.*)")
    args = parser.parse_args(argv)

    import grag_quality as gq
    from grag_style_norms import fresh_norms

    s = gq.SETTINGS["default"]
    d = gq.prepare("SPC", args.work_dir / "SPC", s, args.data)
    fresh = fresh_norms(576)["out_proj"]
    runs = [run_one(m, args, d, s, fresh, args.work_dir / "SPC" / NAME) for m in args.multipliers]
    info = machine_info(("torch", "transformers", "peft"))
    result = {"command": command_line(argv), "date": now(), "machine": info, "machine_line": machine_line(info), "n_train": len(d["train"]), "n_dev": min(args.dev, len(d["dev"])),
              "batch": s["batch"], "lr": s["lr"], "steps": args.steps, "runs": runs}
    earlier = args.out / f"{NAME}.json"
    if args.style_layers and args.name != NAME and earlier.is_file():  # the every-layer pilot, for comparison
        import json

        base = json.loads(earlier.read_text())
        result.update(baseline_runs=[{**r, "earlier": True} for r in base.get("runs", []) if not r.get("style_layers")],
                      baseline_source=str(earlier.relative_to(args.out.parent.parent)) if earlier.is_relative_to(
                          args.out.parent.parent) else str(earlier),
                      baseline_date=base.get("date"), baseline_command=base.get("command"))
    write_results(args.name, result, to_markdown(result), args.out)
    plot(result, args.out / f"{args.name}.png")
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
