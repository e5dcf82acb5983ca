r"""Pure maths of the questioner-contrastive loss (Zeng et al., 2024, §4.3): masked multi-positive InfoNCE.

* :func:`info_nce`: for anchors $z_i$, candidates $c_j$, a positive mask $P$ and a
  negative mask $N$ (both ``[A, C]``),

  $$\mathcal{L}_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log
    \frac{\exp(s_{ip}/\tau)}{\exp(s_{ip}/\tau) + \sum_{n \in N(i)} \exp(s_{in}/\tau)},
    \qquad s_{ij} = \frac{z_i^\top c_j}{\lVert z_i \rVert\, \lVert c_j \rVert},$$

  each positive contrasted with the anchor's negatives only (the form of the
  questioner-contrastive loss); anchors without a positive or without a negative give
  no term and are reported as invalid.
* :func:`questioner_masks`: the masks of the questioner-aware responder: positives share
  the questioner (other rows, e.g. other views of the same dialogue or other dialogues
  of the same questioner), negatives have another questioner **and** the same question
  cluster (every other questioner when ``clusters`` is ``None``).

Example:
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> pos, neg = questioner_masks(torch.tensor([0, 0, 1]))
    >>> loss, valid = info_nce(z, z, pos, neg, temperature=1.0, reduction="none")
    >>> valid.tolist()        # row 2 is the only row of questioner 1: no positive
    [True, True, False]
    >>> loss[2].item()
    0.0
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from personakit.functional.losses import Reduction

__all__ = ["info_nce", "questioner_masks"]


def questioner_masks(
    questioners: Tensor,
    clusters: Optional[Tensor] = None,
    candidate_questioners: Optional[Tensor] = None,
    candidate_clusters: Optional[Tensor] = None,
    exclude_self: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Positive and negative masks of the questioner-contrastive loss.

    $P_{ij} = [q_i = q^c_j] \wedge [i \ne j]$ and
    $N_{ij} = [q_i \ne q^c_j] \wedge [k_i = k^c_j]$ (the cluster condition dropped when
    ``clusters`` is ``None``).  Candidates default to the anchors themselves.

    Args:
        questioners: ``[A]`` questioner index of each anchor.
        clusters: ``[A]`` question cluster of each anchor, or ``None`` (no restriction).
        candidate_questioners: ``[C]`` questioner of each candidate (default: ``questioners``).
        candidate_clusters: ``[C]`` cluster of each candidate (default: ``clusters``).
        exclude_self: the diagonal is never a positive (only meaningful when the
            candidates are the anchors, i.e. ``C = A`` in the same order).

    Returns:
        ``(positive, negative)``, two ``[A, C]`` bool tensors.
    """
    if questioners.dim() != 1:
        raise ValueError(f"questioner_masks: questioners must be [A], got {tuple(questioners.shape)}")
    cq = questioners if candidate_questioners is None else candidate_questioners
    same_q = questioners[:, None] == cq[None, :]  # (A, C)
    positive = same_q.clone()
    if exclude_self and candidate_questioners is None:
        positive.fill_diagonal_(False)
    negative = ~same_q
    if clusters is not None:
        cc = clusters if candidate_clusters is None else candidate_clusters
        if cc is None:
            raise ValueError("questioner_masks: give candidate_clusters with candidate_questioners")
        negative &= clusters[:, None] == cc[None, :]
    return positive, negative


def info_nce(
    anchors: Tensor,
    candidates: Tensor,
    positive_mask: Tensor,
    negative_mask: Tensor,
    temperature: float = 0.01,
    reduction: Reduction = "mean",
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Masked multi-positive InfoNCE (see the module docstring for the equation).

    Args:
        anchors: ``[A, D]`` anchor representations $z_i$.
        candidates: ``[C, D]`` candidate representations $c_j$ (often the anchors themselves,
            optionally followed by a queue of past representations).
        positive_mask: ``[A, C]`` bool, $P_{ij}$.
        negative_mask: ``[A, C]`` bool, $N_{ij}$ (must not overlap ``positive_mask``).
        temperature: $\tau > 0$.
        reduction: ``"mean"`` over the valid anchors (``0`` when there is none, still
            connected to the graph), ``"sum"``, or ``"none"`` (``[A]``, ``0`` for invalid anchors).
        normalize: use cosine similarities ($L_2$-normalised inputs); ``False``: raw dot products.

    Returns:
        ``(loss, valid)`` with ``valid`` the ``[A]`` bool mask of anchors that have at least
        one positive and one negative.

    Shapes:
        anchors ``[A, D]``, candidates ``[C, D]``, masks ``[A, C]`` → loss scalar (``[A]``), valid ``[A]``.
    """
    if anchors.dim() != 2 or candidates.dim() != 2 or anchors.size(1) != candidates.size(1):
        raise ValueError(f"info_nce: anchors [A, D] and candidates [C, D] expected, got {tuple(anchors.shape)} "
                         f"and {tuple(candidates.shape)}")
    shape = (anchors.size(0), candidates.size(0))
    if tuple(positive_mask.shape) != shape or tuple(negative_mask.shape) != shape:
        raise ValueError(f"info_nce: masks must be {shape}, got {tuple(positive_mask.shape)} and "
                         f"{tuple(negative_mask.shape)}")
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    pos, neg = positive_mask.bool(), negative_mask.bool()
    if bool((pos & neg).any()):
        raise ValueError("info_nce: a pair is marked both positive and negative")
    if normalize:
        anchors = F.normalize(anchors.float(), dim=-1, eps=1e-8)
        candidates = F.normalize(candidates.float(), dim=-1, eps=1e-8)
    logits = anchors.float() @ candidates.float().T / temperature  # (A, C)
    neg_inf = torch.finfo(logits.dtype).min
    # log sum_n exp(s_in / tau): the negatives' partition, [A, 1]
    neg_lse = torch.logsumexp(logits.masked_fill(~neg, neg_inf), dim=1, keepdim=True)  # (A, 1)
    # -log( e^{s_ip} / (e^{s_ip} + sum_n e^{s_in}) ) = softplus(neg_lse - s_ip)
    per_pair = F.softplus(neg_lse - logits)  # (A, C)
    n_pos = pos.sum(dim=1)  # (A,)
    valid = (n_pos > 0) & neg.any(dim=1)  # (A,)
    per_anchor = (per_pair * pos).sum(dim=1) / n_pos.clamp(min=1)  # (A,)
    per_anchor = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    if reduction == "none":
        return per_anchor, valid
    if reduction == "sum":
        return per_anchor.sum(), valid
    if reduction == "mean":
        count = valid.sum()
        if int(count) == 0:
            return per_anchor.sum() * 0.0, valid
        return per_anchor.sum() / count, valid
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
