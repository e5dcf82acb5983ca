"""Run the ROPG / RSPG recipe: train retrievers from LLM feedback, select one per input, compare the pool.

By default the tiny config (``examples/configs/ropg_tiny.yaml``) on the built-in corpus,
with the embedded SmolLM2-135M-Instruct as the frozen LLM and MiniLM as the retriever
and selector encoder (about a minute on a laptop CPU).  ``--data`` points it at the
Persuasion-for-Good ``FullData`` folder (PFG-LaMP) or ``--lamp`` at a LaMP task folder.

    python examples/ropg_recipe.py
    python examples/ropg_recipe.py --config examples/configs/ropg.yaml     # PFG-LaMP, CPU scale
    python examples/ropg_recipe.py --lamp data/LaMP_4 --max-test 200
"""

# personakit-example: real_model
# personakit-example-args: --max-train 3 --max-dev 2 --max-test 2 --quiet

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

    parser = example_parser(__doc__, HERE / "configs" / "ropg_tiny.yaml")
    parser.add_argument("--data", help="Persuasion-for-Good FullData folder (PFG-LaMP task)")
    parser.add_argument("--lamp", help="LaMP task folder with {train,dev,test}_questions.json / _outputs.json")
    parser.add_argument("--output-dir",
                        help="where the cache, checkpoints and results go (default: a new temporary folder; "
                             "pass the same folder again to serve a rerun from its response cache and checkpoints)")
    parser.add_argument("--max-train", type=int, help="ROPG training inputs")
    parser.add_argument("--max-dev", type=int, help="RSPG training inputs")
    parser.add_argument("--max-test", type=int, help="test inputs")
    add_run_options(parser)
    args = parser.parse_args(argv)

    from personakit.recipes.ropg import ROPGRecipeConfig, run_ropg_recipe

    config = ROPGRecipeConfig.from_file(args.config)
    data = config.data.to_dict()
    if args.data:
        data.update(source="pfg", path=args.data)
    if args.lamp:
        data.update(source="lamp", path=args.lamp)
    for key in ("max_train", "max_dev", "max_test"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    update = {"data": data}
    update["output_dir"] = args.output_dir or tempfile.mkdtemp(prefix="personakit-ropg-recipe-")
    return run_example(ROPGRecipeConfig, config, update, args, run_ropg_recipe, source=args.config,
                       details=lambda r: f", {r.sizes['llm_prompts_generated']} prompts generated")


if __name__ == "__main__":
    sys.exit(main())
