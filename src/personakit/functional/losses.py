r"""Pure tensor maths behind the personakit losses and poolings.

Functions here hold no state and no parameters; the modules in
:mod:`personakit.modules` and the losses in :mod:`personakit.losses` call them.

* :func:`masked_mean`: mean over the valid (mask = 1) positions of a dimension.
* :func:`last_token_pool`: the hidden state of the last non-padding token, for right,
  left or any other padding.
* :func:`cjepa_loss`: the contrastive JEPA loss of GRAG (Liu et al., 2026, §3.4),
  $\mathcal{L}_{CJEPA} = \cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)$.
* :func:`token_cross_entropy`: token-level cross-entropy with ``-100`` masking, the
  next-word-prediction losses $L_P$ and $L_G$ of GRAG (§3.5).

Example:
    >>> import torch
    >>> from personakit.functional.losses import cjepa_loss, last_token_pool
    >>> hidden = torch.arange(12.0).view(1, 4, 3)
    >>> last_token_pool(hidden, torch.tensor([[1, 1, 1, 0]]))
    tensor([[6., 7., 8.]])
    >>> c, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    >>> cjepa_loss(c, p, torch.tensor([[0.0, 1.0]]))
    tensor(-1.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Reduction",
    "reduce_loss",
    "masked_mean",
    "last_token_index",
    "last_token_pool",
    "cjepa_terms",
    "cjepa_loss",
    "token_cross_entropy",
]

Reduction = Literal["mean", "sum", "none"]


def reduce_loss(values: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Reduce per-sample values with ``"mean"``, ``"sum"`` or ``"none"`` (unchanged).

    Args:
        values: any tensor of per-sample values.
        reduction: how to reduce all of its elements.

    Returns:
        A scalar for ``"mean"``/``"sum"``; ``values`` itself for ``"none"``.
    """
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def masked_mean(x: Tensor, mask: Tensor | None, dim: int = 1, keepdim: bool = False) -> Tensor:
    r"""Mean of ``x`` over the positions of ``dim`` where ``mask`` is nonzero.

    $$\bar{x} = \frac{\sum_t m_t\, x_t}{\max(1, \sum_t m_t)}$$

    Masked positions contribute nothing, whatever their value (``NaN`` and ``inf``
    included, as they are selected away rather than multiplied by zero).  A row whose
    mask is all zero gives zeros rather than ``NaN``.

    Args:
        x: values, e.g. hidden states ``[B, T, D]``.
        mask: ``1``/``True`` for valid positions, broadcastable to ``x`` after the
            trailing dimensions are added, e.g. ``[B, T]`` for ``x`` of ``[B, T, D]``.
            ``None`` gives the plain mean.
        dim: the dimension to average over.
        keepdim: keep ``dim`` with size 1.

    Shapes:
        x ``[B, T, D]``, mask ``[B, T]``, ``dim=1`` → ``[B, D]``.

    Example:
        >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(x, torch.tensor([[1, 1, 0]]), dim=1)
        tensor([[2.]])
    """
    if mask is None:
        return x.mean(dim=dim, keepdim=keepdim)
    mask = mask.to(torch.bool)
    while mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)  # [B, T] -> [B, T, 1]
    mask = mask.expand_as(x)
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=dim, keepdim=keepdim)
    count = mask.sum(dim=dim, keepdim=keepdim).clamp(min=1).to(x.dtype)
    return total / count


def last_token_index(mask: Tensor) -> Tensor:
    """Index of the last nonzero position of each row of ``mask``.

    Works for right padding (``1 1 1 0 0``), left padding (``0 0 1 1 1``) and any
    other pattern: it is the largest position whose mask is nonzero.

    Args:
        mask: ``[B, T]`` attention mask (``1``/``True`` = token).

    Returns:
        ``[B]`` long tensor of positions.

    Raises:
        ValueError: if a row has no token at all (naming the row).
    """
    if mask.dim() != 2:
        raise ValueError(f"last_token_index: mask must be [B, T], got shape {tuple(mask.shape)}")
    valid = mask.to(torch.bool)
    empty = ~valid.any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"last_token_index: mask rows {rows} have no non-padding token")
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(valid)  # [B, T]
    return torch.where(valid, positions, torch.full_like(positions, -1)).max(dim=1).values  # [B]


def last_token_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    r"""Hidden state of the last non-padding token of each sequence.

    GRAG (§3.4) represents an encoding by "the last non-padding token embedding":
    $\mathcal{E} = E[b, t^*_b]$ with $t^*_b = \max\{t : m_{b,t} = 1\}$.  This is right
    for right padding and left padding alike (decoder-only models usually pad left
    for generation).

    Args:
        hidden: ``[B, T, D]`` hidden states.
        mask: ``[B, T]`` attention mask.

    Shapes:
        hidden ``[B, T, D]``, mask ``[B, T]`` → ``[B, D]``.

    Example:
        >>> h = torch.arange(6.0).view(1, 3, 2)
        >>> last_token_pool(h, torch.tensor([[0, 1, 1]]))  # left padding
        tensor([[4., 5.]])
    """
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"last_token_pool: expected hidden [B, T, D] and mask [B, T], got {tuple(hidden.shape)} "
            f"and {tuple(mask.shape)}"
        )
    index = last_token_index(mask)  # [B]
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]  # [B, D]


