"""Style-enhanced decoder of GRAG: shared wrapper logic plus one glue file per architecture."""

from personakit.modules.style_decoder.bart import BartStyleDecoder
from personakit.modules.style_decoder.base import StyleEnhancedDecoder, StyleInjectionLayer, add_style
from personakit.modules.style_decoder.causal import CausalStyleDecoder
from personakit.modules.style_decoder.encoder_decoder import EncoderDecoderStyleDecoder
from personakit.modules.style_decoder.factory import STYLE_DECODERS, register_style_decoder, wrap_style_decoder
from personakit.modules.style_decoder.t5 import T5StyleDecoder

__all__ = [
    "StyleEnhancedDecoder",
    "StyleInjectionLayer",
    "add_style",
    "BartStyleDecoder",
    "T5StyleDecoder",
    "EncoderDecoderStyleDecoder",
    "CausalStyleDecoder",
    "STYLE_DECODERS",
    "register_style_decoder",
    "wrap_style_decoder",
]
