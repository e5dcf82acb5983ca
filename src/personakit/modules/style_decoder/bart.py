r"""BART glue of the style-enhanced decoder: ``model.model.decoder.layers`` (``BartDecoderLayer``)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from personakit.modules.style_decoder.base import StyleEnhancedDecoder

__all__ = ["BartStyleDecoder"]


class BartStyleDecoder(StyleEnhancedDecoder):
    r"""$h_i \leftarrow \mathcal{S} + h_i$ on every ``BartDecoderLayer`` (GRAG §3.3.2, the paper's backbone).

    In transformers 5 a ``BartDecoderLayer`` returns the hidden-state tensor
    ``[B, T, D]``; the style is added to it.  BART has no final decoder layer norm,
    so the last styled state feeds the LM head directly.  mBART shares the layout
    (``model.model.decoder.layers``) and is accepted too.

    Args:
        decoder: a ``BartDecoder`` (``model.model.decoder`` or ``model.get_decoder()``).

    Example:
        >>> from transformers import BartConfig, BartForConditionalGeneration
        >>> cfg = BartConfig(d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        ...                  decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        ...                  vocab_size=99, max_position_embeddings=64)
        >>> styled = BartStyleDecoder.from_model(BartForConditionalGeneration(cfg))
        >>> styled.num_layers
        2
    """

    LAYERS_PATH: ClassVar[str] = "layers"
    ARCHITECTURE: ClassVar[str] = "bart"
    MODEL_TYPES: ClassVar[frozenset[str]] = frozenset({"bart", "mbart"})

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) in cls.MODEL_TYPES

    @classmethod
    def locate_decoder(cls, model: nn.Module) -> nn.Module:
        # BartForConditionalGeneration / BartForCausalLM -> .model.decoder; BartModel -> .decoder; BartDecoder itself.
        for path in ("model.decoder", "decoder"):
            obj = model
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            if isinstance(getattr(obj, "layers", None), nn.ModuleList):
                return obj
        if isinstance(getattr(model, "layers", None), nn.ModuleList):
            return model
        raise TypeError(f"BartStyleDecoder: cannot find a BART decoder in {type(model).__name__}")
