r"""Batched encoding helpers of the GRAG models.

PostGRAG encodes the persona $P$, the history $H$, the generic response $R_G$ and
(for training) the personalised response $R_P$ **separately** (GRAG §3.3):
$E_X = \text{Encode}(X)$.  Separately does not mean one pass each: the segments are
stacked along the batch dimension, padded to a common length, and encoded together,
which gives the same states as separate passes (each row attends only to its own
non-padding tokens) at a fraction of the cost.  :func:`plan_passes` groups segments
of similar length so that at most ``max_passes`` passes compute little padding.

Also here: :func:`pad_stack` (stack right-padded sequences of different widths),
:func:`trim_padding` (drop all-padding columns) and :func:`left_pad` (turn right
padding into left padding, as decoder-only generation wants).
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Segment", "pad_stack", "trim_padding", "left_pad", "plan_passes", "encode_segments"]

Segment = tuple[Tensor, Tensor]
"""``(input_ids [B, T], attention_mask [B, T])`` of one input source, right-padded."""


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


def plan_passes(widths: Sequence[int], rows: Sequence[int], max_passes: int = 1) -> list[list[int]]:
    r"""Group segments into at most ``max_passes`` encoder passes with the least padded compute.

    A pass over segments $S$ costs $\sum_{i \in S} \text{rows}_i \cdot \max_{j \in S} \text{width}_j$
    token positions.  Segments are sorted by width and split into contiguous groups
    (optimal for this cost); with 4 segments there are at most 8 splits to try.

    Args:
        widths: padded width of each segment.
        rows: batch size of each segment.
        max_passes: the most passes allowed (1: everything in one pass).

    Returns:
        Lists of segment indices, one per pass.

    Example:
        >>> plan_passes([10, 200, 12, 11], [4, 4, 4, 4], max_passes=2)
        [[0, 3, 2], [1]]
    """
    if len(widths) != len(rows) or not widths:
        raise ValueError("plan_passes: give one width and one row count per segment")
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    n = len(order)
    best: tuple[int, list[list[int]]] | None = None
    for k in range(0, min(max_passes, n)):
        for cuts in combinations(range(1, n), k):
            bounds = (0, *cuts, n)
            groups = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            cost = sum(sum(rows[i] for i in g) * max(widths[i] for i in g) for g in groups)
            if best is None or cost < best[0]:
                best = (cost, groups)
    assert best is not None
    return best[1]


def encode_segments(
    encode: Callable[[Tensor, Tensor], Tensor],
    segments: Sequence[Segment],
    pad_id: int,
    max_passes: int = 1,
) -> list[Segment]:
    r"""Encode several segments separately, batched into at most ``max_passes`` passes.

    Each segment is trimmed of all-padding columns, the segments of a pass are stacked
    along the batch dimension and right-padded to a common length, encoded once, and
    the states are split back (each to its own width).  With right padding and an
    attention mask the states at non-padding positions equal those of encoding each
    segment alone (up to floating-point reordering).

    Args:
        encode: ``(input_ids [N, T], attention_mask [N, T]) -> hidden states [N, T, D]``.
        segments: ``(input_ids, attention_mask)`` pairs, right-padded.
        pad_id: the pad token id used to fill.
        max_passes: the most encoder passes (see :func:`plan_passes`).

    Returns:
        ``(states [B_i, T_i, D], mask [B_i, T_i])`` per segment, in input order.
    """
    trimmed = [trim_padding(ids, mask) for ids, mask in segments]
    plan = plan_passes([ids.size(1) for ids, _ in trimmed], [ids.size(0) for ids, _ in trimmed], max_passes)
    out: list[Segment | None] = [None] * len(trimmed)
    for group in plan:
        ids = pad_stack([trimmed[i][0] for i in group], pad_id)  # (sum B_i, T)
        mask = pad_stack([trimmed[i][1] for i in group], 0)  # (sum B_i, T)
        states = encode(ids, mask)  # (sum B_i, T, D)
        start = 0
        for i in group:
            b, t = trimmed[i][0].shape
            out[i] = (states[start:start + b, :t], trimmed[i][1])  # (B_i, T_i, D), (B_i, T_i)
            start += b
    return [o for o in out if o is not None]
