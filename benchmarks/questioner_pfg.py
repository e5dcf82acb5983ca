"""Questioner-aware responder on PFG-Questioner (Persuasion-for-Good): dual tower vs LoRA vs persona-in-prompt.

Runs :func:`personakit.recipes.questioner.run_questioner_recipe` on the PFG-Questioner task
(:mod:`personakit.data.pfg_questioner`: the 12 most frequent persuaders answer their
persuadees) with the embedded SmolLM2-135M-Instruct as the backbone of every system and
MiniLM for the question clusters, and reports on the test split:

* ROUGE-1/2/L and BLEU of the dual-tower model (LoRA on the general tower + rank-16
  questioner-specific stream, contrastive loss inside question clusters, 2 views), of a
  plain LoRA fine-tune of the same backbone on the same data, prompts and steps, and of
  persona-in-prompt (the untrained backbone given the questioner's persona record);
* ablations: rank 4 and 64, without the contrastive loss, without clustering (negatives
  from every other questioner), without multi-view augmentation;
* the questioner diversity: mean pairwise 1 - ROUGE-L between the responses to the same
  input under different questioner ids (persona records for the prompted baseline);
* a cost table measured side by side in the same run: parameters added per layer,
  trainable parameters, training step time relative to the plain LoRA fine-tune.

Writes ``benchmarks/results/questioner_pfg.{json,md}`` with the machine (platform, CPU
count, load average), the command, the sizes, the wall time and the paper's headline
numbers beside ours.

The split is ``--split turn`` by default (inside every dialogue, early turns train and
later turns test), because under the per-responder dialogue-date split (``--split time``)
only 3 of the 12 test questioners have a training example, so the questioner-specific
stream could only fall back to the general one; see docs/families/questioner.md.

Settings:

* default: CPU scale (240 training and 32 test examples, 16 steps of 8 per trained system,
  prompts of at most 96 tokens, 24 output tokens, diversity over 8 inputs x 3 questioners,
  seven trained systems plus the prompted one), sized to finish within 45 minutes on 2
  idle cores (with 40 test examples, 10 diversity inputs and 28 steps the whole run took
  48.6 minutes; the less a model is trained, the longer its replies and the slower its
  evaluation).
* ``--quick``: smoke setting (24 training examples, 2 steps of 4, 6 test examples, 8 tokens).
* ``--scale``: a GPU run (all examples, 3 epochs, 48 tokens, the queue of 512); add ``--device cuda``.

    python benchmarks/questioner_pfg.py            # CPU scale
    python benchmarks/questioner_pfg.py --quick
    python benchmarks/questioner_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    add_setting_arguments, command_line, machine_info, machine_line, now, require_pfg, setting_name, work_dir,
    write_results,
)

SETTINGS = {
    "default": dict(max_train=240, max_test=32, steps=16, epochs=None, batch_size=8, new_tokens=24, prompt_tokens=96,
                    response_tokens=32, div_inputs=8, div_questioners=3, clusters=10, queue=64, lr=5e-4),
    "quick": dict(max_train=24, max_test=6, steps=2, epochs=None, batch_size=4, new_tokens=8, prompt_tokens=64,
                  response_tokens=16, div_inputs=2, div_questioners=2, clusters=4, queue=16, lr=5e-4),
    "scale": dict(max_train=None, max_test=None, steps=None, epochs=3, batch_size=16, new_tokens=48,
                  prompt_tokens=256, response_tokens=64, div_inputs=64, div_questioners=4, clusters=10, queue=512,
                  lr=2e-4),
}

PAPER_HEADLINE = {
    "source": "Zeng et al. 2024 (arXiv:2412.11736), abstract / summary: MQDialog, 12 responders, 173 questioners, "
              "7-8B backbones",
    "rougeL_relative_improvement_over_baselines": [0.084, 0.487],
    "win_rate_vs_baselines": [0.54, 0.82],
    "reference_code_settings": {"rank": 16, "temperature": 0.01, "queue": 512, "clusters": 10, "weight": 0.5},
}


def systems(queue: int) -> list[dict]:
    dt = {"rank": 16, "num_views": 2, "contrastive_weight": 0.5, "temperature": 0.01, "queue_size": queue,
          "use_clusters": True}
    return [
        {"kind": "lora", "name": "LoRA"},
        {"kind": "dual-tower", "name": "Dual-tower (r=16)", "settings": dt},
        {"kind": "persona-prompt", "name": "Persona-in-prompt"},
        {"kind": "dual-tower", "name": "ablation: rank 4", "settings": {**dt, "rank": 4}},
        {"kind": "dual-tower", "name": "ablation: rank 64", "settings": {**dt, "rank": 64}},
        {"kind": "dual-tower", "name": "ablation: no contrastive", "settings": {**dt, "contrastive_weight": 0.0}},
        {"kind": "dual-tower", "name": "ablation: no clustering", "settings": {**dt, "use_clusters": False}},
        {"kind": "dual-tower", "name": "ablation: no multi-view", "settings": {**dt, "num_views": 0}},
    ]


def build_config(args: argparse.Namespace, s: dict, output_dir: Path):
    from personakit.recipes.questioner import QuestionerRecipeConfig

    training = {"batch_size": s["batch_size"], "learning_rate": s["lr"], "max_new_tokens": s["new_tokens"],
                "eval_metrics": ["loss"], "eval_batch_size": 16, "seed": args.seed, "progress": False}
    if s["steps"] is not None:
        training["max_steps"] = s["steps"]
    else:
        training["epochs"] = s["epochs"]
    return QuestionerRecipeConfig.from_dict({
        "data": {"source": "pfg", "path": str(args.data),
                 "pfg": {"split_by": args.split, "history_turns": 4, "seed": args.seed},
                 "max_train": s["max_train"], "max_test": s["max_test"]},
        "backbone": "smollm2",
        "clusterer": {"num_clusters": s["clusters"], "encoder": "minilm", "seed": args.seed},
        "systems": systems(s["queue"]),
        "inputs": {"max_prompt_tokens": s["prompt_tokens"], "max_response_tokens": s["response_tokens"]},
        "training": training,
        "eval": {"metrics": ["rouge", "bleu"], "diversity_inputs": s["div_inputs"],
                 "diversity_questioners": s["div_questioners"], "prompt_batch_size": 16},
        "output_dir": str(output_dir), "device": args.device, "seed": args.seed,
    }, source="benchmarks/questioner_pfg.py")


def markdown(report: dict) -> str:
    r, m = report["results"], report["machine"]
    lines = [
        f"# Questioner-aware responder on PFG-Questioner ({report['setting']} setting)", "",
        f"Command: `{report['command']}`  ",
        f"Run on {report['date']}; wall time {report['wall_time_s'] / 60:.1f} min; device {m['device']}; 1-minute "
        f"load average {m['load_average_start'][0]:.1f} at the start.  {machine_line(m)}", "",
        "Sizes: " + ", ".join(f"{k} {v}" for k, v in r["sizes"].items()) + f"; split `{report['split']}`.", "",
        "## Test split", "", report["table"], "",
        "`diversity`: mean pairwise 1 - ROUGE-L between the responses to the same test input generated for "
        "different training questioners (0: the questioner changes nothing; the LoRA baseline cannot see the "
        "questioner, so it is 0 by construction).", "",
        "## Cost (measured side by side in this run)", "", report["cost_table"], "",
        "## The paper's headline numbers (MQDialog, 7-8B backbones; not comparable in scale)", "",
        f"ROUGE-L relative improvement over the baselines: +{PAPER_HEADLINE['rougeL_relative_improvement_over_baselines'][0]:.1%}"
        f" to +{PAPER_HEADLINE['rougeL_relative_improvement_over_baselines'][1]:.1%}; winning rate "
        f"{PAPER_HEADLINE['win_rate_vs_baselines'][0]:.0%} to {PAPER_HEADLINE['win_rate_vs_baselines'][1]:.0%}.  "
        f"Ours: dual tower vs LoRA, ROUGE-L {report['relative_rougeL_vs_lora']}; vs persona-in-prompt "
        f"{report['relative_rougeL_vs_prompt']}.", "",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def _relative(rows: dict, a: str, b: str) -> str:
    try:
        x, y = rows[a]["rougeL"], rows[b]["rougeL"]
        return f"{(x - y) / y:+.1%}" if y else "n/a"
    except KeyError:
        return "n/a"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, "questioner_pfg")
    parser.add_argument("--split", choices=["turn", "time"], default="turn", help="PFG-Questioner split")
    args = parser.parse_args(argv)
    require_pfg(parser, args.data)

    from personakit.recipes.base import jsonable
    from personakit.recipes.questioner import run_questioner_recipe

    name = setting_name(args)
    setting = SETTINGS[name]
    load_start = os.getloadavg()
    start = time.perf_counter()
    config = build_config(args, setting, work_dir(args, "questioner_pfg"))
    results = run_questioner_recipe(config, progress=True)
    wall = time.perf_counter() - start
    report = {
        "benchmark": "questioner_pfg", "setting": name, "settings": setting, "split": args.split,
        "command": command_line(argv),
        "date": now(),
        "wall_time_s": wall,
        "machine": {**machine_info(("torch", "transformers", "personakit"), args.device),
                    "device": args.device or "cpu", "load_average_start": list(load_start)},
        "paper_headline": PAPER_HEADLINE,
        "results": results.to_dict(),
        "table": results.table(),
        "cost_table": results.cost_table(),
        "relative_rougeL_vs_lora": _relative(results.rows, "Dual-tower (r=16)", "LoRA"),
        "relative_rougeL_vs_prompt": _relative(results.rows, "Dual-tower (r=16)", "Persona-in-prompt"),
    }
    for system in report["results"]["details"]["training"].values():
        system["history"] = system["history"][-3:]
    suffix = "" if name == "default" else f"-{name}"
    md = markdown(report)
    write_results(f"questioner_pfg{suffix}", jsonable(report), md, args.out)
    print(md)
    return report


if __name__ == "__main__":
    main()
