"""Run the CoPersona recipe from Python: facets, summaries, the user graph, then the variants trained and scored.

Loads the shipped ``tiny`` config (the built-in corpus as Persuasion-for-Good-style dialogues, no
data files; the embedded SmolLM2-135M-Instruct induces and summarises the facets with schema-guided
decoding and is the LoRA backbone, MiniLM embeds the facets), applies ``KEY=VALUE`` overrides (as
``personakit run copersona --set``), runs it and prints the results; the files go to a new
temporary folder unless ``output_dir=...`` is given.  The same as ``personakit run copersona --config tiny``.

    python examples/copersona_recipe.py
    python examples/copersona_recipe.py 'variants=[rag, copersona]' data.max_test=4
    python examples/copersona_recipe.py --config default device=cuda     # PFG users, ${PERSONAKIT_DATA}
"""

# personakit-example: real_model
# personakit-example-args: 'variants=[nonperso, copersona]' data.max_users=2 data.max_examples_per_user=1 facets.num_facets=2 facets.num_clusters=2 facets.summary_items=2 training.max_steps=1 max_new_tokens=8 'metrics=[rouge, bleu]'

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
    from personakit.recipes.copersona import run_copersona_recipe

    config = load_recipe_config("copersona", args.config, overrides=args.overrides)
    if config.output_dir is None:
        config.output_dir = tempfile.mkdtemp(prefix="personakit-copersona-")
    results = run_copersona_recipe(config, progress=False)
    print(results.to_markdown())
    print(f"facets: {', '.join(f['name'] for f in results.schema['facets'])}")
    print(f"results written to {results.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
