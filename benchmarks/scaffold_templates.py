"""Generic responses from a small model: the paper's single-message template vs the chat layout.

GRAG's generic response $R_G$ is the reply of a generic LLM that never sees the persona.
With the embedded SmolLM2-135M-Instruct, the paper's layout (a long system prompt with the
scenario, goals and rules, the history as ``Name: text`` lines in one user message) gives
many replies that clean up to nothing (the model starts with a ``User:`` turn or writes a
note) and replies that name the agent by its prompt label ("I'm Agent in a friendly chat.").
The chat layout (``layout: chat``: a short system message, the history as alternating
user / assistant turns) is the format such a model was tuned on.

On ``--n`` fixed Synthetic-Persona-Chat test turns (``spc/test.jsonl``, responder ``User 2``,
whole histories, a seeded sample), the script writes $R_G$ with each of ``--templates``
(default ``spc`` and ``spc-chat``) through :class:`personakit.augment.GenericResponseAugmenter`,
on one loaded model: greedy decoding, ``--max-new-tokens`` new tokens and the stop sequence
``"\\n"`` (the GRAG recipe's settings), batches of ``--batch-size``.  It reports per template:

* empty replies after the clean-up in the first (greedy) pass, still empty after the
  augmenter's 2 sampled retries (these get the fallback ``"Okay."``), and empty in the end;
* speaker-label leaks (:func:`personakit.augment.speaker_label_leak`) in the raw first
  replies and left after the clean-up;
* the mean length of the final $R_G$ in words, ROUGE-1 and BERTScore-F1 (MiniLM) of the
  final $R_G$ against the reference reply $R_P$, the wall time of the first pass and of the
  retries, and 5 sample pairs;
* a control row: the last user turn copied as $R_G$.

Replies are cached in ``--work-dir`` (``benchmarks/results/tmp/scaffold_templates``), so a
rerun generates nothing (its times then say so: ``generated`` is 0).

    python benchmarks/scaffold_templates.py     # writes benchmarks/results/scaffold_templates.{json,md,png}
    python benchmarks/scaffold_templates.py --n 16 --out-dir /tmp/scaffold   # smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (RESULTS, SHARED_DATA, command_line, machine_info, machine_line, now, pyplot,  # noqa: E402
                     save_figure, write_results)

NAME = "scaffold_templates"
SAMPLE_SEED = 1234
N_SAMPLES = 5


def git_commit() -> str:
    """The commit of the working tree (``+dirty`` when it has uncommitted changes), or ``"unknown"``."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_turns(data: Path, n: int) -> list:
    """``n`` SPC test turns: a seeded sample of every non-leading ``User 2`` turn, whole histories."""
    from personakit.data import DEFAULT_AGENTS, dialogues_to_examples, read_spc_jsonl

    path = data / "spc" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: SPC test file not found (pass --data, the shared data folder)")
    pool = dialogues_to_examples(read_spc_jsonl(path), DEFAULT_AGENTS["spc"])
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} SPC test turns, asked for {n}")
    return random.Random(SAMPLE_SEED).sample(pool, n)


def score(texts: list[str], references: list[str]) -> dict[str, float]:
    from personakit.eval import evaluate_texts

    scores = evaluate_texts(texts, references, metrics=["rouge", "bertscore"],
                            rouge={"types": ["rouge1"]}, bertscore={"model": "minilm"})
    return {"rouge1": scores["rouge1"], "bertscore_f1": scores["bertscore_f1"]}


def run_template(generator, template: str, examples: list, settings, args: argparse.Namespace) -> dict:
    """The first (greedy) pass, then the retries and the fallback, of one template; all cached."""
    from personakit.augment import GenericResponseAugmenter

    cache = args.work_dir / "llm_cache.jsonl"
    common = dict(settings=settings, cache=cache, batch_size=args.batch_size)
    first = GenericResponseAugmenter(generator, template, empty_retries=0, fallback=None, **common)
    start = time.perf_counter()
    first_texts = first.generate(examples, progress=False)
    first_s = time.perf_counter() - start
    full = GenericResponseAugmenter(generator, template, **common)  # the defaults: 2 retries, then "Okay."
    start = time.perf_counter()
    final = full.generate(examples, progress=False)  # the first pass now comes from the cache
    retry_s = time.perf_counter() - start
    st, st1 = full.last_stats, first.last_stats
    n = len(examples)
    still_empty = st.fallback + st.empty
    return {
        "template": template,
        "layout": full.template.layout,
        "first_empty": st.first_empty,
        "still_empty_after_retries": still_empty,
        "final_empty": st.empty,
        "first_empty_rate": st.first_empty / n,
        "still_empty_rate": still_empty / n,
        "final_empty_rate": st.empty / n,
        "label_leaks": st.label_leaks,
        "label_leak_rate": st.label_leaks / n,
        "leaks_after_cleanup": sum(1 for t in final if full.leaks_label(t)),
        "mean_words": statistics.mean(len(t.split()) for t in final),
        "first_pass_s": first_s,
        "retries_s": retry_s,
        "generated_first_pass": st1.generated,
        "generated_retries": st.generated,
        "first_pass": first_texts,
        "final": final,
    }


