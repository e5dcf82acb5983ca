"""Composed models and baselines.

* ICL baselines (GRAG paper §4.2.1): :class:`ICLPromptBuilder`, :class:`ICLResponder`.
* the one base of the backbone models (:mod:`personakit.models.base`): :class:`PersonaModel`,
  its :class:`PersonaModelConfig` and :class:`PersonaModelOutput`; the shared collators
  (:mod:`personakit.models.collators`) and padding helpers (:mod:`personakit.models.padding`);
* GRAG models (:mod:`personakit.models.grag`): :class:`PreSFT`, :class:`PreGRAG`, :class:`PostGRAG`;
* the questioner-aware dual tower (:mod:`personakit.models.questioner`): :class:`DualTowerResponder`;
* CoPersona (:mod:`personakit.models.copersona`): :class:`CoPersonaModel`.

Every family has the same layout: ``config.py``, ``outputs.py``, ``collator.py``, ``model.py``
(GRAG: one module per model).  The model names are imported on first use, so
``import personakit.models`` stays light.
"""

from __future__ import annotations

from personakit._lazy import attach as _attach
from personakit.models.icl import (
    HIST_SYSTEM_PROMPT,
    TST_SYSTEM_PROMPT,
    ICLPromptBuilder,
    ICLPromptBuilderConfig,
    ICLResponder,
    ICLResponderConfig,
)

__getattr__, __dir__, _lazy_names = _attach(
    __name__,
    {
        "base": ("PersonaModel", "PersonaModelConfig", "PersonaModelOutput"),
        "collators": ("CausalLMCollator", "probe_special_tokens"),
        "grag": (
            "GRAGConfig",
            "LoraSettings",
            "GRAGOutput",
            "GRAGModel",
            "PreSFT",
            "PreGRAG",
            "PostGRAG",
            "GRAG_MODELS",
            "build_grag_model",
            "GRAGCollator",
        ),
        "questioner": ("DualTowerConfig", "DualTowerOutput", "DualTowerResponder", "QuestionerCollator"),
        "copersona": (
            "CoPersonaConfig",
            "CoPersonaContext",
            "CoPersonaOutput",
            "CoPersonaCollator",
            "CoPersonaModel",
            "COPERSONA_VARIANTS",
            "build_copersona_prompt",
        ),
    },
)

__all__ = [
    "HIST_SYSTEM_PROMPT",
    "TST_SYSTEM_PROMPT",
    "ICLPromptBuilder",
    "ICLPromptBuilderConfig",
    "ICLResponder",
    "ICLResponderConfig",
    *_lazy_names,
]
