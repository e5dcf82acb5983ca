"""GRAG quality on real data, in the direction of the paper's Table 3 (and the beta / alpha sweeps of Figures 3-4).

For each dataset, the script builds fixed train and test samples of
:class:`~personakit.types.ResponseExample` (one seeded sample, shared by every run seed),
writes generic responses with the embedded SmolLM2-135M-Instruct (the dataset's shipped
prompt template, the persona never sent; cached, so later seeds and reruns generate
nothing), then runs :func:`personakit.recipes.grag.run_grag_recipe` once per seed:
PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG on the MiniLM BERT2BERT encoder-decoder
(each from the same warm start), ICL(Hist) with SmolLM2, and Char-F1, ROUGE-1/2/L, BLEU,
BPC and BERTScore (MiniLM) on the test sample.

Data (``../shared/data``):

* **SPC** (Synthetic-Persona-Chat): ``spc/train.jsonl`` for training, ``spc/test.jsonl``
  for evaluation; the responder is ``User 2`` (persona = User 2's persona lines).
* **PFG** (Persuasion-for-Good, ``persuasionforgood/FullData``): no official split; the
  dialogues are ordered by the date in their id, the earliest 80% give the training pool
  and the latest 20% the test pool; the responder is the persuader (persona = the
  persuader's survey record).
* **ED** (EmpatheticDialogues): the official ``fixed_valid.csv`` is the training data and
  ``fixed_test.csv`` the evaluation data (the train split is not available here); the
  responder is the listener (persona = the situation prompt and emotion).

From each pool the script keeps a seeded sample (sampling seed 1234, the same for every
run seed) of ``--train`` training and ``--test`` test examples, histories cut to the last
``--history-turns`` turns.  Run seeds change the new weights, the data order and the ICL
shots.  Per dataset and system the tables give the mean +- standard deviation over the
seeds; significance is a two-sided paired t-test, over test examples, of the per-example
ROUGE-L averaged over seeds, of each system against PreSFT(Hist).

Sweeps (``--sweeps``, SPC, seed 0): PreGRAG with beta in ``--betas`` (Figure 3) and
PostGRAG with alpha in ``--alphas`` at beta 0.05 (Figure 4), plotted to
``benchmarks/results/grag_sweeps.png``.

Settings: the default is CPU scale (about 45 minutes on 2 idle cores, measured wall time
in the results); ``--quick`` is a smoke run; ``--scale`` is the paper's setting for a GPU
(BART-base folder via ``--backbone``, 20 epochs, 1,000 test turns; add ``--device cuda``).

    python benchmarks/grag_quality.py                      # CPU scale, 3 seeds SPC + PFG + ED
    python benchmarks/grag_quality.py --sweeps-only        # the beta / alpha sweeps alone
    python benchmarks/grag_quality.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATA, command_line, machine_info, machine_line, now, write_results  # noqa: E402

METRICS = ["char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc", "bertscore_precision", "bertscore_recall",
           "bertscore_f1"]
HEADERS = ["Char-F1", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU", "BPC", "BERT-P", "BERT-R", "BERT-F1"]

# GRAG paper, Table 3 (BART-base task model, Llama-3.1-8B generic responses).
PAPER_TABLE3 = {
    "ED": {"ICL(Hist)": [0.168, 0.142, 0.019, 0.117, 2.216, 2.350, 0.587, 0.510, 0.544],
           "PreSFT(Hist)": [0.132, 0.165, 0.030, 0.148, 3.595, 1.030, 0.556, 0.578, 0.564],
           "PreSFT(TST)": [0.127, 0.158, 0.029, 0.142, 3.346, 1.082, 0.548, 0.570, 0.556],
           "PreGRAG": [0.138, 0.173, 0.036, 0.156, 3.806, 1.022, 0.561, 0.581, 0.568],
           "PostGRAG": [0.146, 0.182, 0.041, 0.164, 4.087, 1.023, 0.567, 0.584, 0.573]},
    "PFG": {"ICL(Hist)": [0.191, 0.167, 0.028, 0.126, 2.302, 1.736, 0.588, 0.554, 0.568],
            "PreSFT(Hist)": [0.166, 0.188, 0.040, 0.149, 3.394, 0.923, 0.553, 0.581, 0.564],
            "PreSFT(TST)": [0.168, 0.186, 0.046, 0.153, 3.368, 0.964, 0.552, 0.573, 0.559],
            "PreGRAG": [0.182, 0.206, 0.057, 0.167, 4.109, 0.923, 0.563, 0.585, 0.571],
            "PostGRAG": [0.186, 0.214, 0.059, 0.175, 4.618, 0.938, 0.569, 0.587, 0.575]},
    "SPC": {"ICL(Hist)": [0.231, 0.231, 0.088, 0.207, 5.967, 1.333, 0.674, 0.583, 0.622],
            "PreSFT(Hist)": [0.317, 0.381, 0.235, 0.365, 17.444, 0.384, 0.709, 0.704, 0.704],
            "PreSFT(TST)": [0.285, 0.348, 0.200, 0.333, 14.500, 0.466, 0.694, 0.690, 0.689],
            "PreGRAG": [0.358, 0.430, 0.280, 0.414, 20.436, 0.381, 0.731, 0.732, 0.729],
            "PostGRAG": [0.366, 0.438, 0.288, 0.423, 21.086, 0.403, 0.741, 0.734, 0.735]},
}

SETTINGS = {
    "default": dict(datasets={"SPC": 3, "PFG": 1, "ED": 1}, train=48, test=24, epochs=2, batch=8, history_turns=3,
                    lengths=(64, 96, 32, 40), new_tokens=24, icl_shots=2, sweep_train=48, sweep_epochs=2),
    "quick": dict(datasets={"SPC": 1}, train=16, test=6, epochs=1, batch=8, history_turns=2,
                  lengths=(32, 48, 24, 24), new_tokens=12, icl_shots=1, sweep_train=16, sweep_epochs=1),
    "scale": dict(datasets={"SPC": 3, "PFG": 3, "ED": 3}, train=None, test=1000, epochs=20, batch=16,
                  history_turns=None, lengths=(128, 256, 64, 64), new_tokens=64, icl_shots=2, sweep_train=None,
                  sweep_epochs=20),
}
TEMPLATES = {"SPC": "spc", "PFG": "pfg", "ED": "empathetic"}


def load_pools(name: str, data: Path) -> tuple[list, list]:
    """Training and test example pools of one dataset (see the module docstring)."""
    from personakit.data import dialogues_to_examples, parse_pfg_date, read_dataset

    if name == "SPC":
        train = dialogues_to_examples(read_dataset(data / "spc" / "train.jsonl"), agent="User 2")
        test = dialogues_to_examples(read_dataset(data / "spc" / "test.jsonl"), agent="User 2")
    elif name == "ED":
        folder = data / "empatheticdialogues"
        train = dialogues_to_examples(read_dataset(folder / "fixed_valid.csv"), agent="listener")
        test = dialogues_to_examples(read_dataset(folder / "fixed_test.csv"), agent="listener")
    elif name == "PFG":
        dialogues = read_dataset(data / "persuasionforgood" / "FullData", "pfg")
        dialogues = sorted(dialogues, key=lambda d: (parse_pfg_date(d.id) or "", d.id))
        cut = int(0.8 * len(dialogues))
        train = dialogues_to_examples(dialogues[:cut], agent="persuader")
        test = dialogues_to_examples(dialogues[cut:], agent="persuader")
    else:
        raise ValueError(f"unknown dataset {name!r}")
    return train, test


def sample(pool: list, n: int | None, history_turns: int | None) -> list:
    chosen = pool if n is None or n >= len(pool) else random.Random(1234).sample(pool, n)
    if history_turns is not None:
        chosen = [ex.model_copy(update={"history": ex.history[-history_turns:]}) for ex in chosen]
    return chosen


def recipe_config(name: str, work: Path, seed: int, s: dict, args: argparse.Namespace, models: list[dict],
                  icl: bool, epochs: int) -> "object":
    from personakit.recipes.grag import GRAGRecipeConfig

    p, h, g, r = s["lengths"]
    return GRAGRecipeConfig.from_dict({
        "data": {"source": "examples", "train_path": str(work / "train.jsonl"), "test_path": str(work / "test.jsonl")},
        "augment": {"model": "smollm2", "template": TEMPLATES[name], "cache": str(work / "llm_cache.jsonl"),
                    "max_new_tokens": s["new_tokens"], "batch_size": 16},
        "inputs": {"max_persona_tokens": p, "max_history_tokens": h, "max_generic_tokens": g,
                   "max_response_tokens": r},
        "models": models, "backbone": args.backbone,
        "training": {"epochs": epochs, "batch_size": s["batch"], "learning_rate": args.lr, "final_lr_fraction": 0.5,
                     "max_new_tokens": s["new_tokens"], "generation_options": {"no_repeat_ngram_size": 3},
                     "progress": True},
        "icl": {"enabled": icl, "n_shot": s["icl_shots"], "max_new_tokens": s["new_tokens"]},
        "eval": {"metrics": ["char_f1", "rouge", "bleu", "bertscore", "bpc"], "bertscore_model": "minilm",
                 "significance_metric": "rougeL"},
        "output_dir": str(work / f"seed{seed}"), "save_checkpoints": True, "seed": seed,
        **({"device": args.device} if args.device else {}),
    }, source=f"grag_quality[{name}]")


def prepare(name: str, work: Path, s: dict, args: argparse.Namespace) -> tuple[int, int]:
    from personakit.augment import save_examples

    work.mkdir(parents=True, exist_ok=True)
    if not (work / "train.jsonl").exists() or not (work / "test.jsonl").exists():
        train_pool, test_pool = load_pools(name, args.data)
        save_examples(work / "train.jsonl", sample(train_pool, s["train"], s["history_turns"]))
        save_examples(work / "test.jsonl", sample(test_pool, s["test"], s["history_turns"]))
    count = lambda p: sum(1 for line in p.read_text().splitlines() if line.strip())  # noqa: E731
    return count(work / "train.jsonl"), count(work / "test.jsonl")


def run_seed(name: str, work: Path, seed: int, s: dict, args: argparse.Namespace, models: list[dict], icl: bool,
             epochs: int) -> dict:
    """One recipe run (skipped when its results.json exists: the benchmark resumes)."""
    from personakit.recipes.grag import run_grag_recipe

    done = work / f"seed{seed}" / "results.json"
    if done.exists():
        print(f"[{name} seed {seed}] reusing {done}", flush=True)
        return json.loads(done.read_text())
    config = recipe_config(name, work, seed, s, args, models, icl, epochs)
    return run_grag_recipe(config, progress=True).to_dict()


def per_example_rougeL(predictions: list[str], references: list[str]) -> list[float]:
    from personakit.eval import rouge

    return [rouge([p], [r], types=["rougeL"])["rougeL"] for p, r in zip(predictions, references)]


def aggregate(name: str, runs: list[dict], references: list[str]) -> dict:
    from personakit.eval import paired_ttest

    systems = list(runs[0]["rows"])
    table = {}
    for system in systems:
        table[system] = {}
        for m in METRICS:
            values = [r["rows"][system].get(m) for r in runs]
            values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
            if values:
                table[system][m] = {"mean": statistics.fmean(values),
                                    "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
    base = "PreSFT(Hist)"
    scores = {system: [statistics.fmean(col) for col in zip(*[per_example_rougeL(r["predictions"][system], references)
                                                               for r in runs])] for system in systems}
    significance = {}
    for system in systems:
        if system == base:
            continue
        t = paired_ttest(scores[system], scores[base])
        significance[system] = {"metric": "rougeL", "mean_difference": t.details["mean_difference"],
                                "t": t.statistic, "p": t.p_value}
    return {"dataset": name, "seeds": len(runs), "systems": systems, "table": table, "significance": significance,
            "training_seconds": {s: statistics.fmean(r["training"][s]["seconds"] for r in runs)
                                 for s in systems if s in runs[0]["training"]},
            "final_loss": {s: [r["training"][s]["final_loss"] for r in runs] for s in systems
                           if s in runs[0]["training"]},
            "examples": [{"reference": references[i], "generic": runs[0].get("generic", [None] * len(references))[i]
                          if runs[0].get("generic") else None,
                          **{s: runs[0]["predictions"][s][i] for s in systems}} for i in range(min(3, len(references)))]}


def run_sweeps(work: Path, s: dict, args: argparse.Namespace) -> dict:
    sweeps: dict[str, list] = {"beta": [], "alpha": []}
    for beta in args.betas:
        res = run_seed("SPC", work / f"beta{beta:g}", 0, s, args, [{"kind": "pregrag", "beta": beta}], False,
                       s["sweep_epochs"])
        sweeps["beta"].append({"beta": beta, **{m: res["rows"]["PreGRAG"].get(m) for m in METRICS}})
    for alpha in args.alphas:
        res = run_seed("SPC", work / f"alpha{alpha:g}", 0, s, args,
                       [{"kind": "postgrag", "alpha": alpha, "beta": 0.05}], False, s["sweep_epochs"])
        sweeps["alpha"].append({"alpha": alpha, **{m: res["rows"]["PostGRAG"].get(m) for m in METRICS}})
    return sweeps


def plot_sweeps(sweeps: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no sweep plot (pip install matplotlib)", flush=True)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "beta", "PreGRAG, C-JEPA weight beta (Fig. 3)"),
                           (axes[1], "alpha", "PostGRAG, style-removal weight alpha (Fig. 4)")):
        xs = [row[key] for row in sweeps[key]]
        for m, name in (("rouge1", "ROUGE-1"), ("rougeL", "ROUGE-L"), ("char_f1", "Char-F1"), ("bertscore_f1", "BERT-F1")):
            ax.plot(range(len(xs)), [row.get(m) for row in sweeps[key]], marker="o", label=name)
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_xlabel(key)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("GRAG sweeps on SPC (CPU scale, seed 0)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return True


def fmt(cell: dict | None, digits: int = 3) -> str:
    if not cell:
        return "–"
    d = 2 if abs(cell["mean"]) >= 1.5 else digits
    return f"{cell['mean']:.{d}f} ± {cell['std']:.{d}f}" if cell["n"] > 1 else f"{cell['mean']:.{d}f}"


def to_markdown(report: dict) -> str:
    lines = ["# GRAG quality (direction of Table 3)", "",
             f"Task model: {report['backbone']} (BERT2BERT warm start for encoder-only checkpoints); generic responses "
             "and ICL(Hist): embedded SmolLM2-135M-Instruct; BERTScore with MiniLM. "
             f"Setting `{report['setting']}`: {report['settings']}. Learning rate {report['lr']}.", ""]
    for ds in report["datasets"]:
        lines += [f"## {ds['dataset']} ({ds['train']} training / {ds['test']} test examples, {ds['seeds']} seed(s))", "",
                  "| system | " + " | ".join(HEADERS) + " | p (ROUGE-L vs PreSFT(Hist)) |",
                  "|---|" + "---:|" * (len(HEADERS) + 1)]
        for system in ds["systems"]:
            sig = ds["significance"].get(system)
            p = "baseline" if system == "PreSFT(Hist)" else (f"{sig['p']:.3g} ({sig['mean_difference']:+.3f})"
                                                             if sig and not math.isnan(sig["p"]) else "–")
            lines.append(f"| {system} | " + " | ".join(fmt(ds["table"][system].get(m)) for m in METRICS) + f" | {p} |")
        paper = PAPER_TABLE3.get(ds["dataset"], {})
        if paper:
            lines += ["", f"Paper (Table 3, {ds['dataset']}, BART-base with Llama-3.1-8B generic responses):", "",
                      "| system | " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * len(HEADERS)]
            for system, vals in paper.items():
                lines.append(f"| {system} | " + " | ".join(f"{v:.3f}" if v < 1.5 else f"{v:.2f}" for v in vals) + " |")
        lines.append("")
    if report.get("sweeps"):
        sw = report["sweeps"]
        lines += ["## Sweeps (SPC, seed 0)", "", "| PreGRAG beta | ROUGE-1 | ROUGE-L | Char-F1 | BERT-F1 |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['beta']:g} | {r['rouge1']:.3f} | {r['rougeL']:.3f} | {r['char_f1']:.3f} | {r['bertscore_f1']:.3f} |"
                  for r in sw["beta"]]
        lines += ["", "| PostGRAG alpha (beta 0.05) | ROUGE-1 | ROUGE-L | Char-F1 | BERT-F1 |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['alpha']:g} | {r['rouge1']:.3f} | {r['rougeL']:.3f} | {r['char_f1']:.3f} | {r['bertscore_f1']:.3f} |"
                  for r in sw["alpha"]]
        if report.get("sweep_plot"):
            lines += ["", f"Plot: `{report['sweep_plot']}`."]
        lines.append("")
    lines += [machine_line(report["machine"]), f"Date: {report['date']}; wall time {report['wall_time_s'] / 60:.1f} min.",
              "", f"Reproduce: `{report['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smoke run (SPC, 1 seed, tiny)")
    group.add_argument("--scale", action="store_true", help="the paper's setting, for a GPU")
    parser.add_argument("--datasets", nargs="+", default=None, choices=["SPC", "PFG", "ED"])
    parser.add_argument("--sweeps", action="store_true", help="also run the beta / alpha sweeps")
    parser.add_argument("--sweeps-only", action="store_true", help="run only the sweeps")
    parser.add_argument("--betas", nargs="+", type=float, default=[0.0, 0.05, 0.5])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.5, 1.0])
    parser.add_argument("--backbone", default="minilm", help="task model backbone (embedded name or folder)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work-dir", type=Path, default=None, help="default benchmarks/results/tmp/grag_quality-<setting>")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    setting = "quick" if args.quick else "scale" if args.scale else "default"
    s = SETTINGS[setting]
    work = args.work_dir or RESULTS / "tmp" / f"grag_quality-{setting}"
    start = time.perf_counter()
    report: dict = {"benchmark": "grag_quality", "setting": setting, "settings": s, "backbone": args.backbone,
                    "lr": args.lr, "datasets": []}
    models = [{"kind": "presft-hist"}, {"kind": "presft-tst"}, {"kind": "pregrag", "beta": 0.05},
              {"kind": "postgrag", "alpha": 0.5, "beta": 0.05}]
    if not args.sweeps_only:
        for name, seeds in s["datasets"].items():
            if args.datasets and name not in args.datasets:
                continue
            dwork = work / name
            n_train, n_test = prepare(name, dwork, s, args)
            runs = [run_seed(name, dwork, seed, s, args, models, True, s["epochs"]) for seed in range(seeds)]
            from personakit.augment import load_examples

            references = [ex.response for ex in load_examples(dwork / "test.jsonl")]
            agg = aggregate(name, runs, references)
            agg.update(train=n_train, test=n_test)
            report["datasets"].append(agg)
            print(f"[{name}] done after {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if args.sweeps or args.sweeps_only:
        prepare("SPC", work / "SPC", s, args)
        sweep_s = dict(s, train=s["sweep_train"])
        for sub in [f"beta{b:g}" for b in args.betas] + [f"alpha{a:g}" for a in args.alphas]:
            d = work / "sweeps" / sub
            d.mkdir(parents=True, exist_ok=True)
            for f in ("train.jsonl", "test.jsonl", "llm_cache.jsonl"):
                if not (d / f).exists() and (work / "SPC" / f).exists():
                    (d / f).write_bytes((work / "SPC" / f).read_bytes())
        report["sweeps"] = run_sweeps(work / "sweeps", sweep_s, args)
        png = args.out_dir / "grag_sweeps.png"
        if plot_sweeps(report["sweeps"], png):
            report["sweep_plot"] = str(png.relative_to(RESULTS.parent.parent)) if png.is_relative_to(RESULTS.parent.parent) else str(png)
    report.update(date=now(), command=command_line(), wall_time_s=time.perf_counter() - start, machine=machine_info())
    name = "grag_sweeps" if args.sweeps_only else "grag_quality"
    md = to_markdown(report)
    write_results(name if setting != "quick" else f"{name}_quick", report, md, args.out_dir)
    print(md)
    return report


if __name__ == "__main__":
    main()