def plot(rows: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    measures = [("first_empty_rate", "empty (1st pass)"), ("label_leak_rate", "label leaks"),
                ("rouge1", "ROUGE-1"), ("bertscore_f1", "BERTScore-F1")]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.8 / len(rows)
    for j, row in enumerate(rows):
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(measures))]
        vals = [row.get(key) or 0.0 for key, _ in measures]
        bars = ax.bar(xs, vals, width, label=row["template"])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(measures)), [label for _, label in measures])
    ax.set_ylim(0, 1)
    ax.set_title(f"Generic responses of SmolLM2-135M on {rows[0]['n']} SPC test turns", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _pct(k: int, n: int) -> str:
    return f"{k} ({100 * k / n:.1f}%)"


def to_markdown(report: dict) -> str:
    n = report["n"]
    hw = report["hardware"]
    lines = [
        "# Generic responses from a small model: single-message vs chat layout", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {hw['cpu']}; `amx_bf16` {'yes' if hw['amx_bf16'] else 'no'}, `avx512_bf16` "
        f"{'yes' if hw['avx512_bf16'] else 'no'}; {hw['threads']} torch threads; 1-minute load "
        f"{hw['load_at_start']:.2f} at the start; {report['dtype']}; commit `{report['commit']}`; "
        f"{report['date']}.", "",
        f"Generic LLM: embedded SmolLM2-135M-Instruct, greedy, at most {report['max_new_tokens']} new tokens, "
        f"stop `\\n`, batches of {report['batch_size']}. Data: {n} Synthetic-Persona-Chat test turns "
        f"(`spc/test.jsonl`, responder `User 2`, whole histories, a sample with seed {SAMPLE_SEED}); "
        f"prompts {report['prompt_tokens']}. Empty replies are retried twice, sampling "
        "(temperature 0.7, seeds 1 and 2), then get the fallback `\"Okay.\"` "
        "(`GenericResponseAugmenter` defaults). ROUGE-1 and BERTScore-F1 (MiniLM): final $R_G$ against the "
        "reference reply $R_P$.", "",
        "| template | layout | empty, 1st pass | still empty after retries (fallback) | empty in the end | "
        "label leaks (raw) | leaks after clean-up | mean words | ROUGE-1 | BERTScore-F1 | 1st pass (s) | "
        "retries (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| `{r['template']}` | {r['layout']} | {_pct(r['first_empty'], n)} | "
            f"{_pct(r['still_empty_after_retries'], n)} | {_pct(r['final_empty'], n)} | "
            f"{_pct(r['label_leaks'], n)} | {r['leaks_after_cleanup']} | {r['mean_words']:.1f} | "
            f"{r['rouge1']:.3f} | {r['bertscore_f1']:.3f} | {r['first_pass_s']:.0f} | {r['retries_s']:.0f} |")
    c = report["control"]
    lines += [f"| control: last user turn as $R_G$ | – | – | – | – | – | – | {c['mean_words']:.1f} | "
              f"{c['rouge1']:.3f} | {c['bertscore_f1']:.3f} | – | – |", ""]
    if any(r["generated_first_pass"] == 0 for r in report["rows"]):
        lines += ["Some rows came from the response cache of an earlier run (0 prompts generated): "
                  "their times are cache look-ups, not generation.", ""]
    lines += [report["verdict"], ""]
    if report.get("plot"):
        lines += [f"Plot: `{report['plot']}`.", ""]
    lines += ["Samples (the same turns for every template):", ""]
    for s in report["samples"]:
        lines.append(f"- user: {s['user']!r}")
        for t, text in s["generic"].items():
            lines.append(f"  - `{t}`: {text!r}")
        lines.append(f"  - reference $R_P$: {s['reference']!r}")
    lines += ["", machine_line(report["machine"]), f"Wall time {report['wall_time_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def verdict(rows: list[dict], control: dict) -> str:
    """A plain reading of the first two rows and the control."""
    if len(rows) < 2:
        return ""
    a, b = rows[0], rows[1]
    return (f"`{b['template']}` against `{a['template']}`: empty first replies {b['first_empty']} vs "
            f"{a['first_empty']}, label leaks {b['label_leaks']} vs {a['label_leaks']}, ROUGE-1 "
            f"{b['rouge1']:.3f} vs {a['rouge1']:.3f}, BERTScore-F1 {b['bertscore_f1']:.3f} vs {a['bertscore_f1']:.3f}. "
            f"The control (the last user turn copied) scores ROUGE-1 {control['rouge1']:.3f} and BERTScore-F1 "
            f"{control['bertscore_f1']:.3f}: overlap with $R_P$ says little about a scaffold, so the clear effects "
            "of the layout are the empty replies and the label leaks. Times are wall times on a machine shared "
            "with other jobs (see the load), so compare them only as a rough cost.")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="SPC test turns")
    parser.add_argument("--templates", nargs="+", default=["spc", "spc-chat"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work-dir", type=Path, default=RESULTS / "tmp" / NAME, help="response cache")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from personakit.augment import GenericResponseAugmenter
    from personakit.backbones.precision import cpu_bf16_support
    from personakit.llm import GenerationSettings, HFGenerator

    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    examples = load_turns(args.data, args.n)
    references = [ex.response for ex in examples]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=["\n"])
    generator = HFGenerator.from_pretrained(args.model, batch_size=args.batch_size)
    generator.generate(["Hi!"], GenerationSettings(max_new_tokens=2), progress=False)  # warm-up
    args.work_dir.mkdir(parents=True, exist_ok=True)
    prompt_tokens = []
    rows = []
    for template in args.templates:
        probe = GenericResponseAugmenter(generator, template)
        lengths = [len(generator.encode(probe.build_prompt(ex))) for ex in examples]
        prompt_tokens.append(f"`{template}` {min(lengths)}-{max(lengths)} tokens (mean {statistics.mean(lengths):.0f})")
        row = run_template(generator, template, examples, settings, args)
        row.update(score(row["final"], references), n=len(examples))
        rows.append(row)
        print(f"{template}: first-pass empty {row['first_empty']}, leaks {row['label_leaks']}, "
              f"ROUGE-1 {row['rouge1']:.3f}, BERTScore-F1 {row['bertscore_f1']:.3f}, "
              f"{row['first_pass_s']:.0f} s + {row['retries_s']:.0f} s", flush=True)
    copies = [ex.history[-1].text for ex in examples]
    control = {"mean_words": statistics.mean(len(t.split()) for t in copies), **score(copies, references)}
    samples = [{"user": ex.history[-1].text, "reference": ex.response,
                "generic": {r["template"]: r["final"][i] for r in rows}} for i, ex in enumerate(examples[:N_SAMPLES])]
    report = {
        "benchmark": NAME, "n": len(examples), "templates": args.templates, "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "dtype": str(next(generator.model.parameters()).dtype).replace("torch.", ""),
        "prompt_tokens": ", ".join(prompt_tokens), "commit": git_commit(),
        "hardware": {**cpu_bf16_support(), "threads": torch.get_num_threads(), "load_at_start": load_at_start},
        "rows": [{k: v for k, v in r.items() if k not in ("first_pass", "final")} for r in rows],
        "control": control, "samples": samples, "verdict": verdict(rows, control),
        "outputs": {r["template"]: {"first_pass": r["first_pass"], "final": r["final"]} for r in rows},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    png = args.out_dir / f"{NAME}.png"
    if plot(report["rows"], png):
        root = RESULTS.parent.parent
        report["plot"] = str(png.relative_to(root)) if png.resolve().is_relative_to(root) else str(png)
    report.update(date=now(), command=command_line(argv), wall_time_s=time.perf_counter() - start,
                  machine=machine_info())
    md = to_markdown(report)
    write_results(NAME, report, md, args.out_dir)
    print(md)
    return report


if __name__ == "__main__":
    main()
