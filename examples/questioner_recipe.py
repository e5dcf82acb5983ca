"""Run the questioner-aware recipe: a dual-tower responder vs plain LoRA vs persona-in-prompt on PFG-Questioner.

By default the tiny config (``examples/configs/questioner_tiny.yaml``): the PFG-Questioner
task built from Persuasion-for-Good (the 12 most frequent persuaders answer their
persuadees), question clusters from MiniLM embeddings, the embedded SmolLM2-135M-Instruct
as the backbone of every system, a few training steps.  Prints the table (ROUGE, BLEU, the
questioner diversity) and the cost table, and writes ``results.md``, ``results.json`` and
``predictions.jsonl`` to the output folder.

    python examples/questioner_recipe.py
    python examples/questioner_recipe.py --max-train 16 --max-test 4 --steps 2
    python examples/questioner_recipe.py --systems dual-tower,lora      # only these systems of the config
    python examples/questioner_recipe.py --config examples/configs/questioner.yaml --device cuda
"""

# personakit-example: real_model, real_data
# personakit-example-args: --max-train 8 --max-test 2 --steps 1 --diversity-inputs 2 --systems dual-tower --quiet

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("PERSONAKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    from personakit.recipes._common import add_run_options, example_parser, run_example

    parser = example_parser(__doc__, HERE / "configs" / "questioner_tiny.yaml")
    parser.add_argument("--data", default=str(SHARED / "persuasionforgood" / "FullData"),
                        help="Persuasion-for-Good FullData folder (default: %(default)s)")
    parser.add_argument("--output-dir", default=None, help="results folder (default: a new temporary folder)")
    parser.add_argument("--max-train", type=int, help="seeded subset of this many training examples")
    parser.add_argument("--max-test", type=int, help="seeded subset of this many test examples")
    parser.add_argument("--steps", type=int, help="training steps per system")
    parser.add_argument("--diversity-inputs", type=int, help="test inputs of the questioner-diversity measure")
    parser.add_argument("--systems", help="comma-separated kinds (dual-tower, lora, persona-prompt) of the "
                                          "config's systems to run (default: all)")
    add_run_options(parser)
    args = parser.parse_args(argv)

    from personakit.recipes.questioner import QuestionerRecipeConfig, run_questioner_recipe

    config = QuestionerRecipeConfig.from_file(args.config)
    data = config.data.to_dict()
    if data["source"] == "pfg":
        data["path"] = args.data
    if args.max_train is not None:
        data["max_train"] = args.max_train
    if args.max_test is not None:
        data["max_test"] = args.max_test
    update: dict = {"data": data,
                    "output_dir": args.output_dir or tempfile.mkdtemp(prefix="personakit-questioner-")}
    if args.steps is not None:
        update["training"] = {**config.training.to_dict(), "max_steps": args.steps}
    if args.diversity_inputs is not None:
        update["eval"] = {**config.eval.to_dict(), "diversity_inputs": args.diversity_inputs}
    if args.systems:
        kinds = {k.strip() for k in args.systems.split(",") if k.strip()}
        chosen = [spec.to_dict() for spec in config.systems if spec.kind in kinds]
        if not chosen:
            parser.error(f"--systems {args.systems!r}: the config {args.config} has none of these kinds "
                         f"(it has {sorted({spec.kind for spec in config.systems})})")
        update["systems"] = chosen
    return run_example(QuestionerRecipeConfig, config, update, args, run_questioner_recipe, source=args.config)


if __name__ == "__main__":
    sys.exit(main())
