"""Run the CoPersona recipe: induce facets, summarise, embed, build the graph, train the variants, evaluate.

By default the tiny config (``examples/configs/copersona_tiny.yaml``) on sparse Persuasion-for-Good users,
with the embedded SmolLM2-135M-Instruct inducing and summarising facets (schema-guided decoding) and
serving as the LoRA backbone, and MiniLM as the facet encoder.  Writes ``results.md``, ``results.json``,
``predictions.jsonl`` and ``facet_schema.json`` to the output folder and prints the table.

    python examples/copersona_recipe.py
    python examples/copersona_recipe.py --max-users 6 --variants rag,copersona
    python examples/copersona_recipe.py --max-users 3 --num-facets 2 --variants copersona   # the quickest run
    python examples/copersona_recipe.py --config examples/configs/copersona.yaml --output-dir runs/copersona
"""

# personakit-example: real_model, real_data
# personakit-example-args: --max-users 3 --num-facets 2 --variants copersona --quiet

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

    parser = example_parser(__doc__, HERE / "configs" / "copersona_tiny.yaml")
    parser.add_argument("--data", help="Persuasion-for-Good FullData folder (default: the config's)")
    parser.add_argument("--output-dir", default=None, help="results and caches (default: a new temporary folder)")
    parser.add_argument("--max-users", type=int, help="seeded sample of this many users")
    parser.add_argument("--num-facets", type=int, help="facets M to induce (default: the config's)")
    parser.add_argument("--variants", help="comma-separated: nonperso,rag,pag,copersona,no_nonparametric,no_parametric")
    add_run_options(parser)
    args = parser.parse_args(argv)

    from personakit.recipes.copersona import CoPersonaRecipeConfig, run_copersona_recipe

    config = CoPersonaRecipeConfig.from_file(args.config)
    data = config.data.to_dict()
    shared = os.environ.get("PERSONAKIT_SHARED_DATA")
    if args.data:
        data["path"] = args.data
    elif shared:
        data["path"] = str(Path(shared) / "persuasionforgood" / "FullData")
    if args.max_users:
        data["max_users"] = args.max_users
    update: dict = {"data": data, "output_dir": args.output_dir or tempfile.mkdtemp(prefix="personakit-copersona-")}
    if args.num_facets:
        facets = config.facets.to_dict()
        facets["num_facets"] = args.num_facets
        update["facets"] = facets
    if args.variants:
        update["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    return run_example(CoPersonaRecipeConfig, config, update, args, run_copersona_recipe, source=args.config)


if __name__ == "__main__":
    sys.exit(main())
