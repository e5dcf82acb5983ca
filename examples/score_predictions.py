"""Score one or more prediction files and print a markdown table of metrics.

Each predictions file is one system (a row of the table). Files are read with
``personakit.eval.load_predictions``: a ``.jsonl`` with ``prediction`` and
``reference`` fields, a ``.jsonl`` with ``id`` + ``prediction`` plus a references file
(``--references``, matched by id or line), or plain-text files with one item per line.

With no ``--predictions``, two tiny systems are written to a temporary folder and
scored, so the script runs in seconds as a demo. With two or more systems, the first
two are compared with a paired t-test on per-example ROUGE-L and a McNemar test on
exact matches.

    python examples/score_predictions.py
    python examples/score_predictions.py --predictions base.jsonl ours.jsonl --metrics char_f1,rouge,bleu,chrf
    python examples/score_predictions.py --predictions preds.txt --references refs.txt --metrics rouge,bertscore
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from personakit.eval import (
    DEFAULT_METRICS,
    METRICS,
    Rouge,
    evaluate_texts,
    format_metrics_table,
    load_predictions,
    mcnemar,
    paired_ttest,
)

DEMO = [
    # (id, reference, baseline prediction, our prediction)
    ("d1", "i love to bake cookies with my mother on sundays.",
     "i like cookies.", "i love baking cookies with my mom on sundays."),
    ("d2", "my dog is a golden retriever named max.",
     "i have a dog.", "my dog max is a golden retriever."),
    ("d3", "i work as a nurse at the children's hospital.",
     "i work at a hospital.", "i am a nurse at the children's hospital."),
    ("d4", "we went hiking in the mountains last weekend.",
     "we went out last weekend.", "we went hiking in the mountains last weekend."),
    ("d5", "i am saving money to travel to japan next year.",
     "i want to travel.", "i am saving up to travel to japan next year."),
]


def write_demo(folder: Path) -> tuple[list[Path], Path]:
    """Write two systems' predictions (id + prediction) and a references file (id + reference)."""
    refs = folder / "references.jsonl"
    refs.write_text("".join(json.dumps({"id": i, "reference": r}) + "\n" for i, r, _, _ in DEMO), encoding="utf-8")
    paths = []
    for name, column in (("baseline", 2), ("ours", 3)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": row[0], "prediction": row[column]}) + "\n" for row in DEMO),
                        encoding="utf-8")
        paths.append(path)
    return paths, refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score prediction files and print a markdown metrics table.")
    parser.add_argument("--predictions", nargs="+", type=Path,
                        help="predictions file(s), one per system; default: a tiny generated demo")
    parser.add_argument("--references", type=Path, default=None,
                        help="references file (.jsonl with 'reference' [+ 'id'], or .txt, one per line)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated metric names (registered: {', '.join(METRICS.names())}); "
                             "'bertscore' loads the embedded MiniLM")
    parser.add_argument("--digits", type=int, default=3, help="decimals in the table")
    args = parser.parse_args(argv)

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        if args.predictions:
            paths, refs_path = args.predictions, args.references
        else:
            paths, refs_path = write_demo(Path(tmp))
            print(f"No --predictions given: scoring a generated demo ({len(DEMO)} examples, 2 systems).\n")

        rows, loaded = {}, {}
        for path in paths:
            data = load_predictions(path, refs_path)
            loaded[path.stem] = data
            rows[path.stem] = evaluate_texts(data.predictions, data.references, metrics=metrics)
        print(format_metrics_table(rows, digits=args.digits))

        if len(loaded) >= 2:
            (name_a, a), (name_b, b) = list(loaded.items())[:2]
            if a.references != b.references:
                print(f"\n{name_a} and {name_b} are not scored on the same references; skipping significance tests.")
                return 0
            rouge_l = Rouge(types=("rougeL",))
            scores_a = rouge_l.pair_scores(a.predictions, a.references)["rougeL"]
            scores_b = rouge_l.pair_scores(b.predictions, b.references)["rougeL"]
            t = paired_ttest(scores_b, scores_a)
            print(f"\n{name_b} vs {name_a}, per-example ROUGE-L: mean difference "
                  f"{t.details['mean_difference']:+.3f}, t = {t.statistic:.3f}, p = {t.p_value:.4f} (n = {t.n})")

            def exact(pred: str, refs) -> bool:
                options = [refs] if isinstance(refs, str) else refs
                return any(pred.strip().lower() == r.strip().lower() for r in options)

            m = mcnemar([exact(p, r) for p, r in zip(b.predictions, b.references)],
                        [exact(p, r) for p, r in zip(a.predictions, a.references)])
            print(f"{name_b} vs {name_a}, exact match: {m.test}, b = {m.details['b']}, c = {m.details['c']}, "
                  f"p = {m.p_value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
