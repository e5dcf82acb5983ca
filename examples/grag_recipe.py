"""Run the GRAG recipe: augment, train PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG, evaluate, compare.

By default the tiny config (``examples/configs/grag_tiny.yaml``) on the built-in corpus, with
the embedded SmolLM2-135M-Instruct as the generic LLM (and the ICL(Hist) baseline) and the
MiniLM BERT2BERT encoder-decoder as the backbone of the four trained models.  Writes
``results.md``, ``results.json`` and ``predictions.jsonl`` to the output folder and prints the
table.  ``--config examples/configs/grag.yaml`` runs the whole built-in corpus; ``--train`` /
``--test`` point it at JSON-lines example files (``personakit augment`` output).

    python examples/grag_recipe.py
    python examples/grag_recipe.py --max-train 8 --max-test 4 --epochs 1
    python examples/grag_recipe.py --config examples/configs/grag.yaml --output-dir runs/grag
    python examples/grag_recipe.py --train spc_train.jsonl --test spc_test.jsonl --no-icl
"""

# personakit-example: real_model
# personakit-example-args: --max-train 8 --max-test 4 --epochs 1 --quiet

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    from personakit.recipes._common import add_run_options, example_parser, run_example

    parser = example_parser(__doc__, HERE / "configs" / "grag_tiny.yaml")
    parser.add_argument("--train", help="training examples, JSON lines of ResponseExample")
    parser.add_argument("--test", help="test examples, JSON lines of ResponseExample")
    parser.add_argument("--output-dir", default=os.path.join(tempfile.gettempdir(), "personakit-grag-recipe"),
                        help="results, response cache and checkpoints (default: %(default)s; a rerun there is "
                             "served from the response cache)")
    parser.add_argument("--max-train", type=int, help="seeded subset of this many training examples")
    parser.add_argument("--max-test", type=int, help="seeded subset of this many test examples")
    parser.add_argument("--epochs", type=int, help="training epochs per model")
    parser.add_argument("--backbone", help="backbone of the trained models (default: the config's, minilm)")
    parser.add_argument("--no-icl", action="store_true", help="skip the ICL(Hist) row")
    add_run_options(parser)
    args = parser.parse_args(argv)

    from personakit.recipes.grag import GRAGRecipeConfig, run_grag_recipe

    config = GRAGRecipeConfig.from_file(args.config)
    data = config.data.to_dict()
    if args.train or args.test:
        if not (args.train and args.test):
            parser.error("--train and --test go together")
        data.update(source="examples", train_path=args.train, test_path=args.test)
    if args.max_train is not None:
        data["max_train"] = args.max_train
    if args.max_test is not None:
        data["max_test"] = args.max_test
    update: dict = {"data": data, "output_dir": args.output_dir}
    if args.epochs is not None:
        update["training"] = {**config.training.to_dict(), "epochs": args.epochs}
    if args.backbone:
        update["backbone"] = args.backbone
    if args.no_icl:
        update["icl"] = {**config.icl.to_dict(), "enabled": False}
    return run_example(GRAGRecipeConfig, config, update, args, run_grag_recipe, source=args.config)


if __name__ == "__main__":
    sys.exit(main())
