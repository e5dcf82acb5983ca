r"""Padding helpers shared by every family's collator and model.

* :func:`pad_rows`: token-id lists of different lengths as one right-padded ``[B, T]`` tensor;
* :func:`trim_padding`: drop the trailing all-padding columns of a batch;
* :func:`pad_stack`: concatenate right-padded tensors of different widths;
* :func:`left_pad`: turn right padding into left padding, as decoder-only ``generate`` wants.

Example:
    >>> pad_rows([[5, 6], [7]], 0)
    tensor([[5, 6],
            [7, 0]])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["Segment", "pad_rows", "trim_padding", "pad_stack", "left_pad"]

Segment = tuple[Tensor, Tensor]
"""``(input_ids [B, T], attention_mask [B, T])`` of one input source, right-padded."""


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    """Token-id rows as a ``LongTensor`` ``[B, T]``, right-padded with ``value`` (``T`` at least 1)."""
    width = max(1, max((len(r) for r in rows), default=0))
    out = torch.full((len(rows), width), value, dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out


def trim_padding(ids: Tensor, mask: Tensor) -> Segment:
    """Drop the trailing columns where every row is padding (``mask == 0``).

    Keeps at least one column.  Shapes: ``[B, T]`` → ``[B, T']`` with ``T' <= T``.
    """
    if ids.shape != mask.shape or ids.dim() != 2:
        raise ValueError(f"trim_padding: ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must be the same [B, T]")
    used = mask.to(torch.bool).any(dim=0).nonzero()
    width = int(used.max()) + 1 if used.numel() else 1
    return ids[:, :width], mask[:, :width]


def pad_stack(tensors: Sequence[Tensor], pad_value: float | int, dim: int = 0) -> Tensor:
    """Concatenate tensors along ``dim`` after right-padding dimension 1 to the longest.

    Args:
        tensors: ``[B_i, T_i, ...]`` tensors (ids, masks, labels or hidden states).
        pad_value: fill of the padded positions (pad id, 0, ``-100``, 0.0).
        dim: the dimension to concatenate along (0: stack the batches).

    Returns:
        ``[sum B_i, max T_i, ...]`` (for ``dim=0``).

    Example:
        >>> pad_stack([torch.ones(1, 2), torch.ones(2, 3)], 0).shape
        torch.Size([3, 3])
    """
    if not tensors:
        raise ValueError("pad_stack: nothing to stack")
    width = max(t.size(1) for t in tensors)
    padded = []
    for t in tensors:
        if t.size(1) < width:
            shape = list(t.shape)
            shape[1] = width - t.size(1)
            t = torch.cat([t, t.new_full(shape, pad_value)], dim=1)  # (B_i, width, ...)
        padded.append(t)
    return torch.cat(padded, dim=dim)


def left_pad(ids: Tensor, mask: Tensor, pad_id: int) -> Segment:
    """Move every row's tokens to the right end (left padding), keeping their order.

    Decoder-only ``generate`` continues each row after its last column, so prompts must
    be left-padded; the collator pads right.  Works for any padding pattern whose
    tokens are contiguous.

    Shapes: ``[B, T]`` → ``[B, T']`` (trailing all-padding columns dropped first).

    Example:
        >>> left_pad(torch.tensor([[5, 6, 8], [7, 0, 0]]), torch.tensor([[1, 1, 1], [1, 0, 0]]), 0)[0]
        tensor([[5, 6, 8],
                [0, 0, 7]])
    """
    ids, mask = trim_padding(ids, mask)
    width = ids.size(1)
    valid = mask.to(torch.bool)
    lengths = valid.sum(dim=1)  # (B,)
    first = torch.where(valid.any(dim=1), valid.float().argmax(dim=1), torch.zeros_like(lengths))  # (B,)
    cols = torch.arange(width, device=ids.device).expand_as(ids)  # (B, T)
    shift = (width - lengths - first).unsqueeze(1)  # (B, 1): how far each row moves right
    source = (cols - shift).clamp(min=0, max=width - 1)  # (B, T)
    keep = cols >= (width - lengths).unsqueeze(1)
    new_ids = torch.where(keep, ids.gather(1, source), torch.full_like(ids, pad_id))
    new_mask = keep.to(mask.dtype)
    return new_ids, new_mask
