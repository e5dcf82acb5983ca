r"""Batched encoding helpers of the GRAG models.

PostGRAG encodes the persona $P$, the history $H$, the generic response $R_G$ and
(for training) the personalised response $R_P$ **separately** (GRAG §3.3):
$E_X = \text{Encode}(X)$.  Separately does not mean one pass each: the segments are
stacked along the batch dimension, padded to a common length, and encoded together,
which gives the same states as separate passes (each row attends only to its own
non-padding tokens) at a fraction of the cost.  :func:`plan_passes` groups segments
of similar length so that at most ``max_passes`` passes compute little padding.

Also here: :func:`pad_stack` (stack right-padded sequences of different widths),
:func:`trim_padding` (drop all-padding columns), :func:`left_pad` (turn right
padding into left padding, as decoder-only generation wants), and for decoder-only
backbones :func:`encode_segments_with_cache` / :func:`stack_key_values` /
:func:`continuation`, with which PostGRAG continues the encodings of $H$ and $R_P$
(their key/value caches) with the styled target tokens instead of reading them again.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Collection, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Segment", "KeyValues", "pad_stack", "trim_padding", "left_pad", "plan_passes", "encode_segments",
           "encode_segments_with_cache", "stack_key_values", "continuation"]

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


KeyValues = list[tuple[Tensor, Tensor]]
"""A decoder-only key/value cache as plain tensors: per layer ``(keys, values)``, each ``[B, H_kv, T, d]``."""


def encode_segments(
    encode: Callable[..., Tensor],
    segments: Sequence[Segment],
    pad_id: int,
    max_passes: int = 1,
    embed: Optional[Callable[[Tensor], Tensor]] = None,
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
        embed: the input embedding layer: embed the tokens of all passes in one call and
            call ``encode(ids, mask, inputs_embeds)`` (see :func:`encode_segments_with_cache`).

    Returns:
        ``(states [B_i, T_i, D], mask [B_i, T_i])`` per segment, in input order.
    """
    states, _ = encode_segments_with_cache(lambda *args: (encode(*args), None), segments, pad_id,
                                           max_passes, cache_for=(), embed=embed)
    return states


def encode_segments_with_cache(
    encode: Callable[..., tuple[Tensor, Optional[KeyValues]]],
    segments: Sequence[Segment],
    pad_id: int,
    max_passes: int = 1,
    cache_for: Collection[int] = (),
    embed: Optional[Callable[[Tensor], Tensor]] = None,
) -> tuple[list[Segment], dict[int, KeyValues]]:
    r""":func:`encode_segments` that also returns the key/value cache of some segments.

    Decoder-only PostGRAG continues the encodings of $H$ and $R_P$ with styled tokens
    instead of reading them again (see :func:`continuation`); it needs their caches.

    Args:
        encode: ``(input_ids [N, T], attention_mask [N, T]) -> (states [N, T, D], cache)``,
            ``cache`` a :data:`KeyValues` over the same ``N`` rows (``None`` allowed when
            no segment of the pass is in ``cache_for``).
        segments, pad_id, max_passes: as :func:`encode_segments`.
        cache_for: indices of the segments whose cache is returned.
        embed: the input embedding layer (``ids [n] -> [n, D]``).  When given and there is
            more than one pass, the tokens of every pass are embedded in **one** call and
            ``encode`` is called as ``encode(ids, mask, inputs_embeds)``.  In training, each
            lookup of a ``V x D`` embedding builds a dense ``V x D`` gradient that the
            lookups' gradients are then summed into; one lookup builds one.

    Returns:
        The segments' ``(states, mask)`` as :func:`encode_segments`, and ``{index: cache}``
        with each cache cut to its segment's rows and width ``[B_i, H_kv, T_i, d]``.
    """
    trimmed = [trim_padding(ids, mask) for ids, mask in segments]
    plan = plan_passes([ids.size(1) for ids, _ in trimmed], [ids.size(0) for ids, _ in trimmed], max_passes)
    out: list[Segment | None] = [None] * len(trimmed)
    caches: dict[int, KeyValues] = {}
    passes = [(pad_stack([trimmed[i][0] for i in group], pad_id),  # (sum B_i, T)
               pad_stack([trimmed[i][1] for i in group], 0)) for group in plan]  # (sum B_i, T)
    embedded: list[Optional[Tensor]] = [None] * len(passes)
    if embed is not None and len(passes) > 1:  # one lookup for every pass (one dense gradient)
        flat = embed(torch.cat([ids.reshape(-1) for ids, _ in passes]))  # (sum N_k T_k, D)
        embedded = [chunk.view(*ids.shape, -1) for chunk, (ids, _) in
                    zip(flat.split([ids.numel() for ids, _ in passes]), passes)]
    for group, (ids, mask), inputs_embeds in zip(plan, passes, embedded):
        # (sum B_i, T, D)
        states, cache = encode(ids, mask) if inputs_embeds is None else encode(ids, mask, inputs_embeds)  # type: ignore[call-arg]
        start = 0
        for i in group:
            b, t = trimmed[i][0].shape
            out[i] = (states[start:start + b, :t], trimmed[i][1])  # (B_i, T_i, D), (B_i, T_i)
            if i in cache_for:
                if cache is None:
                    raise ValueError(f"encode_segments_with_cache: segment {i} needs a cache but encode gave none")
                caches[i] = [(k[start:start + b, :, :t], v[start:start + b, :, :t]) for k, v in cache]
            start += b
    return [o for o in out if o is not None], caches


