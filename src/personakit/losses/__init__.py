"""Losses; each takes embeddings or scores, never a model."""

from personakit.losses.base import BaseLoss, LossOutput
from personakit.losses.jepa import CJEPALoss, CJEPALossConfig, CJEPALossOutput
from personakit.losses.questioner import (
    QuestionerContrastiveLoss,
    QuestionerContrastiveLossConfig,
    QuestionerContrastiveLossOutput,
)
from personakit.losses.ropg import (
    ROPGKDLoss,
    ROPGKDLossConfig,
    ROPGKDLossOutput,
    ROPGRLLoss,
    ROPGRLLossConfig,
    ROPGRLLossOutput,
)
from personakit.losses.selector import SelectorKLLoss, SelectorKLLossConfig, SelectorKLLossOutput

__all__ = [
    "QuestionerContrastiveLoss",
    "QuestionerContrastiveLossConfig",
    "QuestionerContrastiveLossOutput",
    "BaseLoss",
    "LossOutput",
    "CJEPALoss",
    "CJEPALossConfig",
    "CJEPALossOutput",
    "ROPGRLLoss",
    "ROPGRLLossConfig",
    "ROPGRLLossOutput",
    "ROPGKDLoss",
    "ROPGKDLossConfig",
    "ROPGKDLossOutput",
    "SelectorKLLoss",
    "SelectorKLLossConfig",
    "SelectorKLLossOutput",
]
