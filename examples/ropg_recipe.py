"""Run the ROPG / RSPG recipe from Python: train retrievers from LLM feedback, select one per input, compare.

Loads the shipped tiny config (the built-in corpus as a PFG-LaMP-style task, the embedded
SmolLM2-135M-Instruct as the frozen LLM, MiniLM as the retriever and selector encoder),
applies ``key=value`` overrides given on the command line (as ``personakit run --set``
does), runs the recipe into a new temporary folder and prints the results.

    python examples/ropg_recipe.py
    python examples/ropg_recipe.py data.max_test=4 "rspg.modes=[post]"

The command line does the same: ``personakit run ropg --config tiny --set data.max_test=4``.
"""

# personakit-example: real_model
# personakit-example-args: data.max_train=3 data.max_dev=2 data.max_test=3 pool.retrievers=[none,bm25,ropg-kd] rspg.modes=[post] llm.max_new_tokens=6 ropg.top_l=2

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from personakit.recipes.base import load_recipe_config
    from personakit.recipes.ropg import run_ropg_recipe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, as `personakit run ropg --set` takes them (e.g. data.max_test=4)")
    overrides = parser.parse_args(argv).overrides
    config = load_recipe_config("ropg", "tiny", overrides=overrides,
                                output_dir=tempfile.mkdtemp(prefix="personakit-ropg-"))
    results = run_ropg_recipe(config, progress=False)
    print(results.to_markdown())
    for label, summary in results.selectors.items():
        print(f"{label}: success rate {summary['success_rate']:.3f} (oracle upper bound {results.oracle['upper']:.4f})")
    print(f"results in {results.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
