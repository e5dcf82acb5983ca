"""Neural building blocks (nn.Module): style extractor, style-enhanced decoder, low-rank encoders, projectors."""

from personakit.modules.style_decoder import (
    STYLE_DECODERS,
    BartStyleDecoder,
    CausalStyleDecoder,
    EncoderDecoderStyleDecoder,
    StyleEnhancedDecoder,
    StyleInjectionLayer,
    T5StyleDecoder,
    add_style,
    register_style_decoder,
    wrap_style_decoder,
)
from personakit.modules.style_extractor import StyleExtractor, StyleExtractorConfig, concat_masked

__all__ = [
    "StyleExtractor",
    "StyleExtractorConfig",
    "concat_masked",
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
