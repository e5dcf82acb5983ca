r"""Output of the dual-tower responder: :class:`DualTowerOutput`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from torch import Tensor

from personakit.models.base import PersonaModelOutput

__all__ = ["DualTowerOutput"]


@dataclass
class DualTowerOutput(PersonaModelOutput):
    r"""What :meth:`~personakit.models.questioner.DualTowerResponder.forward` returns (a transformers
    ``ModelOutput``: ``out["loss"]``, ``out[0]``, ``out.to_tuple()``).

    Attributes:
        loss: $L = L_{LM} + \lambda L_{QC}$ (``None`` without labels).
        loss_lm: token cross-entropy of the response (mean over its tokens).
        loss_contrastive: $L_{QC}$ (``None`` when not computed: no specific stream,
            $\lambda = 0$, or no questioners given).
        contrastive_valid: fraction of views that had a positive and a negative.
        contrastive_positive_pairs: pairs of different rows (examples) of the batch with the same
            (known) questioner (:meth:`~personakit.losses.QuestionerContrastiveLoss.pair_counts`;
            the view pairs of multi-view augmentation are not counted); ``None`` when $L_{QC}$
            is not computed.
        contrastive_negative_pairs: pairs of rows the loss contrasts (other questioner,
            same question cluster with clustering); ``None`` when $L_{QC}$ is not computed.
        logits: ``[B, T, V]``.
        specific: ``[B, D]`` pooled questioner-specific representation (``None`` without the stream).
        labels: always ``None``: the batch's ``labels`` are aligned with ``logits`` (the field
            every family's output has, see :class:`~personakit.models.base.PersonaModelOutput`).
    """

    loss: Optional[Tensor] = None
    loss_lm: Optional[Tensor] = None
    loss_contrastive: Optional[Tensor] = None
    contrastive_valid: Optional[Tensor] = None
    contrastive_positive_pairs: Optional[Tensor] = None
    contrastive_negative_pairs: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    specific: Optional[Tensor] = None
    labels: Optional[Tensor] = None

    LOSS_FIELDS: ClassVar[tuple[str, ...]] = ("loss", "loss_lm", "loss_contrastive", "contrastive_valid",
                                              "contrastive_positive_pairs", "contrastive_negative_pairs")
