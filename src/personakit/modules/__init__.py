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
from personakit.modules.soft_prompt import (
    SoftPromptCache,
    SoftPromptProjector,
    SoftPromptProjectorConfig,
    embedding_version,
    prepend_soft_prompt,
)
from personakit.modules.style_extractor import StyleExtractor, StyleExtractorConfig, concat_masked
from personakit.modules.lowrank_specific import (
    SPECIFIC_STREAM_GLUE,
    LowRankFeedForward,
    LowRankSpecificEncoder,
    LowRankSpecificEncoderConfig,
    SpecificBlock,
    SpecificStreamLayer,
)
from personakit.modules.multiview import MultiViewProjector, MultiViewProjectorConfig
from personakit.modules.question_clusterer import QuestionClusterer, QuestionClustererConfig

__all__ = [
    "SoftPromptProjector",
    "SoftPromptProjectorConfig",
    "prepend_soft_prompt",
    "SoftPromptCache",
    "embedding_version",
    "LowRankFeedForward",
    "LowRankSpecificEncoder",
    "LowRankSpecificEncoderConfig",
    "SpecificBlock",
    "SpecificStreamLayer",
    "SPECIFIC_STREAM_GLUE",
    "MultiViewProjector",
    "MultiViewProjectorConfig",
    "QuestionClusterer",
    "QuestionClustererConfig",
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
