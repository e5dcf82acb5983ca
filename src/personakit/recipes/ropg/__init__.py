r"""End-to-end ROPG / RSPG recipe: train retrievers from LLM feedback, select one per input, compare them all.

Salemi, Kallumadi and Zamani, "Optimization Methods for Personalizing Large Language
Models through Retrieval Augmentation" (SIGIR 2024).  :func:`run_ropg_recipe`
(``personakit run ropg``) runs the paper's whole experiment (its Tables 3–5) on one
LaMP-style task:

1. **Data.** The task's train / dev / test splits of
   :class:`~personakit.types.ProfileExample`: PFG-LaMP built from Persuasion-for-Good
   (:func:`~personakit.data.pfg_lamp.build_pfg_lamp_task`), LaMP files
   (:func:`~personakit.data.read_lamp`), or the built-in corpus (a tiny PFG-LaMP-style
   task whose recurring agents are the "persuaders"; for demos and tests), subsampled
   with the recipe's seed; plus any extra named test sets (``data.test_sets``: LaMP
   questions files or JSON lines of examples).
2. **LLM feedback (ROPG).** The initial retriever (the untrained dense retriever, MiniLM
   by default, as the paper starts from Contriever) ranks each training input's profile;
   the frozen LLM answers one prompt per top-$l$ document, $\phi_p(x, [d])$, and each
   answer is scored, $\mathrm{EVAL}(y, M(\phi_p(x,[d])))$
   (:class:`~personakit.training.feedback.LLMFeedbackScorer`, batched, behind a
   persistent response cache: a rerun never generates a prompt twice).
3. **ROPG.** Two copies of the initial dense retriever are trained:
   :class:`~personakit.training.ROPGRLTrainer` (policy gradient, reward relative to the
   initial top document) and :class:`~personakit.training.ROPGKDTrainer` (KL to the
   softmax of the EVAL scores).  Checkpoints go to ``output_dir``; a rerun resumes them.
4. **The pool.** Every retriever of the pool (``none``, ``recency``, ``bm25``,
   ``dense``, ``rrf`` (BM25 + recency + dense), ``ropg-rl``, ``ropg-kd``) retrieves
   ``k`` (4, as in the paper) entries for every input of the RSPG training split and of
   every test set; the prompts are built with
   :class:`~personakit.retrieval.lamp_prompts.LaMPPromptBuilder` and answered by the LLM
   in one batched, cached call.
5. **RSPG.** Two :class:`~personakit.retrieval.RetrieverSelector` (``pre``: prompts only;
   ``post``: prompt + the LLM's output) are trained with
   :class:`~personakit.training.rspg.RSPGTrainer` on the dev split (the paper trains on
   train; ``rspg.train_split="train"`` does that, at the price of the pool's outputs on
   train).
6. **Evaluation** on every test set (:func:`~personakit.recipes.base.score_test_set` with
   :class:`~personakit.eval.LaMPMetric`): per system ROUGE-1 and ROUGE-L (generation
   tasks; accuracy for LaMP-1/2, the normalised score and MAE for LaMP-3), a two-sided
   paired t-test and a bootstrap interval of every system against the best single
   retriever (the paper's test, $p < 0.05$), the selectors' success rate (paper Table 4)
   and the oracle lower / upper bounds of the pool (Table 5).  :meth:`ROPGResults.save`
   writes ``results.md``, ``results.json``, ``predictions.jsonl`` and ``manifest.json``.

Departures from the paper, all for a CPU budget (and all configurable): SmolLM2-135M
instead of FlanT5-XXL, greedy decoding instead of beam search 4, prompts of
``prompt.max_tokens`` (256) instead of 512, MiniLM instead of Contriever and of
Longformer, few epochs, and a policy temperature of 0.05 (MiniLM's scores are cosines in
$[-1, 1]$; with the paper's temperature 1 the policy would be almost uniform).

Example:
    >>> from personakit.recipes.base import load_recipe_config
    >>> from personakit.recipes.ropg import run_ropg_recipe
    >>> config = load_recipe_config("ropg", "tiny", overrides=["data.max_test=2"])
    >>> results = run_ropg_recipe(config)  # doctest: +SKIP
    >>> print(results.to_markdown())  # doctest: +SKIP
"""

from personakit.recipes.ropg.config import (
    POOL_RETRIEVERS,
    ROPGDataConfig,
    ROPGLLMConfig,
    ROPGPoolConfig,
    ROPGPromptConfig,
    ROPGRecipeConfig,
    ROPGTestSetConfig,
    ROPGTrainingConfig,
    RSPGRecipeConfig,
)
from personakit.recipes.ropg.run import (
    ROPGResults,
    builtin_pfg_dialogues,
    load_recipe_splits,
    load_test_sets,
    run_ropg_recipe,
)

__all__ = [
    "POOL_RETRIEVERS",
    "ROPGDataConfig",
    "ROPGTestSetConfig",
    "ROPGPoolConfig",
    "ROPGPromptConfig",
    "ROPGLLMConfig",
    "ROPGTrainingConfig",
    "RSPGRecipeConfig",
    "ROPGRecipeConfig",
    "ROPGResults",
    "load_recipe_splits",
    "load_test_sets",
    "builtin_pfg_dialogues",
    "run_ropg_recipe",
]
