"""ROPG / RSPG on PFG-LaMP (Persuasion-for-Good): every retriever of the pool and both selectors.

Runs :func:`personakit.recipes.ropg.run_ropg_recipe` on the PFG-LaMP task
(:mod:`personakit.data.pfg_lamp`) with the embedded SmolLM2-135M-Instruct as the frozen
LLM (greedy, ``--new-tokens`` output tokens) and MiniLM as the dense retriever, the
initial retriever of ROPG and the selectors' encoder, and reports on the test split:
ROUGE-1 / ROUGE-L of no retrieval, recency, BM25, dense, RRF, ROPG-RL, ROPG-KD,
RSPG-Pre and RSPG-Post; two-sided paired t-tests against the best single retriever; the
selectors' success rate (paper Table 4) and the pool's oracle bounds (Table 5).
Writes ``benchmarks/results/ropg_pfg.{json,md}`` with the machine, the load average, the
command, the sizes and the wall time.  The response cache and checkpoints live in
``benchmarks/results/tmp/ropg_pfg-<setting>/`` so an interrupted run resumes.

Settings:

* default: CPU scale (40 users, 32 ROPG inputs x top-8, 40 dev and 80 test inputs,
  192-token prompts, 24 output tokens, ROPG 3 epochs, RSPG 5 epochs): about 1,100 LLM
  calls at about 1.5 s each (batch 16) on 2 idle cores, so about 30 minutes.
* ``--quick``: a much smaller CPU run (all users, 12 ROPG inputs x top-4, 8 dev, 16 test,
  12 output tokens, 160-token prompts) for a heavily loaded machine; a smoke test of the
  whole pipeline on real data, far too small for conclusions.
* ``--scale``: a GPU run (all users, 600 ROPG inputs x top-16, whole dev and test, 48
  tokens, the paper's 10 / 20 epochs); add ``--device cuda``.

    python benchmarks/ropg_pfg.py            # CPU scale
    python benchmarks/ropg_pfg.py --quick
    python benchmarks/ropg_pfg.py --scale --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    add_setting_arguments, command_line, machine_info, machine_line, now, require_pfg, setting_name, work_dir, write_results,
)

SETTINGS = {
    "default": dict(max_users=40, max_train=32, max_dev=40, max_test=80, top_l=8, new_tokens=24, ropg_epochs=3,
                    rspg_epochs=5, max_tokens=192),
    "quick": dict(max_users=None, max_train=12, max_dev=8, max_test=16, top_l=4, new_tokens=12, ropg_epochs=2,
                  rspg_epochs=4, max_tokens=160),
    "scale": dict(max_users=None, max_train=600, max_dev=None, max_test=None, top_l=16, new_tokens=48,
                  ropg_epochs=10, rspg_epochs=20, max_tokens=512),
}

# The paper's LaMP numbers (Table 3, FlanT5-XXL): the generation tasks, ROUGE-1 / ROUGE-L.
PAPER_TABLE3 = {
    "LaMP-4": {"No retrieval": (0.176, 0.160), "BM25": (0.186, 0.171), "Recency": (0.189, 0.173),
               "Contriever": (0.183, 0.169), "RRF": (0.190, 0.176), "ROPG-RL": (0.191, 0.177),
               "ROPG-KD": (0.187, 0.172), "RSPG-Pre": (0.190, 0.176), "RSPG-Post": (0.203, 0.186)},
    "LaMP-5": {"No retrieval": (0.478, 0.428), "BM25": (0.477, 0.427), "Recency": (0.475, 0.426),
               "Contriever": (0.483, 0.433), "RRF": (0.478, 0.428), "ROPG-RL": (0.475, 0.427),
               "ROPG-KD": (0.477, 0.428), "RSPG-Pre": (0.483, 0.431), "RSPG-Post": (0.480, 0.429)},
    "LaMP-6": {"No retrieval": (0.335, 0.319), "BM25": (0.412, 0.398), "Recency": (0.403, 0.389),
               "Contriever": (0.401, 0.386), "RRF": (0.394, 0.381), "ROPG-RL": (0.394, 0.381),
               "ROPG-KD": (0.415, 0.400), "RSPG-Pre": (0.426, 0.411), "RSPG-Post": (0.433, 0.418)},
    "LaMP-7": {"No retrieval": (0.449, 0.396), "BM25": (0.446, 0.394), "Recency": (0.444, 0.393),
               "Contriever": (0.440, 0.390), "RRF": (0.446, 0.395), "ROPG-RL": (0.448, 0.397),
               "ROPG-KD": (0.441, 0.391), "RSPG-Pre": (0.450, 0.400), "RSPG-Post": (0.461, 0.409)},
}
PAPER_TABLE4 = {"LaMP-4": (0.401, 0.447), "LaMP-5": (0.600, 0.577), "LaMP-6": (0.633, 0.641),
                "LaMP-7": (0.860, 0.898)}
"""Success rate (RSPG-Pre, RSPG-Post) in the paper's Table 4."""


