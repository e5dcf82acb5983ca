r"""Output dataclass of the GRAG models (:class:`PreSFT`, :class:`PreGRAG`, :class:`PostGRAG`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from torch import Tensor

from personakit.models.base import PersonaModelOutput

__all__ = ["GRAGOutput"]


@dataclass
class GRAGOutput(PersonaModelOutput):
    r"""What ``forward`` of every GRAG model returns: the total loss and each of its terms.

    $$L = L_P + \alpha L_G + \beta L_{CJEPA}$$

    (GRAG Eq. 2 and 3; PreSFT has $\alpha = \beta = 0$, PreGRAG $\alpha = 0$.)  A term
    that was not computed is ``None``: $L_G$ when $\alpha = 0$ (or for the models
    without style removal), $L_{CJEPA}$ when $\beta = 0$, unless the model's config sets
    ``compute_unweighted_losses=True``, in which case such terms are computed for
    logging, detached, and left out of ``loss``.

    A transformers ``ModelOutput``: ``out["loss"]``, ``out[0]`` (the loss when there is one)
    and ``out.to_tuple()`` work as for any transformers model.

    Attributes:
        loss: the total loss (scalar); ``None`` when no labels were given.
        loss_p: $L_P$, token cross-entropy of the personalised response $R_P$ (mean
            over its non-ignored tokens, as transformers computes it).
        loss_g: $L_G$, token cross-entropy of reconstructing $R_G$ from the encoding
            of $R_P$ with the null style $\mathcal{S}_G$ (PostGRAG style removal).
        loss_cjepa: $L_{CJEPA} = \cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)$.
        logits: ``[B, T, V]`` logits of the $R_P$ decoding (for decoder-only backbones
            position $t$ predicts $t+1$; PreSFT / PreGRAG: over the whole sequence prompt +
            response; PostGRAG: over the styled continuation only, see ``labels``).
        labels: ``[B, T]`` the targets aligned with ``logits`` when they are not the
            batch's ``labels`` (decoder-only PostGRAG: the continuation of the cached
            encoding of $H$, from its last token on); ``None`` otherwise.
        style: ``[B, D]`` personalisation style $\mathcal{S}_P$ (PostGRAG only).
    """

    loss: Optional[Tensor] = None
    loss_p: Optional[Tensor] = None
    loss_g: Optional[Tensor] = None
    loss_cjepa: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    style: Optional[Tensor] = None
    labels: Optional[Tensor] = None

    LOSS_FIELDS: ClassVar[tuple[str, ...]] = ("loss", "loss_p", "loss_g", "loss_cjepa")
