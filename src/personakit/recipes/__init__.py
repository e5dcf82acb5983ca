"""End-to-end recipes: the only place that combines families.

Every recipe is built on the skeleton in :mod:`personakit.recipes.base` (config loading,
stages, scoring and significance, results, manifest) and runs as ``personakit run <name>``.

* :func:`run_demo`: the main job (``personakit demo``).
* :func:`run_grag_recipe`: augment, train PreSFT / PreGRAG / PostGRAG, evaluate with ICL(Hist).
* :func:`run_ropg_recipe`: retrievers, ROPG, RSPG on a LaMP-style task.
* :func:`run_questioner_recipe`: dual-tower questioner-aware responder against LoRA and persona-in-prompt, with ablations.
* :func:`run_retrieved_persona_recipe`: across families: retrievers and RSPG choose the persona a GRAG model reads.
* :func:`run_copersona_recipe`: facets → summaries → multiplex graph → CoPersona model against Non-Perso / RAG / PAG.

Names are imported on first use, so ``import personakit.recipes`` stays light.
"""

from __future__ import annotations

from personakit._lazy import attach as _attach

__getattr__, __dir__, __all__ = _attach(
    __name__,
    {
        "base": ("RECIPES", "RecipeConfig", "RecipeResults", "TestSetResult", "Stages", "PathField", "load_recipe_config",
                 "run_recipe", "list_recipes", "run_manifest", "score_test_set", "subsample"),
        "demo": ("DEMO_METRICS", "DemoResult", "run_demo", "DEMO_TEMPLATE", "demo_recipe_config"),
        "grag": ("GRAGRecipeConfig", "GRAGRecipeResults", "run_grag_recipe", "load_grag_splits"),
        "ropg": ("ROPGRecipeConfig", "ROPGResults", "run_ropg_recipe", "load_recipe_splits", "POOL_RETRIEVERS"),
        "questioner": ("QuestionerRecipeConfig", "QuestionerRecipeResults", "run_questioner_recipe"),
        "retrieved_persona": ("RetrievedPersonaRecipeConfig", "RetrievedPersonaResults",
                              "run_retrieved_persona_recipe"),
        "copersona": ("CoPersonaRecipeConfig", "CoPersonaResults", "CoPersonaPipeline", "run_copersona_recipe"),
    },
)
