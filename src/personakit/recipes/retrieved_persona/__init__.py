r"""The retrieved-persona recipe (``personakit run retrieved-persona``): a cross-family recipe.

Retrievers of the ROPG/RSPG family (BM25, dense, RRF) and the RSPG selector choose, per
example, the persona facts that a GRAG model (PreSFT(Hist)) reads; the RSPG selector is
trained with the GRAG model's own likelihood of the reference response as its reward.
See :func:`run_retrieved_persona_recipe` and ``docs/tutorials/retrieved-persona.md``.
"""

from personakit.recipes.retrieved_persona.config import (
    PERSONA_SOURCES,
    SELECTION_SYSTEMS,
    RetrievedPersonaDataConfig,
    RetrievedPersonaEvalConfig,
    RetrievedPersonaInputConfig,
    RetrievedPersonaProfileConfig,
    RetrievedPersonaRecipeConfig,
    RetrievedPersonaRSPGConfig,
    RetrievedPersonaTestSet,
    RetrievedPersonaTrainingConfig,
)
from personakit.recipes.retrieved_persona.run import (
    PersonaChooser,
    RetrievedPersonaResults,
    build_presft_model,
    load_retrieved_persona_splits,
    profile_items,
    query_of,
    run_retrieved_persona_recipe,
    selector_text,
)

__all__ = [
    "PERSONA_SOURCES",
    "SELECTION_SYSTEMS",
    "RetrievedPersonaDataConfig",
    "RetrievedPersonaEvalConfig",
    "RetrievedPersonaInputConfig",
    "RetrievedPersonaProfileConfig",
    "RetrievedPersonaRecipeConfig",
    "RetrievedPersonaRSPGConfig",
    "RetrievedPersonaTestSet",
    "RetrievedPersonaTrainingConfig",
    "PersonaChooser",
    "RetrievedPersonaResults",
    "build_presft_model",
    "load_retrieved_persona_splits",
    "profile_items",
    "query_of",
    "run_retrieved_persona_recipe",
    "selector_text",
]
