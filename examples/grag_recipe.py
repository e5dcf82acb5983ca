"""The GRAG recipe from Python: load the shipped tiny config, shrink it, run it, read the results.

The same run as ``personakit run grag --config tiny --set KEY=VALUE ...``: augment the
built-in corpus with the embedded SmolLM2-135M-Instruct, train PreSFT(Hist), PreSFT(TST),
PreGRAG and PostGRAG as LoRA adapters on it, answer with ICL(Hist), score, and write
``results.md``, ``results.json``, ``predictions.jsonl`` and ``manifest.json`` to a new
temporary folder.  Extra arguments are ``--set``-style overrides of the config:

    python examples/grag_recipe.py
    python examples/grag_recipe.py data.max_train=8 data.max_test=4 training.epochs=1
"""

# personakit-example: real_model
# personakit-example-args: data.max_train=4 data.max_test=2 training.batch_size=4 "models=[{kind: presft-hist}, {kind: postgrag}]" "eval.metrics=[char_f1, rouge, bpc]"

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(overrides: list[str]) -> int:
    from personakit.recipes.base import load_recipe_config
    from personakit.recipes.grag import run_grag_recipe

    config = load_recipe_config("grag", "tiny", overrides=overrides,
                                output_dir=tempfile.mkdtemp(prefix="personakit-grag-"))
    results = run_grag_recipe(config, progress=False)
    print(results.table())                        # the main test set; results.test_sets holds every one
    print("PostGRAG vs PreSFT(Hist), rougeL:", results.significance.get("PostGRAG", {}).get("rougeL"))
    print(f"written to {results.output_dir}: personakit evaluate {results.output_dir}/predictions.jsonl")
    return 0


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(f"usage: python examples/grag_recipe.py [KEY=VALUE ...]\n\n{__doc__}")
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
