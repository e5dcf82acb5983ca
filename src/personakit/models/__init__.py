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

import importlib
from typing import Any

from personakit.models.icl import (
    HIST_SYSTEM_PROMPT,
    TST_SYSTEM_PROMPT,
    ICLPromptBuilder,
    ICLPromptBuilderConfig,
    ICLResponder,
    ICLResponderConfig,
)

_LAZY = {
    name: "personakit.models.base" for name in ("PersonaModel", "PersonaModelConfig", "PersonaModelOutput")
}
_LAZY.update({name: "personakit.models.collators" for name in ("CausalLMCollator", "probe_special_tokens")})
_LAZY.update({
    name: "personakit.models.grag"
    for name in (
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
    )
})
_LAZY.update({
    name: "personakit.models.questioner"
    for name in ("DualTowerConfig", "DualTowerOutput", "DualTowerResponder", "QuestionerCollator")
})

_LAZY.update({name: "personakit.models.copersona" for name in (
    "CoPersonaConfig", "CoPersonaContext", "CoPersonaOutput", "CoPersonaCollator", "CoPersonaModel",
    "COPERSONA_VARIANTS", "build_copersona_prompt")})

__all__ = [
    "HIST_SYSTEM_PROMPT",
    "TST_SYSTEM_PROMPT",
    "ICLPromptBuilder",
    "ICLPromptBuilderConfig",
    "ICLResponder",
    "ICLResponderConfig",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personakit.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
