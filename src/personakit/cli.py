"""The ``personakit`` command.

::

    personakit version
    personakit models list
    personakit models install smollm2
    personakit demo [--n-shot 2] [--max-examples N] [--batch-size 16] [--max-new-tokens 40]
                    [--seed 0] [--model smollm2-135m-instruct] [--output-dir DIR]
    personakit evaluate PREDICTIONS [--references FILE] [--metrics char_f1 rouge ...] [--json]

Every command has ``--help``.  Errors print one line, ``personakit: error: ...``, and
exit with status 2; set ``PERSONAKIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Optional, Sequence

__all__ = ["main", "build_parser"]

_DEFAULT_METRICS = ("char_f1", "rouge", "bleu", "meteor")


class _UsageError(Exception):
    """A command-line usage problem (exit status 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


# --------------------------------------------------------------------- commands
def _cmd_version(args: argparse.Namespace) -> int:
    from personakit import __version__

    print(f"personakit {__version__}")
    return 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    from personakit import backbones

    rows = backbones.list_embedded()
    if args.json:
        print(json.dumps([_status_dict(s) for s in rows], indent=2, default=str))
        return 0
    header = ("name", "package", "installed", "prepared", "path")
    table = [header] + [
        (
            s.name,
            _packages_text(s),
            "yes" if s.installed else "no",
            "yes" if s.prepared else "no",
            str(s.path) if getattr(s, "path", None) else "-",
        )
        for s in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _packages_text(status: object) -> str:
    packages = getattr(status, "packages", None)
    if packages is None:
        packages = getattr(status, "package", "")
    if isinstance(packages, (list, tuple)):
        if len(packages) > 2:
            return f"{packages[0]} (+{len(packages) - 1})"
        return ", ".join(packages)
    return str(packages)


def _status_dict(status: object) -> dict:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(status):
        return asdict(status)  # type: ignore[arg-type]
    return {k: getattr(status, k) for k in ("name", "package", "installed", "prepared", "path") if hasattr(status, k)}


def _cmd_models_install(args: argparse.Namespace) -> int:
    from personakit import backbones

    path = backbones.install_embedded(args.name)
    print(f"{args.name}: ready at {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from personakit.recipes.demo import run_demo

    result = run_demo(
        n_shot=args.n_shot,
        max_examples=args.max_examples,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        model=args.model,
        output_dir=args.output_dir,
        progress=not args.no_progress,
    )
    print(result.report())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from personakit.eval import evaluate_file, format_metrics_table

    if not os.path.exists(args.predictions):
        raise _UsageError(f"{args.predictions}: predictions file not found")
    if args.references is not None and not os.path.exists(args.references):
        raise _UsageError(f"{args.references}: references file not found")
    scores = evaluate_file(args.predictions, args.references, metrics=tuple(args.metrics))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        name = os.path.basename(args.predictions)
        print(format_metrics_table({name: scores}, digits=args.digits))
    return 0


# ----------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``personakit`` command."""
    parser = argparse.ArgumentParser(
        prog="personakit",
        description="personakit: composable building blocks for personalizing language models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the installed version", description="Print the installed version.")
    p.set_defaults(func=_cmd_version)

    models = sub.add_parser(
        "models", help="list or install the embedded models",
        description="Embedded models: weights shipped in packages on the package index (no model hub needed).",
    )
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    p = msub.add_parser("list", help="show every embedded model and whether it is ready",
                        description="Show every embedded model, its package, and whether it is installed and prepared.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_models_list)
    p = msub.add_parser("install", help="prepare an embedded model now (convert / unzip once)",
                        description="Prepare an embedded model now, so that its first use is fast.")
    p.add_argument("name", help="embedded model name or alias, e.g. smollm2, minilm, mpnet")
    p.set_defaults(func=_cmd_models_install)
    models.set_defaults(func=lambda a: _subcommand_missing(models))

    p = sub.add_parser(
        "demo", help="run ICL(Hist) with the embedded SmolLM2 on the built-in corpus and print metrics",
        description=(
            "GRAG's ICL(Hist) baseline (persona + history, n in-context shots from the built-in training "
            "split) on the built-in test split, with the embedded SmolLM2-135M-Instruct and batched greedy "
            "generation; prints char-F1, ROUGE-1/2/L, BLEU and METEOR next to a copy-the-last-user-turn "
            "baseline, and three sample responses."
        ),
    )
    p.add_argument("--n-shot", type=_non_negative_int, default=2, help="in-context demonstrations per prompt (default 2)")
    p.add_argument("--max-examples", type=_positive_int, default=None,
                   help="evaluate a seeded random subset of this many test examples (default: all)")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="prompts per generation batch (default 16)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=40, help="maximum reply length in tokens (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shot sampling and the subset (default 0)")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="causal LM: embedded name, local folder or hub id (default smollm2-135m-instruct)")
    p.add_argument("--output-dir", default=None, help="write predictions.jsonl and metrics.json here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "evaluate", help="score a predictions file and print a metrics table",
        description="Score predictions against references and print a markdown metrics table (or JSON).",
    )
    p.add_argument("predictions", help="predictions file (JSON lines with prediction/reference fields, or text)")
    p.add_argument("--references", default=None, help="references file, when the predictions file has none")
    p.add_argument("--metrics", nargs="+", default=list(_DEFAULT_METRICS),
                   help=f"metrics to compute (default: {' '.join(_DEFAULT_METRICS)})")
    p.add_argument("--digits", type=_non_negative_int, default=3, help="decimal places in the table (default 3)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)

    parser.set_defaults(func=lambda a: _subcommand_missing(parser))
    return parser


def _subcommand_missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# ------------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``personakit`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("personakit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, not a traceback
        if os.environ.get("PERSONAKIT_DEBUG"):
            raise
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError repr-quotes
        message = " ".join(text.split()) or type(exc).__name__
        print(f"personakit: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
