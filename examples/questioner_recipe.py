"""Run the questioner-aware recipe from Python: a dual-tower responder vs plain LoRA vs persona-in-prompt.

Loads the shipped ``tiny`` config (the built-in sample corpus, no data files; the embedded
SmolLM2-135M-Instruct and MiniLM), applies ``KEY=VALUE`` overrides (as ``personakit run
questioner --set``), runs it and prints the results; the files go to a new temporary folder
unless ``output_dir=...`` is given.  The same as ``personakit run questioner --config tiny``.

    python examples/questioner_recipe.py
    python examples/questioner_recipe.py training.max_steps=2 data.max_test=4 save_models=true
    python examples/questioner_recipe.py --config default device=cuda    # PFG-Questioner, ${PERSONAKIT_DATA}
"""

# personakit-example: real_model
# personakit-example-args: data.max_test=2 training.max_steps=1 training.max_new_tokens=8 eval.diversity_inputs=2 eval.diversity_questioners=2 'systems=[{kind: dual-tower}]'

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. training.max_steps=2")
    parser.add_argument("--config", default="tiny", help="a shipped config (tiny, default) or a YAML file")
    args = parser.parse_args(argv)

    from personakit.recipes.base import load_recipe_config
    from personakit.recipes.questioner import run_questioner_recipe

    config = load_recipe_config("questioner", args.config, overrides=args.overrides)
    if config.output_dir is None:
        config.output_dir = tempfile.mkdtemp(prefix="personakit-questioner-")
    results = run_questioner_recipe(config, progress=False)
    print(results.to_markdown())
    print(f"dual-tower diversity: {results.diversity.get('Dual-tower', {}).get('mean_pairwise_1_minus_rougeL')}")
    print(f"results written to {results.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