def build_config(args: argparse.Namespace, setting: dict, output_dir: Path):
    from personakit.recipes.ropg import ROPGRecipeConfig

    ropg_common = dict(learning_rate=2e-5, epochs=setting["ropg_epochs"], batch_size=8, gradient_accumulation_steps=1,
                       warmup_ratio=0.05, temperature=0.05, seed=args.seed, progress=True)
    return ROPGRecipeConfig.from_dict({
        "data": {"source": "pfg", "path": str(args.data), "max_users": setting["max_users"],
                 "max_train": setting["max_train"], "max_dev": setting["max_dev"], "max_test": setting["max_test"]},
        "pool": {"k": 4},
        "prompt": {"max_tokens": setting["max_tokens"], "count_with": "llm"},
        "llm": {"model": "smollm2", "batch_size": args.batch_size, "max_new_tokens": setting["new_tokens"],
                "dtype": "bfloat16" if args.device and args.device.startswith("cuda") else None},
        "ropg": {"encoder": "minilm", "top_l": setting["top_l"], "rl": ropg_common,
                 "kd": {**ropg_common, "target_temperature": 0.1}},
        "rspg": {"encoder": "minilm", "max_length": 256 if setting["max_tokens"] <= 256 else 512,
                 "trainer": {"epochs": setting["rspg_epochs"], "batch_size": 4, "gradient_accumulation_steps": 2,
                             "learning_rate": 5e-5, "target_temperature": 0.1, "seed": args.seed}},
        "output_dir": str(output_dir), "device": args.device, "save_models": False, "seed": args.seed,
    }, source="benchmarks/ropg_pfg.py")


def markdown(report: dict, results_md: str) -> str:
    """The benchmark's header (command, machine, wall time) and the recipe's ``results.md`` below it."""
    lines = [
        f"# ROPG / RSPG on PFG-LaMP ({report['setting']} setting)", "",
        f"Command: `{report['command']}`  ",
        f"Run on {report['date']}; wall time {report['wall_time_s'] / 60:.1f} min; device {report['machine']['device']}; "
        f"1-minute load average {report['machine']['load_average_start'][0]:.1f} at the start "
        + ("(other jobs shared the machine)" if report['machine']['load_average_start'][0] >= 1.0
           else "(the machine was otherwise idle)")
        + f".  {machine_line(report['machine'])}", "",
    ]
    body = results_md.split("\n", 1)[1].lstrip("\n")  # without the recipe's own title
    return "\n".join(lines) + "\n" + body


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_arguments(parser, "ropg_pfg", quick_help="smaller CPU setting for a loaded machine")
    parser.add_argument("--batch-size", type=int, default=16, help="LLM generation batch")
    args = parser.parse_args(argv)
    require_pfg(parser, args.data)

    from personakit.recipes.base import jsonable
    from personakit.recipes.ropg import run_ropg_recipe

    name = setting_name(args)
    setting = SETTINGS[name]
    load_start = os.getloadavg()
    start = time.perf_counter()
    config = build_config(args, setting, work_dir(args, "ropg_pfg"))
    results = run_ropg_recipe(config, progress=True)  # also writes results.md ... into the work folder
    wall = time.perf_counter() - start
    report = {
        "benchmark": "ropg_pfg",
        "setting": name,
        "settings": setting,
        "command": command_line(argv),
        "date": now(),
        "wall_time_s": wall,
        "machine": {**machine_info(("torch", "transformers", "personakit"), args.device),
                    "device": args.device or "cpu", "load_average_start": list(load_start)},
        "paper_table3_rouge1_rougeL": PAPER_TABLE3,
        "paper_table4_success_rate_pre_post": PAPER_TABLE4,
        "results": results.to_dict(),
    }
    report["results"].pop("manifest", None)
    md = markdown(report, results.to_markdown())
    write_results("ropg_pfg", jsonable(report), md, args.out)
    print(md)
    return report


if __name__ == "__main__":
    main()
