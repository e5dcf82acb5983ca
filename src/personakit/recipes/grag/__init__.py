r"""End-to-end GRAG recipe: augment, train PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG, evaluate, compare.

Liu et al., "Generic-Response Augmented Generation for persona-consistent dialogue"
(GRAG, 2026).  ``personakit run grag --config tiny|default|FILE`` (or
:func:`run_grag_recipe`) runs the paper's main comparison (its Table 3) on one dataset:

1. **Data.** Train and test :class:`~personakit.types.ResponseExample` lists: the
   built-in corpus, JSON-lines example files (as written by ``personakit augment`` or
   :func:`~personakit.augment.save_examples`), or a dialogue dataset read with
   :func:`~personakit.data.read_dataset`; optionally a seeded subsample of each; and
   extra named test sets (``data.test_sets: {convai2: convai2_test.jsonl}``), scored
   beside the main one (named ``"test"``).
2. **Augmentation** (§3.1). Every example without a generic response $R_G$ (training and
   every test set) gets one from a generic LLM that never sees the persona
   (:class:`~personakit.augment.GenericResponseAugmenter`, batched, behind a persistent
   response cache: a rerun generates nothing it already has).  The model, template and
   length default to those of ``personakit augment``.
3. **Training** (§4.3). Each model of ``models`` (default: PreSFT(Hist) on $[P; H]$,
   PreSFT(TST) on $[P; R_G]$, PreGRAG on $[P; H; R_G]$ with
   $L = L_P + \beta L_{CJEPA}$, PostGRAG with $L = L_P + \alpha L_G + \beta L_{CJEPA}$)
   is built on a fresh copy of the same backbone (the embedded SmolLM2-135M-Instruct
   with LoRA adapters by default, its frozen weights in bf16 where the hardware has a
   fast bf16 path; the decoder-only GRAG path of the paper's §4.3.2, prompts in the
   model's chat format) and trained with
   :class:`~personakit.training.GRAGTrainer` (AdamW, learning rate decaying linearly to
   50%).
4. **Baseline** (optional). ICL(Hist): the generic LLM prompted with the persona, the
   history and ``n_shot`` training demonstrations
   (:class:`~personakit.models.icl.ICLResponder`).
5. **Evaluation** (§4.4) on every test set (:func:`~personakit.recipes.base.score_test_set`):
   the text metrics of SPEC §8 (char-F1, ROUGE-1/2/L, BLEU, METEOR), BERTScore P/R/F1 with a
   local encoder, bits per character of the references under each trained model (lower
   is better; not defined for the prompted baseline), **persona use** (the BPC with every
   test example given another dialogue's persona minus the BPC with its own), the share
   of distinct replies and of replies that run past one turn
   (:class:`~personakit.eval.ReplyStats`), and the paired comparison (t-test and bootstrap
   interval) of every system's per-example score (ROUGE-L by default) against the
   PreSFT(Hist) baseline.  :meth:`GRAGRecipeResults.save` writes ``results.md``,
   ``results.json``, ``predictions.jsonl`` (one record per test set, system and example:
   ``personakit evaluate`` reads it) and ``manifest.json``.

Departures from the paper, all for a CPU budget and all configurable: SmolLM2-135M-Instruct
+ LoRA instead of BART-base (MiniLM BERT2BERT, BART and T5 folders stay selectable with
``backbone``), a handful of epochs instead of 20,
SmolLM2-135M-Instruct instead of Llama-3.1-8B as the generic LLM, greedy decoding.

Example:
    >>> cfg = GRAGRecipeConfig(models=[{"kind": "presft-hist"}, {"kind": "postgrag", "alpha": 0.5, "beta": 0.05}])
    >>> [m.label for m in cfg.models]
    ['PreSFT(Hist)', 'PostGRAG']
    >>> GRAGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
    >>> from personakit.recipes.base import load_recipe_config
    >>> load_recipe_config("grag", "tiny").data.max_test
    8
    >>> results = run_grag_recipe(load_recipe_config("grag", "tiny"))  # doctest: +SKIP
    >>> print(results.to_markdown())  # doctest: +SKIP
"""

from personakit.recipes.grag.config import (
    GRAG_RECIPE_KINDS,
    GRAG_TEXT_METRICS,
    MODEL_ROW_METRICS,
    GRAGAugmentConfig,
    GRAGDataConfig,
    GRAGEvalConfig,
    GRAGICLConfig,
    GRAGInputConfig,
    GRAGModelSpec,
    GRAGRecipeConfig,
    GRAGTestSetConfig,
)
from personakit.recipes.grag.run import (
    GRAGRecipeResults,
    build_recipe_model,
    load_grag_splits,
    load_grag_test_sets,
    run_grag_recipe,
)

__all__ = [
    "GRAG_RECIPE_KINDS",
    "GRAG_TEXT_METRICS",
    "GRAGDataConfig",
    "GRAGTestSetConfig",
    "GRAGAugmentConfig",
    "GRAGInputConfig",
    "GRAGModelSpec",
    "GRAGICLConfig",
    "GRAGEvalConfig",
    "GRAGRecipeConfig",
    "GRAGRecipeResults",
    "MODEL_ROW_METRICS",
    "build_recipe_model",
    "load_grag_splits",
    "load_grag_test_sets",
    "run_grag_recipe",
]
