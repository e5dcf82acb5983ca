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

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "configs" / "ropg_tiny.yaml"),
                        help="recipe YAML (default: %(default)s)")
    parser.add_argument("--data", help="Persuasion-for-Good FullData folder (PFG-LaMP task)")
    parser.add_argument("--lamp", help="LaMP task folder with {train,dev,test}_questions.json / _outputs.json")
    parser.add_argument("--output-dir",
                        help="where the cache, checkpoints and results go (default: a new temporary folder; "
                             "pass the same folder again to serve a rerun from its response cache and checkpoints)")
    parser.add_argument("--max-train", type=int, help="ROPG training inputs")
    parser.add_argument("--max-dev", type=int, help="RSPG training inputs")
    parser.add_argument("--max-test", type=int, help="test inputs")
    parser.add_argument("--device", help="e.g. cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
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
    if args.device:
        update["device"] = args.device
    config = ROPGRecipeConfig.from_dict({**config.to_dict(), **update}, source=args.config)

    results = run_ropg_recipe(config, progress=not args.quiet)
    print(results.to_markdown())
    print(f"results written to {Path(config.output_dir) / 'results.md'} "
          f"({results.timings['total_s']:.0f} s, {results.sizes['llm_prompts_generated']} prompts generated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
