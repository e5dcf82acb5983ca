r"""End-to-end CoPersona recipe: induce facets → summarise → embed → graph → train → evaluate.

Zhang, Wang et al., "CoPersona: Collaborative Persona Graphs for Robust LLM
Personalization" (KDD 2026).  :func:`run_copersona_recipe` (``personakit run copersona``)
runs the paper's comparison (Tables 1 and 5) on sparse conversational users
(:func:`~personakit.data.copersona_users.build_pfg_users`: the built-in corpus or
Persuasion-for-Good) or review histories:

1. **Facets** (:class:`CoPersonaPipeline`): schema induction
   (:class:`~personakit.facets.FacetSchemaInducer`), per-user facet summaries with
   grounded quotes and reliability (:class:`~personakit.facets.FacetSummarizer`), facet
   embeddings (:class:`~personakit.facets.FacetEmbedder`), the multiplex graph
   (:func:`~personakit.graph.build_multiplex_graph`).  Incremental: adding users or
   history re-summarises, re-embeds and re-links only the users whose history changed
   (summaries are stored by user + content hash; the graph is updated with
   :func:`~personakit.graph.update_multiplex_graph`).
2. **Models**: each variant of ``variants`` (Non-Perso, RAG, PAG, CoPersona, without the
   non-parametric branch, without the parametric branch) is a
   :class:`~personakit.models.copersona.CoPersonaModel` on a fresh copy of the backbone,
   trained with :class:`~personakit.training.copersona.CoPersonaTrainer`.
3. **Evaluation** (:func:`~personakit.recipes.base.score_test_set`): ROUGE-1, ROUGE-L,
   METEOR, BLEU, BERTScore on the test examples and on every named test set of
   ``data.test_sets``, each variant compared with the baseline (Non-Perso) by a paired
   t-test and a bootstrap interval; the facet-biased fraction of users (Table 4).
   :meth:`CoPersonaResults.save` writes ``results.md``, ``results.json``,
   ``predictions.jsonl``, ``manifest.json`` and ``facet_schema.json``.

Layout: :mod:`~personakit.recipes.copersona.config` (the config classes) and
:mod:`~personakit.recipes.copersona.run` (the run function, the results, the pipeline).

Example:
    >>> cfg = CoPersonaRecipeConfig(variants=["rag", "copersona"])
    >>> CoPersonaRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from personakit.recipes.copersona.config import (COPERSONA_LABELS, CoPersonaDataConfig, CoPersonaFacetsConfig,
                                                 CoPersonaModelSettings, CoPersonaRecipeConfig)
from personakit.recipes.copersona.run import (CoPersonaPipeline, CoPersonaResults, load_copersona_data,
                                              load_copersona_test_sets, run_copersona_recipe)

__all__ = ["COPERSONA_LABELS", "CoPersonaDataConfig", "CoPersonaFacetsConfig", "CoPersonaModelSettings",
           "CoPersonaRecipeConfig", "CoPersonaPipeline", "CoPersonaResults", "run_copersona_recipe",
           "load_copersona_data", "load_copersona_test_sets"]
