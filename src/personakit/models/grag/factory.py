r"""Build a GRAG model by name: :func:`build_grag_model`."""

from __future__ import annotations

import os
from typing import Any, Union

from torch import nn

from personakit.models.grag.base import GRAGModel
from personakit.models.grag.postgrag import PostGRAG
from personakit.models.grag.pregrag import PreGRAG
from personakit.models.grag.presft import PreSFT

__all__ = ["GRAG_MODELS", "build_grag_model"]

#: method name -> model class
GRAG_MODELS: dict[str, type[GRAGModel]] = {"presft": PreSFT, "pregrag": PreGRAG, "postgrag": PostGRAG}

_ALIASES = {
    "presft-hist": ("presft", "hist"), "presft(hist)": ("presft", "hist"), "hist": ("presft", "hist"),
    "presft-tst": ("presft", "tst"), "presft(tst)": ("presft", "tst"), "tst": ("presft", "tst"),
}


def build_grag_model(kind: str, backbone: Union[nn.Module, str, os.PathLike], tokenizer: Any = None,
                     **settings: Any) -> GRAGModel:
    """Build ``PreSFT`` / ``PreGRAG`` / ``PostGRAG`` around a backbone.

    Args:
        kind: ``"presft"`` (with ``mode=``), ``"presft-hist"``, ``"presft-tst"``,
            ``"pregrag"`` or ``"postgrag"`` (case and ``_`` / ``-`` insensitive).
        backbone: a transformers model or a name / folder (see ``GRAGModel.from_backbone``).
        tokenizer: the backbone's tokenizer.
        **settings: :class:`~personakit.models.grag.GRAGConfig` fields.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        ...                   num_attention_heads=2, num_key_value_heads=1, vocab_size=50)
        >>> type(build_grag_model("PreSFT-TST", LlamaForCausalLM(cfg))).__name__
        'PreSFT'
    """
    key = kind.strip().lower().replace("_", "-")
    if key in _ALIASES:
        method, mode = _ALIASES[key]
        if settings.get("mode", mode) != mode:
            raise ValueError(f"build_grag_model: kind {kind!r} implies mode={mode!r}, got mode={settings['mode']!r}")
        settings["mode"] = mode
    else:
        method = key
    if method not in GRAG_MODELS:
        raise ValueError(
            f"build_grag_model: unknown kind {kind!r}; use one of {sorted(GRAG_MODELS) + sorted(_ALIASES)}")
    return GRAG_MODELS[method].from_backbone(backbone, tokenizer, **settings)
