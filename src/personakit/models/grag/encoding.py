r"""Batched encoding helpers of the GRAG models.

PostGRAG encodes the persona $P$, the history $H$, the generic response $R_G$ and
(for training) the personalised response $R_P$ **separately** (GRAG §3.3):
$E_X = \text{Encode}(X)$.  Separately does not mean one pass each: the segments are
stacked along the batch dimension, padded to a common length, and encoded together,
which gives the same states as separate passes (each row attends only to its own
non-padding tokens) at a fraction of the cost.  :func:`plan_passes` groups the rows of
all segments by length so that at most ``max_passes`` passes compute little padding.

The padding helpers :func:`pad_stack`, :func:`trim_padding` and :func:`left_pad` live in
:mod:`personakit.models.padding` (re-exported here).  For decoder-only backbones
:func:`encode_segments_with_cache` / :func:`stack_key_values` /
:func:`continuation`, with which PostGRAG continues the encodings of $H$ and $R_P$
(their key/value caches) with the styled target tokens instead of reading them again.
"""

from __future__ import annotations

from typing import Callable, Collection, Optional, Sequence

import torch
from torch import Tensor

from personakit.models.padding import Segment, left_pad, pad_stack, trim_padding

__all__ = ["Segment", "KeyValues", "pad_stack", "trim_padding", "left_pad", "plan_passes", "encode_segments",
           "encode_segments_with_cache", "embed_together", "stack_key_values", "continuation"]


