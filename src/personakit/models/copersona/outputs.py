r"""Output of CoPersona: :class:`CoPersonaOutput`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

from personakit.models.base import PersonaModelOutput

__all__ = ["CoPersonaOutput"]


@dataclass
class CoPersonaOutput(PersonaModelOutput):
    """Output of :meth:`~personakit.models.copersona.CoPersonaModel.forward` (a transformers
    ``ModelOutput``: ``out["loss"]``, ``out[0]``, ``out.to_tuple()``).

    Attributes:
        loss: mean token cross-entropy over the real target tokens (``None`` without labels).
        logits: ``[B, L + T, V]`` (the virtual tokens included when a soft prompt is used).
        labels: ``[B, L + T]`` labels aligned with ``logits`` (``-100`` on virtual tokens), or ``None``.
        soft_prompt: ``[B, L, H]`` or ``None``.
    """

    loss: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    soft_prompt: Optional[Tensor] = None
