"""Losses; each takes embeddings, never a model."""

from personakit.losses.base import BaseLoss, LossOutput
from personakit.losses.jepa import CJEPALoss, CJEPALossConfig, CJEPALossOutput

__all__ = ["BaseLoss", "LossOutput", "CJEPALoss", "CJEPALossConfig", "CJEPALossOutput"]