def cjepa_loss(
    context: Tensor,
    personalised: Tensor,
    generic: Tensor,
    reduction: Reduction = "mean",
    eps: float = 1e-8,
) -> Tensor:
    r"""Contrastive JEPA loss of GRAG (Liu et al., 2026, §3.4), with the intended sign.

    $$\mathcal{L}_{CJEPA} = \cos(\mathcal{E}_C, \mathcal{E}_G) - \cos(\mathcal{E}_C, \mathcal{E}_P)
      = \mathcal{D}_{CP} - \mathcal{D}_{CG}, \qquad \mathcal{D}_{XY} = 1 - \cos(\mathcal{E}_X, \mathcal{E}_Y)$$

    Minimising it pulls the context towards the personalised response and pushes it
    away from the generic one.  The paper prints equation (1) as
    $L = \mathcal{D}_{CG} - \mathcal{D}_{CP} = \cos(C, P) - \cos(C, G)$, which, minimised,
    would do the opposite of what the text and §6.1 describe; see
    :class:`personakit.losses.CJEPALoss` for the discussion.  When
    $\mathcal{E}_P = \mathcal{E}_G$ the loss is exactly zero.

    Args:
        context: $\mathcal{E}_C$, ``[B, D]``.
        personalised: $\mathcal{E}_P$, ``[B, D]``.
        generic: $\mathcal{E}_G$, ``[B, D]``.
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (``[B]``).
        eps: the small value that keeps the cosine finite for zero vectors.

    Shapes:
        three ``[B, D]`` → scalar (``[B]`` with ``reduction="none"``).

    Raises:
        ValueError: the shapes differ, or the batch is empty (``B = 0``, whatever the
            reduction: its mean would be ``NaN`` and a ``0`` sum would hide the bug that
            emptied the batch).

    Example:
        >>> c = torch.tensor([[1.0, 0.0]])
        >>> cjepa_loss(c, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(1.)
    """
    loss, _, _ = cjepa_terms(context, personalised, generic, eps=eps)  # [B]
    return reduce_loss(loss, reduction)


def cjepa_terms(
    context: Tensor, personalised: Tensor, generic: Tensor, eps: float = 1e-8
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-sample terms of :func:`cjepa_loss`.

    Returns:
        ``(loss, cos_personalised, cos_generic)``, each ``[B]``, with
        ``loss = cos_generic - cos_personalised``.

    Raises:
        ValueError: the shapes differ or are not ``[B, D]``, or the batch is empty
            (``B = 0``: the loss of no examples is undefined; its mean would be ``NaN``).
    """
    _check_same_shape(context=context, personalised=personalised, generic=generic)
    _check_batch("cjepa_loss", context=context, personalised=personalised, generic=generic)
    cos_cp = F.cosine_similarity(context, personalised, dim=-1, eps=eps)  # [B]
    cos_cg = F.cosine_similarity(context, generic, dim=-1, eps=eps)  # [B]
    return cos_cg - cos_cp, cos_cp, cos_cg


def token_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    shift: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Token-level cross-entropy with ignored positions (next-word prediction loss).

    $$L = -\frac{1}{|\mathcal{T}|} \sum_{(b,t) \in \mathcal{T}} \log p_\theta(y_{b,t} \mid y_{b,<t}, \cdot),
      \quad \mathcal{T} = \{(b, t) : y_{b,t} \neq \text{ignore\_index}\}$$

    GRAG trains with this loss on the personalised response ($L_P$) and, for the
    style-removal back-translation of PostGRAG, on the generic response $R_G$
    reconstructed from the encoding of $R_P$ with the null style $\mathcal{S}_G$ ($L_G$).

    Args:
        logits: ``[B, T, V]`` decoder logits.
        labels: ``[B, T]`` target ids, ``ignore_index`` where no loss is taken
            (padding, prompt tokens).
        ignore_index: label value to ignore.
        shift: ``True`` for decoder-only models whose logits at ``t`` predict the token
            at ``t + 1`` (drops the last logit and the first label); ``False`` for
            encoder-decoder models whose labels are already aligned with the logits.
        reduction: ``"mean"`` over the non-ignored tokens (``0`` if there are none),
            ``"sum"``, or ``"none"`` (``[B, T]``, or ``[B, T - 1]`` with ``shift``, zero
            at ignored positions).

    Example:
        >>> logits = torch.zeros(1, 2, 4)
        >>> round(token_cross_entropy(logits, torch.tensor([[1, -100]])).item(), 4)  # log 4
        1.3863
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"token_cross_entropy: expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]  # (B, T-1, V), (B, T-1)
    per_token = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    ).view(labels.shape)  # (B, T)
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "mean":
        count = (labels != ignore_index).sum().clamp(min=1)
        return per_token.sum() / count
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()) or len(first) != 2:
        raise ValueError(f"expected tensors of the same shape [B, D], got {shapes}")


def _check_batch(who: str, **tensors: Tensor) -> None:
    """Raise a ``ValueError`` naming ``who`` and the shapes when the batch (dim 0) is empty.

    A loss of no examples is undefined: its mean is ``NaN`` (a silent ``NaN`` step), and
    a ``0`` sum or an empty ``[0]`` would hide whatever emptied the batch.
    """
    if any(t.dim() >= 1 and t.shape[0] == 0 for t in tensors.values()):
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
        raise ValueError(f"{who}: empty batch ({shapes}); the loss of no examples is undefined (its mean would be "
                         "NaN): skip empty batches before the loss")
