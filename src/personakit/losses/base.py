r"""Thin base class of the personakit losses: ``forward → compute_parts → reduce``.

A loss takes embeddings (never a model).  :meth:`BaseLoss.compute_parts` returns the
per-sample terms, :meth:`BaseLoss.reduce` reduces each of them with the loss's
``reduction`` into an output dataclass, :meth:`BaseLoss.forward_with_parts` returns
that dataclass (for logging every term) and :meth:`BaseLoss.forward` returns only
its ``loss`` field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import Tensor, nn

from personakit.functional.losses import Reduction, reduce_loss

__all__ = ["LossOutput", "BaseLoss"]


@dataclass
class LossOutput:
    """Output of :meth:`BaseLoss.forward_with_parts`.

    Subclasses add one field per term (each reduced like ``loss``).

    Attributes:
        loss: the value to optimise: a scalar, or ``[B]`` with ``reduction="none"``.
    """

    loss: Tensor

    def to_dict(self, detach: bool = True) -> dict[str, Any]:
        """Each term as a Python float (scalar terms) or a detached tensor, e.g. for a logger."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                value = value.detach() if detach else value
                out[field.name] = value.item() if value.dim() == 0 and detach else value
            else:
                out[field.name] = value
        return out


class BaseLoss(nn.Module):
    """Base class of the personakit losses.

    Subclasses implement :meth:`compute_parts` (per-sample tensors, one of them named
    ``"loss"``) and set ``output_cls`` to a :class:`LossOutput` subclass whose fields
    are those names.

    Args:
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` (per sample).
    """

    output_cls: ClassVar[type[LossOutput]] = LossOutput

    def __init__(self, reduction: Reduction = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def compute_parts(self, *args: Any, **kwargs: Any) -> Mapping[str, Tensor]:
        """Per-sample terms, including ``"loss"``."""
        raise NotImplementedError

    def reduce(self, parts: Mapping[str, Tensor]) -> LossOutput:
        """Reduce every term with ``self.reduction`` into ``output_cls``."""
        if "loss" not in parts:
            raise KeyError(f"{type(self).__name__}.compute_parts must return a 'loss' term, got {sorted(parts)}")
        return self.output_cls(**{name: reduce_loss(value, self.reduction) for name, value in parts.items()})

    def forward_with_parts(self, *args: Any, **kwargs: Any) -> LossOutput:
        """The loss and each of its terms, as ``output_cls``."""
        return self.reduce(self.compute_parts(*args, **kwargs))

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """The loss only."""
        return self.forward_with_parts(*args, **kwargs).loss

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