def stack_key_values(caches: Sequence[KeyValues]) -> KeyValues:
    """Concatenate caches along the batch, right-padding the time axis with zeros: ``[sum B_i, H, max T_i, d]``."""
    if not caches or any(len(c) != len(caches[0]) for c in caches):
        raise ValueError("stack_key_values: give caches with the same number of layers")
    if len(caches) == 1:  # nothing to stack: no copy
        return list(caches[0])
    out: KeyValues = []
    for layer in zip(*caches):
        keys = pad_stack([k.transpose(1, 2) for k, _ in layer], 0.0).transpose(1, 2)  # (sum B, H, T, d)
        values = pad_stack([v.transpose(1, 2) for _, v in layer], 0.0).transpose(1, 2)
        out.append((keys, values))
    return out


def continuation(ids: Tensor, mask: Tensor, labels: Tensor, start: Tensor, pad_id: int
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The tail of every row from its own ``start`` column, right-padded: what a cached prefix continues with.

    Args:
        ids, mask, labels: ``[B, T]`` right-padded sequences (prefix + target) and labels.
        start: ``[B]`` first column of each row's tail.
        pad_id: fill of the padded ids.

    Returns:
        ``(ids [B, W], mask [B, W], labels [B, W], position_ids [B, W])`` with ``W`` the
        longest tail; ``position_ids`` continue each row's positions (``start + j``);
        padded labels are ``-100``.

    Example:
        >>> ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
        >>> mask = (ids > 0).long()
        >>> continuation(ids, mask, ids, torch.tensor([2, 1]), 0)[0]
        tensor([[3, 4],
                [6, 0]])
    """
    width_in = ids.size(1)
    total = mask.sum(dim=1)  # (B,)
    width = max(1, int((total - start).max()))
    cols = start.unsqueeze(1) + torch.arange(width, device=ids.device)  # (B, W)
    valid = cols < total.unsqueeze(1)
    src = cols.clamp(max=width_in - 1)
    tail_ids = torch.where(valid, ids.gather(1, src), torch.full_like(src, pad_id))
    tail_labels = torch.where(valid, labels.gather(1, src), torch.full_like(src, -100))
    return tail_ids, valid.to(mask.dtype), tail_labels, cols
