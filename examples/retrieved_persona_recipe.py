"""Cross-family recipe: retrievers and the RSPG selector choose the persona a GRAG model reads.

Trains PreSFT(Hist) (SmolLM2-135M-Instruct + LoRA) on Synthetic-Persona-Chat turns with the full
persona, then answers test turns with the persona chosen per example by: the full persona, none,
random k, BM25 top-k, dense (MiniLM) top-k, and an RSPG selector trained with the GRAG model's own
likelihood of the reference as its reward. Prints the results table and writes results.md,
results.json, predictions.jsonl and manifest.json. The same as
``personakit run retrieved-persona --config tiny [--set ...]``, from Python.

    python examples/retrieved_persona_recipe.py                       # the tiny config
    python examples/retrieved_persona_recipe.py --config default --output-dir runs/rp
    python examples/retrieved_persona_recipe.py --set data.source=builtin   # no data files needed
"""

# personakit-example: real_model, real_data
# personakit-example-args: --set data.max_train=4 --set data.max_dev=3 --set data.max_test=3 --set training.batch_size=4 --set training.max_new_tokens=8 --set rspg.epochs=1 --quiet

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", help="a shipped config (tiny, default) or a YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--output-dir", help="results folder (default: a new temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no stage messages")
    args = parser.parse_args(argv)

    from personakit.recipes.base import load_recipe_config
    from personakit.recipes.retrieved_persona import run_retrieved_persona_recipe

    config = load_recipe_config("retrieved-persona", args.config, overrides=args.set,
                                output_dir=args.output_dir or tempfile.mkdtemp(prefix="personakit-rp-"))
    results = run_retrieved_persona_recipe(config, progress=not args.quiet)
    print(results.to_markdown())
    print(f"written to {results.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