def plan_passes(widths: Sequence[int], rows: Sequence[int], max_passes: int = 1) -> list[list[int]]:
    r"""Group items into at most ``max_passes`` encoder passes with the least padded compute.

    A pass over items $S$ costs $\sum_{i \in S} \text{rows}_i \cdot \max_{j \in S} \text{width}_j$
    token positions.  Items are sorted by width and split into contiguous groups (optimal
    for this cost), chosen by dynamic programming; of equally cheap plans the one with the
    fewest passes wins.  An item is a segment (``rows`` rows of ``width`` columns) or a
    single row.

    Args:
        widths: padded width of each item.
        rows: number of rows of each item.
        max_passes: the most passes allowed (1: everything in one pass).

    Returns:
        Lists of item indices, one per pass (narrowest first).

    Example:
        >>> plan_passes([10, 200, 12, 11], [4, 4, 4, 4], max_passes=2)
        [[0, 3, 2], [1]]
    """
    if len(widths) != len(rows) or not widths:
        raise ValueError("plan_passes: give one width and one row count per item")
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    n = len(order)
    prefix_rows = [0]
    for i in order:
        prefix_rows.append(prefix_rows[-1] + rows[i])
    # best[k][j]: least cost of the first j sorted items in k passes; cut[k][j]: where the last pass starts
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(max_passes + 1)]
    cut = [[0] * (n + 1) for _ in range(max_passes + 1)]
    best[0][0] = 0
    for k in range(1, min(max_passes, n) + 1):
        for j in range(1, n + 1):
            width = widths[order[j - 1]]  # the widest item of a pass ending at j
            for start in range(k - 1, j):
                cost = best[k - 1][start] + (prefix_rows[j] - prefix_rows[start]) * width
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, start
    passes = min(range(1, min(max_passes, n) + 1), key=lambda k: (best[k][n], k))
    groups: list[list[int]] = []
    end = n
    for k in range(passes, 0, -1):
        start = cut[k][end]
        groups.append(order[start:end])
        end = start
    return groups[::-1]


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

    Each segment is trimmed of all-padding columns; the rows of all segments are grouped
    by length into at most ``max_passes`` passes (:func:`plan_passes`, one row per item,
    so the short rows of a long segment are not padded to its longest), the rows of a pass
    are stacked along the batch dimension and right-padded to a common length, encoded
    once, and the states are put back in each segment's row order (each segment to its
    own width, masked positions zero where a row's pass was narrower).  With right padding
    and an attention mask the states at non-padding positions equal those of encoding each
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
            more than one pass, the tokens of every pass are embedded in **one** call
            (:func:`embed_together`) and ``encode`` is called as
            ``encode(ids, mask, inputs_embeds)``.

    Returns:
        The segments' ``(states, mask)`` as :func:`encode_segments`, and ``{index: cache}``
        with each cache cut to its segment's rows and width ``[B_i, H_kv, T_i, d]``.
    """
    trimmed = [trim_padding(ids, mask) for ids, mask in segments]
    # every row of every segment is planned on its own: rows of similar length share a pass
    units = [(i, r) for i, (ids, _) in enumerate(trimmed) for r in range(ids.size(0))]
    widths = [max(int(n), 1) for _, mask in trimmed for n in _row_extents(mask).tolist()]
    plan = plan_passes(widths, [1] * len(units), max_passes)
    passes, members = [], []  # per pass: (ids, mask) and [(segment, its rows in this pass)]
    for group in plan:
        width = max(widths[u] for u in group)
        by_segment: dict[int, list[int]] = {}
        for u in sorted(group):  # rows in segment order
            by_segment.setdefault(units[u][0], []).append(units[u][1])
        parts = [(i, torch.tensor(rows, device=trimmed[i][0].device)) for i, rows in by_segment.items()]
        members.append(parts)
        passes.append((pad_stack([trimmed[i][0].index_select(0, r)[:, :width] for i, r in parts], pad_id),
                       pad_stack([trimmed[i][1].index_select(0, r)[:, :width] for i, r in parts], 0)))  # (N, T)
    embedded: list[Optional[Tensor]] = [None] * len(passes)
    if embed is not None and len(passes) > 1:  # one lookup for every pass (one dense gradient)
        embedded = list(embed_together(embed, [ids for ids, _ in passes]))
    pieces: dict[int, list[tuple[Tensor, Tensor, Optional[KeyValues]]]] = {}  # segment -> (rows, states, cache)
    for parts, (ids, mask), inputs_embeds in zip(members, passes, embedded):
        # (N, T, D)
        states, cache = encode(ids, mask) if inputs_embeds is None else encode(ids, mask, inputs_embeds)  # type: ignore[call-arg]
        start = 0
        for i, rows in parts:
            n, t = rows.numel(), trimmed[i][0].size(1)
            layer_kv = None
            if i in cache_for:
                if cache is None:
                    raise ValueError(f"encode_segments_with_cache: segment {i} needs a cache but encode gave none")
                layer_kv = [(_fit(k[start:start + n], t, 2), _fit(v[start:start + n], t, 2)) for k, v in cache]
            pieces.setdefault(i, []).append((rows, _fit(states[start:start + n], t, 1), layer_kv))
            start += n
    out: list[Segment] = []
    caches: dict[int, KeyValues] = {}
    for i, (_, mask) in enumerate(trimmed):
        rows = torch.cat([p[0] for p in pieces[i]])
        # the pieces' rows back in the segment's order (no copy when one piece holds them in order)
        restore = None if torch.equal(rows, torch.arange(rows.numel(), device=rows.device)) else rows.argsort()

        def gather(tensors: list[Tensor]) -> Tensor:
            joined = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
            return joined if restore is None else joined.index_select(0, restore)

        out.append((gather([p[1] for p in pieces[i]]), mask))  # (B_i, T_i, D), (B_i, T_i)
        if i in cache_for:
            layers = zip(*[p[2] for p in pieces[i]])  # per layer, the pieces' (keys, values)
            caches[i] = [(gather([k for k, _ in layer]), gather([v for _, v in layer])) for layer in layers]
    return out, caches


def embed_together(embed: Callable[[Tensor], Tensor], ids: Sequence[Tensor]) -> list[Tensor]:
    """``embed`` of several id tensors ``[N_k, T_k]`` in **one** call: ``[N_k, T_k, D]`` each.

    In training, every call of an embedding layer builds a dense gradient of its whole
    ``V x D`` table, and the calls' gradients are then summed; one call builds one.
    """
    flat = embed(torch.cat([i.reshape(-1) for i in ids]))  # (sum N_k T_k, D)
    return [chunk.view(*i.shape, -1) for chunk, i in zip(flat.split([i.numel() for i in ids]), ids)]


def _row_extents(mask: Tensor) -> Tensor:
    """Columns each row of ``mask`` ``[B, T]`` needs: up to its last non-padding position (0 if none)."""
    if mask.size(1) == 0:
        return mask.new_zeros(mask.size(0), dtype=torch.long)
    has = mask.bool()
    return torch.where(has.any(dim=1), mask.size(1) - has.flip(1).int().argmax(dim=1), 0)


def _fit(tensor: Tensor, width: int, dim: int) -> Tensor:
    """``tensor`` cut or zero-padded (on the right) to ``width`` along ``dim``."""
    size = tensor.size(dim)
    if size >= width:
        return tensor.narrow(dim, 0, width)
    pad = [0, 0] * (tensor.dim() - dim - 1) + [0, width - size]
    return torch.nn.functional.pad(tensor, pad)


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
