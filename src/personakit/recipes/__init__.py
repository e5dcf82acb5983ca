"""End-to-end recipes: the only place that combines families.

* :func:`run_demo`: the main job (``personakit demo``).
* :func:`run_grag_recipe`: augment, train PreSFT / PreGRAG / PostGRAG, evaluate with ICL(Hist).
* :func:`run_ropg_recipe`: retrievers, ROPG, RSPG on a LaMP-style task.
* :func:`run_questioner_recipe`: dual-tower questioner-aware responder against LoRA and persona-in-prompt, with ablations.
* :func:`run_copersona_recipe`: facets → summaries → multiplex graph → CoPersona model against Non-Perso / RAG / PAG.

Names are imported on first use, so ``import personakit.recipes`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEMO_METRICS": "personakit.recipes.demo",
    "DemoResult": "personakit.recipes.demo",
    "run_demo": "personakit.recipes.demo",
    "DEMO_TEMPLATE": "personakit.recipes.demo",
    "demo_recipe_config": "personakit.recipes.demo",
    "GRAGRecipeConfig": "personakit.recipes.grag",
    "GRAGRecipeResults": "personakit.recipes.grag",
    "run_grag_recipe": "personakit.recipes.grag",
    "load_grag_splits": "personakit.recipes.grag",
    "ROPGRecipeConfig": "personakit.recipes.ropg",
    "ROPGResults": "personakit.recipes.ropg",
    "run_ropg_recipe": "personakit.recipes.ropg",
    "load_recipe_splits": "personakit.recipes.ropg",
    "POOL_RETRIEVERS": "personakit.recipes.ropg",
    "QuestionerRecipeConfig": "personakit.recipes.questioner",
    "QuestionerRecipeResults": "personakit.recipes.questioner",
    "run_questioner_recipe": "personakit.recipes.questioner",
    "CoPersonaRecipeConfig": "personakit.recipes.copersona",
    "CoPersonaResults": "personakit.recipes.copersona",
    "CoPersonaPipeline": "personakit.recipes.copersona",
    "run_copersona_recipe": "personakit.recipes.copersona",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personakit.recipes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
