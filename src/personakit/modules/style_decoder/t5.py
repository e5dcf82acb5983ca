r"""T5 glue of the style-enhanced decoder: ``model.decoder.block`` (``T5Block``)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from personakit.modules.style_decoder.base import StyleEnhancedDecoder

__all__ = ["T5StyleDecoder"]


class T5StyleDecoder(StyleEnhancedDecoder):
    r"""$h_i \leftarrow \mathcal{S} + h_i$ on every decoder ``T5Block`` (GRAG §3.3.2, §4.3.2).

    In transformers 5 a ``T5Block`` returns a tuple
    ``(hidden_states, self_attn_position_bias, cross_attn_position_bias)``; the style
    is added to ``hidden_states`` and the position biases pass through unchanged.
    The decoder's ``final_layer_norm`` then acts on the styled last state.  mT5
    shares the layout.

    Args:
        decoder: T5's decoder ``T5Stack`` (``model.decoder``).

    Example:
        >>> from transformers import T5Config, T5ForConditionalGeneration
        >>> cfg = T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, vocab_size=99,
        ...                decoder_start_token_id=0)
        >>> T5StyleDecoder.from_model(T5ForConditionalGeneration(cfg)).num_layers
        2
    """

    LAYERS_PATH: ClassVar[str] = "block"
    ARCHITECTURE: ClassVar[str] = "t5"
    MODEL_TYPES: ClassVar[frozenset[str]] = frozenset({"t5", "mt5"})

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) in cls.MODEL_TYPES

    @classmethod
    def locate_decoder(cls, model: nn.Module) -> nn.Module:
        decoder = getattr(model, "decoder", None)
        if decoder is not None and isinstance(getattr(decoder, "block", None), nn.ModuleList):
            return decoder
        if isinstance(getattr(model, "block", None), nn.ModuleList) and getattr(model, "is_decoder", False):
            return model
        raise TypeError(
            f"T5StyleDecoder: cannot find a T5 decoder in {type(model).__name__} "
            "(T5EncoderModel has no decoder)"
        )
