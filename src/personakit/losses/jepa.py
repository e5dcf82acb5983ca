r"""Contrastive JEPA loss of GRAG (Liu et al., 2026, §3.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.losses import Reduction, _check_batch, cjepa_terms
from personakit.losses.base import BaseLoss, LossOutput

__all__ = ["CJEPALoss", "CJEPALossOutput", "CJEPALossConfig"]


@dataclass
class CJEPALossOutput(LossOutput):
    r"""Terms of :class:`CJEPALoss` (each reduced like the loss).

    Attributes:
        loss: $\cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)$.
        cos_personalised: $\cos(\mathcal{E}_C, \mathcal{E}_P)$ (to be raised).
        cos_generic: $\cos(\mathcal{E}_C, \mathcal{E}_G)$ (to be lowered).
    """

    cos_personalised: Tensor
    cos_generic: Tensor


class CJEPALoss(BaseLoss):
    r"""Contrastive JEPA loss of GRAG (Liu et al., 2026, §3.4), with the sign of its stated intent.

    $$\mathcal{L}_{CJEPA} = \cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)
      = \mathcal{D}_{CP} - \mathcal{D}_{CG}, \qquad
      \mathcal{D}_{XY} = 1 - \cos(\mathcal{E}_X, \mathcal{E}_Y),$$

    averaged over the batch.  $\mathcal{E}_C$ is the context representation (the last
    non-padding token of $E_{H'}$ for PreGRAG, of $E_H$ for PostGRAG), $\mathcal{E}_P$
    and $\mathcal{E}_G$ the last non-padding tokens of the encodings of the
    personalised response $R_P$ and the generic response $R_G$ (use
    :func:`personakit.functional.losses.last_token_pool`).  Minimising it pulls the
    context towards the personalised response and pushes it away from the generic
    one; the generic response is the negative target.  Its range is $[-2, 2]$.
    When $\mathcal{E}_P = \mathcal{E}_G$ (e.g. a factual reply where $R_P$ and $R_G$
    agree) it is exactly $0$, so it imposes no spurious penalty (paper, after Eq. 1).

    **Departure from the printed equation.**  The paper prints Eq. (1) as

    $$L_{C\text{-}JEPA} = \mathcal{D}_{CG} - \mathcal{D}_{CP}
      = \mathrm{cosine}(\mathcal{E}_C, \mathcal{E}_P) - \mathrm{cosine}(\mathcal{E}_C, \mathcal{E}_G).$$

    Minimised (the loss enters $L = L_P + \beta L_{C\text{-}JEPA}$ with $\beta > 0$), that
    expression would *lower* $\cos(C, P)$ and *raise* $\cos(C, G)$: it would push the
    context away from the personalised response and towards the generic one, the
    opposite of the text ("treating $R_G$ as a negative target", and §6.1: "effective
    C-JEPA learning will encourage the context representation to be similar to the
    personalized responses").  We implement the intent, the negation of the printed
    expression: $\mathcal{D}_{CP} - \mathcal{D}_{CG}$.  The zero-when-$P = G$ property
    holds for both signs.

    **Empty batch.**  A batch with no examples (``B = 0``) raises ``ValueError`` naming
    the loss and the shapes, whatever the reduction: the mean over no examples is
    ``NaN`` (one such step ruins the weights silently), and a defined stand-in such as
    ``0`` would hide whatever emptied the batch.  Skip empty batches before the loss.

    Args:
        reduction: ``"mean"`` over the batch (the paper's choice), ``"sum"`` or
            ``"none"`` (``[B]``).
        eps: small value that keeps the cosine finite for zero vectors.

    Shapes:
        - context, personalised, generic: ``[B, D]``
        - output: scalar (``[B]`` with ``reduction="none"``)

    Example:
        >>> import torch
        >>> loss = CJEPALoss()
        >>> c = torch.tensor([[1.0, 0.0]])
        >>> loss(c, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))  # C = P, C ⟂ G
        tensor(-1.)
        >>> out = loss.forward_with_parts(c, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
        >>> out.loss.item(), round(out.cos_personalised.item(), 4)
        (0.0, 0.7071)

    Citation:
        Liu, Symons and Vatsavai (2026). *GRAG: Generic Response-Augmented Generation
        Framework for Personalized Conversational Systems.* arXiv:2606.21097.
        JEPA: Assran et al. (2023), *Self-Supervised Learning from Images with a
        Joint-Embedding Predictive Architecture.* CVPR.
    """

    output_cls: ClassVar[type[LossOutput]] = CJEPALossOutput

    def __init__(self, reduction: Reduction = "mean", eps: float = 1e-8):
        super().__init__(reduction=reduction)
        if eps <= 0:
            raise ValueError(f"CJEPALoss: eps must be > 0, got {eps}")
        self.eps = eps

    def compute_parts(self, context: Tensor, personalised: Tensor, generic: Tensor) -> dict[str, Tensor]:
        """Per-sample terms.

        Args:
            context: $\\mathcal{E}_C$ ``[B, D]``.
            personalised: $\\mathcal{E}_P$ ``[B, D]``.
            generic: $\\mathcal{E}_G$ ``[B, D]``.

        Returns:
            ``{"loss", "cos_personalised", "cos_generic"}``, each ``[B]``.

        Raises:
            ValueError: the shapes differ, or the batch is empty (``B = 0``, whatever the
                reduction; the message names the loss and the shapes).
        """
        _check_batch(type(self).__name__, context=context, personalised=personalised, generic=generic)
        loss, cos_cp, cos_cg = cjepa_terms(context, personalised, generic, eps=self.eps)  # (B,) each
        return {"loss": loss, "cos_personalised": cos_cp, "cos_generic": cos_cg}

    def forward_with_parts(self, context: Tensor, personalised: Tensor, generic: Tensor) -> CJEPALossOutput:  # type: ignore[override]
        """The loss and its two cosine terms."""
        return self.reduce(self.compute_parts(context, personalised, generic))  # type: ignore[return-value]

    def forward(self, context: Tensor, personalised: Tensor, generic: Tensor) -> Tensor:  # type: ignore[override]
        """$\\cos(C, G) - \\cos(C, P)$, reduced over the batch."""
        return self.forward_with_parts(context, personalised, generic).loss

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, eps={self.eps}"


class CJEPALossConfig(BaseConfig):
    """Config of :class:`CJEPALoss` (its weight $\\beta$ belongs to the model config)."""

    _target_ = CJEPALoss

    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "Reduction over the batch: ``\"mean\"`` (paper), ``\"sum\"`` or ``\"none\"``."))
    eps: float = Field(1e-8, gt=0.0, le=1e-2, description=(
        "Small value that keeps the cosine similarity finite for zero vectors."))
