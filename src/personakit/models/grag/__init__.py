"""GRAG models (Liu et al., 2026): PreSFT baselines, PreGRAG (pre-fusion), PostGRAG (post-fusion).

peft is imported only when LoRA is requested.
"""

from personakit.models.grag.base import GRAGModel
from personakit.models.grag.collator import GRAGCollator
from personakit.models.grag.config import GRAG_METHODS, PRESFT_MODES, GRAGConfig, LoraSettings
from personakit.models.grag.encoding import encode_segments, left_pad, pad_stack, plan_passes, trim_padding
from personakit.models.grag.factory import GRAG_MODELS, build_grag_model
from personakit.models.grag.outputs import GRAGOutput
from personakit.models.grag.postgrag import PostGRAG
from personakit.models.grag.pregrag import PreGRAG
from personakit.models.grag.presft import PreSFT

__all__ = [
    "GRAGConfig",
    "LoraSettings",
    "GRAG_METHODS",
    "PRESFT_MODES",
    "GRAGOutput",
    "GRAGModel",
    "PreSFT",
    "PreGRAG",
    "PostGRAG",
    "GRAG_MODELS",
    "build_grag_model",
    "GRAGCollator",
    "encode_segments",
    "plan_passes",
    "pad_stack",
    "left_pad",
    "trim_padding",
]
