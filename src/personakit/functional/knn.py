r"""k-nearest-neighbour search by inner product, exact and approximate, on torch tensors.

Given points $x_1, \dots, x_n \in \mathbb{R}^D$, the $k$ nearest neighbours of a point $u$
are the $k$ other points with the largest inner product,

$$
\mathcal{N}_k(u) = \operatorname*{top\text{-}k}_{v \ne u,\; x_u^\top x_v \ge \tau} \; x_u^\top x_v ,
$$

optionally keeping only the scores at or above a minimum $\tau$ (``min_score``).  With
L2-normalised points this is cosine similarity.  Results are returned like
:func:`torch.topk`: ``(values, indices)``, best first, each row padded to width $k$ with
``-inf`` / ``-1`` where fewer than $k$ neighbours exist or pass $\tau$.  The point itself
is never its own neighbour, even when another point has the same score (ties).

* :func:`knn_exact`: all-pairs scan in row blocks, in one or several spaces at once
  (``L`` tensors over the same points), plus their **mean** score
  $\frac{1}{L} \sum_l x_u^{(l)\top} x_v^{(l)}$ when ``mean_layer``; no $n \times n$
  matrix is formed (memory $O(nk + \text{chunk} \cdot n)$).
  :func:`knn_exact_among` is the same search restricted to candidate neighbours
  (the scores are symmetric, so it scans only the candidates' rows).
* :func:`knn_ivf`: inverted file in plain torch: $n_\text{list}$ k-means cells
  (:func:`personakit.functional.kmeans.kmeans`) of unit sketches of the points (a fixed
  random projection to ``sketch_dim`` dimensions when wider); the points of a cell are
  scored exactly, in one matrix product, against the members of the ``nprobe`` cells
  whose centres are nearest to their cell's centre (their own first).
* :func:`knn_faiss`: a faiss ``IndexIVFFlat`` (inner product), probing ``nprobe`` cells
  per point (optional dependency ``faiss-cpu``: ``pip install 'personakit[ann]'``).
  Points wider than 1024 dimensions are indexed in a 384-dimensional projection on the
  top eigenvectors of the uncentred second moment (it keeps inner products best), and
  the $8k$ best candidates found there are re-scored with the exact vectors.

Both approximate searches are exact with ``nlist`` 0 or 1.  They accept the points as a
tensor or as a function that gathers rows on demand (``vectors(index) -> [r, D]``), so a
caller can search vectors it never holds in full.  :func:`knn_merge` and
:func:`knn_threshold` combine and filter neighbour lists.
"""

from __future__ import annotations

import math
import operator
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from personakit.functional.kmeans import kmeans, kmeans_assign

__all__ = [
    "knn_chunk_size",
    "knn_exact",
    "knn_exact_among",
    "knn_faiss",
    "knn_ivf",
    "knn_merge",
    "knn_threshold",
]

RowGatherer = Callable[[Tensor], Tensor]
"""``vectors(index [r] long) -> [r, D]`` float32: the rows of the points at ``index``."""

_NEG_INF = float("-inf")
_DEFAULT_BLOCK_BYTES = 128 * 2**20  # one [chunk, n] float32 score block
_FAISS_TRAIN_PER_LIST = 16  # training points per inverted list of the faiss index
_FAISS_REDUCE_ABOVE = 1024  # wider points are searched in a reduced space ...
_FAISS_REDUCED_DIM = 384  # ... of this many dimensions ...
_FAISS_REFINE = 8  # ... for refine x k candidates, re-scored with the exact vectors


# --------------------------------------------------------------------------------------
# neighbour lists
# --------------------------------------------------------------------------------------


def knn_chunk_size(n_cols: int, chunk_size: Optional[int] = None) -> int:
    """Rows per score block: ``chunk_size``, or as many as fit 128 MiB of ``[chunk, n_cols]`` float32 (at most 4096).

    Args:
        n_cols: columns of a score block (the number of points searched).
        chunk_size: an explicit size (``>= 1``), returned as is.

    Returns:
        The number of rows.
    """
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, min(4096, _DEFAULT_BLOCK_BYTES // (4 * max(n_cols, 1))))


def knn_threshold(values: Tensor, indices: Tensor, k: int, min_score: float) -> tuple[Tensor, Tensor]:
    """Drop the neighbours scored below ``min_score`` and pad the lists to width ``k``.

    Args:
        values: ``[..., k']`` scores, ``k' <= k``.
        indices: ``[..., k']`` neighbour indices.
        k: width of the result.
        min_score: lowest score kept.

    Returns:
        ``(values [..., k], indices [..., k])``, ``-inf`` / ``-1`` in dropped and padded slots.

    Example:
        >>> v, i = knn_threshold(torch.tensor([[0.9, 0.2]]), torch.tensor([[3, 1]]), 3, 0.5)
        >>> i.tolist(), v.isinf().tolist()
        ([[3, -1, -1]], [[False, True, True]])
    """
    keep = values >= min_score
    indices = torch.where(keep, indices, torch.full_like(indices, -1))
    values = torch.where(keep, values, torch.full_like(values, _NEG_INF))
    if values.shape[-1] < k:
        pad = k - values.shape[-1]
        indices = torch.nn.functional.pad(indices, (0, pad), value=-1)
        values = torch.nn.functional.pad(values, (0, pad), value=_NEG_INF)
    return values, indices


def knn_merge(values_a: Tensor, indices_a: Tensor, values_b: Tensor, indices_b: Tensor,
              k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` of two neighbour lists (disjoint, ``-inf`` / ``-1`` in empty slots) along the last dim.

    Args:
        values_a: ``[..., a]`` scores of the first lists.
        indices_a: ``[..., a]`` their indices.
        values_b: ``[..., b]`` scores of the second lists.
        indices_b: ``[..., b]`` their indices.
        k: width of the result.

    Returns:
        ``(values [..., k], indices [..., k])``, best first.

    Example:
        >>> v, i = knn_merge(torch.tensor([[0.9, 0.1]]), torch.tensor([[4, 2]]),
        ...                  torch.tensor([[0.5]]), torch.tensor([[7]]), 2)
        >>> i.tolist()
        [[4, 7]]
    """
    v, i = torch.cat([values_a, values_b], -1), torch.cat([indices_a, indices_b], -1)  # (..., a + b)
    kk = min(k, v.shape[-1])
    v, pos = v.topk(kk, dim=-1)  # (..., kk)
    i = i.gather(-1, pos)
    i = torch.where(torch.isinf(v), torch.full_like(i, -1), i)
    return knn_threshold(v, i, k, _NEG_INF)


def _empty(layers: int, n: int, k: int, device: Optional[torch.device] = None) -> tuple[Tensor, Tensor]:
    """``(values, indices)`` ``[layers, n, k]`` of empty lists (``-inf`` / ``-1``)."""
    return (torch.full((layers, n, k), _NEG_INF, dtype=torch.float32, device=device),
            torch.full((layers, n, k), -1, dtype=torch.long, device=device))


def _check_k(k: int, where: str) -> int:
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"{where}: k must be an integer >= 1, got {k!r}") from None
    if k < 1:
        raise ValueError(f"{where}: k must be an integer >= 1, got {k!r}")
    return k


def _check_spaces(vectors: Union[Tensor, Sequence[Tensor]], where: str) -> list[Tensor]:
    """The spaces as a list of ``[n, d_l]`` float32 tensors (no copy when already so)."""
    spaces = [vectors] if isinstance(vectors, Tensor) else list(vectors)
    if not spaces:
        raise ValueError(f"{where}: vectors must hold at least one [n, d] tensor")
    n = spaces[0].shape[0] if spaces[0].ndim else None
    for pos, x in enumerate(spaces):
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
            raise ValueError(f"{where}: vectors[{pos}] must be a [n, d] tensor over the same n points, got {shape}")
    return [x if x.dtype == torch.float32 else x.float() for x in spaces]


def _min_scores(min_score: Union[float, Sequence[float]], layers: int, where: str) -> list[float]:
    if isinstance(min_score, (int, float)):
        return [float(min_score)] * layers
    scores = [float(s) for s in min_score]
    if len(scores) != layers:
        raise ValueError(f"{where}: min_score must be one number or one per output layer ({layers}), "
                         f"got {len(scores)}")
    return scores


def _check_index(index: Tensor | Sequence[int], n: int, name: str, where: str) -> Tensor:
    index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(f"{where}: {name} must be indices in 0..{n - 1}")
    return index


# --------------------------------------------------------------------------------------
# exact search
# --------------------------------------------------------------------------------------


def knn_exact(
    vectors: Union[Tensor, Sequence[Tensor]],
    k: int,
    *,
    queries: Optional[Union[Tensor, Sequence[int]]] = None,
    min_score: Union[float, Sequence[float]] = _NEG_INF,
    mean_layer: bool = False,
    chunk_size: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact top-$k$ inner-product neighbours (self excluded) of the ``queries`` among all points.

    Scans ``[chunk, n]`` blocks of scores: per block one matrix product per space, a
    top-$k$ per row, and (``mean_layer``) the sum of the spaces' blocks for the mean score.

    Args:
        vectors: ``[n, d]`` points, or ``L`` tensors ``[n, d_l]`` over the same $n$ points
            (one search per space; computed in float32).
        k: neighbours per query.
        queries: indices of the points to search for (default: all, in order).
        min_score: lowest score kept: one number, or one per output layer.
        mean_layer: add a layer ranked by the mean score over the ``L`` spaces.
        chunk_size: queries per score block (default :func:`knn_chunk_size`).  Does not
            change the result.
        progress: called as ``progress(done, total)`` after each block.

    Returns:
        ``(values, indices)``, each ``[L + mean_layer, len(queries), k]``, best first,
        ``-inf`` / ``-1`` in empty slots.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> values, indices = knn_exact(x, 1)
        >>> indices[0, :, 0].tolist()  # each point's nearest other point
        [1, 0, 1]
    """
    spaces = _check_spaces(vectors, "knn_exact")
    k = _check_k(k, "knn_exact")
    n_spaces, n, device = len(spaces), spaces[0].shape[0], spaces[0].device
    rows = torch.arange(n) if queries is None else _check_index(queries, n, "queries", "knn_exact")
    rows = rows.to(device)
    thresholds = _min_scores(min_score, n_spaces + int(mean_layer), "knn_exact")
    chunk = knn_chunk_size(n, chunk_size)
    val_out, idx_out = _empty(n_spaces + int(mean_layer), len(rows), k, device)
    kk = min(k, n - 1)
    if kk <= 0 or len(rows) == 0:
        return val_out, idx_out
    block = torch.empty(min(chunk, len(rows)), n, device=device)  # reused score buffers: no allocation per block
    total = torch.empty_like(block) if mean_layer else None
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        c = len(r)
        ar = torch.arange(c, device=device)
        s = block[:c]
        for m, w in enumerate(spaces):
            torch.mm(w[r], w.T, out=s)  # (c, n)
            if total is not None:
                if m == 0:
                    total[:c].copy_(s)
                else:
                    total[:c].add_(s)
            s[ar, r] = _NEG_INF  # v != u
            v, i = s.topk(kk, dim=1)  # (c, kk)
            v, i = knn_threshold(v, i, k, thresholds[m])
            val_out[m, start:start + c], idx_out[m, start:start + c] = v, i
        if total is not None:
            combined = total[:c]
            combined.div_(n_spaces)
            combined[ar, r] = _NEG_INF
            v, i = combined.topk(kk, dim=1)
            v, i = knn_threshold(v, i, k, thresholds[-1])
            val_out[-1, start:start + c], idx_out[-1, start:start + c] = v, i
        if progress is not None:
            progress(start + c, len(rows))
    return val_out, idx_out


def knn_exact_among(
    vectors: Union[Tensor, Sequence[Tensor]],
    candidates: Union[Tensor, Sequence[int]],
    k: int,
    *,
    min_score: Union[float, Sequence[float]] = _NEG_INF,
    mean_layer: bool = False,
    chunk_size: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    r"""For every point, its exact top-$k$ neighbours among the ``candidates`` (self excluded).

    Uses the symmetry of the scores: column $u$ of a ``[chunk, n]`` block of the
    candidates' scores scores $u$ against each of them, so the work is
    $O(|\text{candidates}| \cdot n \cdot d)$ rather than $n^2 d$; the best candidates of
    each block are merged (:func:`knn_merge`) into the running lists.

    Args:
        vectors: ``[n, d]`` points, or ``L`` tensors ``[n, d_l]`` over the same points.
        candidates: indices of the points that may be neighbours (distinct).
        k: neighbours per point.
        min_score: lowest score kept: one number, or one per output layer.
        mean_layer: add a layer ranked by the mean score over the ``L`` spaces.
        chunk_size: candidates per score block (default :func:`knn_chunk_size`).

    Returns:
        ``(values, indices)``, each ``[L + mean_layer, n, k]``, best first, ``-inf`` / ``-1``
        in empty slots.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> values, indices = knn_exact_among(x, [0, 2], 1)
        >>> indices[0, :, 0].tolist()  # the nearest of points 0 and 2, never the point itself
        [2, 0, 0]
    """
    spaces = _check_spaces(vectors, "knn_exact_among")
    k = _check_k(k, "knn_exact_among")
    n_spaces, n, device = len(spaces), spaces[0].shape[0], spaces[0].device
    rows = _check_index(candidates, n, "candidates", "knn_exact_among").to(device)
    thresholds = _min_scores(min_score, n_spaces + int(mean_layer), "knn_exact_among")
    chunk = knn_chunk_size(n, chunk_size)
    val_out, idx_out = _empty(n_spaces + int(mean_layer), n, k, device)
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        c = len(r)
        ar = torch.arange(c, device=device)
        kk = min(k, c)
        combined = None
        for layer in range(len(val_out)):
            if layer < n_spaces:
                w = spaces[layer]
                s = w[r] @ w.T  # (c, n)
                if mean_layer:
                    combined = s.clone() if combined is None else combined.add_(s)
            else:
                assert combined is not None
                s = combined.div_(n_spaces)
            s[ar, r] = _NEG_INF  # v != u
            v, i = s.topk(kk, dim=0)  # (kk, n): best candidates for each column
            v, i = v.T, r[i.T]  # (n, kk)
            v, i = knn_threshold(v, i, kk, thresholds[layer])
            val_out[layer], idx_out[layer] = knn_merge(val_out[layer], idx_out[layer], v, i, k)
    return val_out, idx_out


# --------------------------------------------------------------------------------------
# approximate search
# --------------------------------------------------------------------------------------


def _approximate_setup(vectors: Union[Tensor, RowGatherer], k: int, nprobe: int, num_rows: Optional[int],
                       chunk_size: Optional[int], where: str) -> tuple[int, RowGatherer, int, int]:
    """Check the arguments of an approximate search: ``(k, rows -> [r, D] float32, n, chunk)``."""
    k = _check_k(k, where)
    if nprobe < 1:
        raise ValueError(f"{where}: nprobe must be >= 1, got {nprobe}")
    if isinstance(vectors, Tensor):
        if vectors.ndim != 2:
            raise ValueError(f"{where}: vectors must be a [n, D] tensor, got shape {tuple(vectors.shape)}")
        x = vectors.detach()

        def gather(rows: Tensor) -> Tensor:
            return x.index_select(0, rows).float()  # (r, D)

        n = int(x.shape[0])
    elif not callable(vectors) or num_rows is None or num_rows < 0:
        raise ValueError(f"{where}: vectors must be a [n, D] tensor, or a function of row indices with "
                         f"num_rows=n >= 0, got {type(vectors).__name__} and num_rows={num_rows}")
    else:
        gather, n = vectors, int(num_rows)
    return k, gather, n, knn_chunk_size(n, chunk_size)


def knn_ivf(
    vectors: Union[Tensor, RowGatherer],
    k: int,
    *,
    nlist: int,
    nprobe: int = 16,
    seed: int = 0,
    chunk_size: Optional[int] = None,
    num_rows: Optional[int] = None,
    sketch_dim: int = 64,
    copy_budget_bytes: int = 2 * 2**30,
) -> tuple[Tensor, Tensor]:
    r"""Approximate top-$k$ inner-product neighbours (self excluded) with an inverted file in plain torch.

    Cells: k-means (:func:`personakit.functional.kmeans.kmeans`, on a sample of
    $8 n_\text{list}$ points) of unit sketches of the points, a fixed random projection
    to ``sketch_dim`` dimensions when wider.  The points of a cell are searched together
    against the members of the ``nprobe`` cells whose centres are nearest to their cell's
    centre (their own first), with exact scores.  Holds a cell-ordered copy of the points
    when it fits ``copy_budget_bytes``, otherwise gathers them per cell.

    Args:
        vectors: ``[n, D]`` points (CPU), or a function ``index [r] -> [r, D]`` (float32)
            that gathers them (then ``num_rows`` is $n$).
        k: neighbours per point.
        nlist: number of cells; 0 or 1 searches exactly.
        nprobe: cells searched per cell.
        seed: seed of the sample, projection and k-means.
        chunk_size: rows per block (default :func:`knn_chunk_size`).
        num_rows: $n$ when ``vectors`` is a function.
        sketch_dim: width of the sketches the cells are found on.
        copy_budget_bytes: largest cell-ordered copy of the points to hold.

    Returns:
        ``(values [n, k], indices [n, k])``, best first, ``-inf`` / ``-1`` in empty slots.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
        >>> values, indices = knn_ivf(x, 3, nlist=4, nprobe=2)
        >>> values.shape, bool((indices != torch.arange(200)[:, None]).all())
        (torch.Size([200, 3]), True)
    """
    k, gather, n_a, chunk = _approximate_setup(vectors, k, nprobe, num_rows, chunk_size, "knn_ivf")
    kk = min(k, n_a - 1)
    vals = torch.full((n_a, k), _NEG_INF)
    idxs = torch.full((n_a, k), -1, dtype=torch.long)
    if kk <= 0:
        return vals, idxs
    everyone = torch.arange(n_a)
    if nlist <= 1:  # exact: every point against every other, in row blocks
        x = gather(everyone)  # (n, D)
        for start in range(0, n_a, chunk):
            s = x[start:start + chunk] @ x.T  # (c, n)
            s[torch.arange(len(s)), torch.arange(start, start + len(s))] = _NEG_INF  # v != u
            v, i = s.topk(kk, dim=1)
            vals[start:start + len(s), :kk], idxs[start:start + len(s), :kk] = v, i
        return vals, idxs
    gen = torch.Generator().manual_seed(seed)
    dim = gather(everyone[:1]).shape[1]
    proj = torch.randn(dim, sketch_dim, generator=gen) / math.sqrt(sketch_dim) if dim > sketch_dim else None
    sketches = []
    for start in range(0, n_a, chunk):
        z = gather(everyone[start:start + chunk])
        sketches.append(torch.nn.functional.normalize(z @ proj if proj is not None else z, dim=-1))
    sketch = torch.cat(sketches)  # (n, sketch dim)
    nlist = min(nlist, n_a)
    sample = sketch[torch.randperm(n_a, generator=gen)[: 8 * nlist]]  # k-means++ costs O(nlist * sample)
    centers = kmeans(sample, nlist, n_init=1, max_iter=10, seed=seed).centers  # (nlist, s)
    cell = kmeans_assign(sketch, centers)  # (n,)
    del sketch, sketches
    unit = torch.nn.functional.normalize(centers, dim=-1)
    near = unit @ unit.T  # (nlist, nlist)
    near.fill_diagonal_(float("inf"))  # a cell probes itself first
    probes = near.topk(min(nprobe, nlist), dim=1).indices  # (nlist, p)
    order = cell.argsort()
    offsets = torch.zeros(nlist + 1, dtype=torch.long)
    offsets[1:] = torch.bincount(cell, minlength=nlist).cumsum(0)
    # the points in cell order, when they fit the budget: a cell's members are then a slice
    in_order = None
    if n_a * dim * 4 <= copy_budget_bytes:
        in_order = torch.cat([gather(order[s:s + chunk]) for s in range(0, n_a, chunk)])
    for c in range(nlist):
        queries = order[offsets[c]:offsets[c + 1]]  # in cell c
        if len(queries) == 0:
            continue
        cells = probes[c].tolist()  # cell c first
        cand = torch.cat([order[offsets[b]:offsets[b + 1]] for b in cells])
        if len(cand) < 2:
            continue
        if in_order is not None:
            xc = torch.cat([in_order[offsets[b]:offsets[b + 1]] for b in cells])  # (C, D)
        else:
            xc = gather(cand)  # (C, D)
        s = xc[: len(queries)] @ xc.T  # (q, C)
        s[torch.arange(len(queries)), torch.arange(len(queries))] = _NEG_INF  # v != u
        v, i = s.topk(min(kk, len(cand) - 1), dim=1)
        vals[queries, : v.shape[1]] = v
        idxs[queries, : v.shape[1]] = cand[i]
    return vals, idxs


def _inner_product_basis(x: Tensor, dim: int) -> Tensor:
    """``[D, dim]`` orthonormal basis of the top eigenvectors of the uncentred second moment of ``x`` ``[n, D]``.

    Projecting on it keeps inner products best in the least-squares sense (no centring: the
    search ranks by inner product, not by distance from the mean).
    """
    moment = (x.T @ x).double() / max(1, x.shape[0])  # (D, D)
    _, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    return vectors[:, -dim:].flip(1).float().contiguous()  # (D, dim)


def _candidate_scores(gather: RowGatherer, start: int, cand: Tensor, block: int = 512) -> Tensor:
    """Exact scores of queries ``start ..`` against their candidates ``cand`` ``[q, c]`` (-1: none)."""
    out = torch.empty(cand.shape)
    for a in range(0, cand.shape[0], block):
        c = cand[a:a + block].clamp_min(0)  # (b, c)
        q = gather(torch.arange(start + a, start + a + len(c)))  # (b, D)
        x = gather(c.flatten()).view(len(c), c.shape[1], -1)  # (b, c, D)
        out[a:a + len(c)] = torch.bmm(x, q.unsqueeze(-1)).squeeze(-1)  # (b, c)
    return out


def knn_faiss(
    vectors: Union[Tensor, RowGatherer],
    k: int,
    *,
    nlist: int,
    nprobe: int = 16,
    seed: int = 0,
    chunk_size: Optional[int] = None,
    num_rows: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    r"""Approximate top-$k$ inner-product neighbours (self excluded) with a faiss inverted file.

    A faiss ``IndexIVFFlat`` (inner product; ``IndexFlatIP``, exact, when ``nlist <= 1``)
    trained on $16 n_\text{list}$ sampled points (10 k-means iterations), probing
    ``nprobe`` cells per point.  Points wider than 1024 dimensions are indexed, with an
    inverted file, in a 384-dimensional projection on the top eigenvectors of their
    uncentred second moment (estimated on $4D$ sampled points); the $8k$ best candidates
    found there are re-scored with the exact vectors, so the returned scores are exact.
    Needs the optional package ``faiss`` (``pip install 'personakit[ann]'``).

    Args:
        vectors: ``[n, D]`` points (CPU), or a function ``index [r] -> [r, D]`` (float32)
            that gathers them (then ``num_rows`` is $n$).
        k: neighbours per point.
        nlist: number of inverted lists; 0 or 1 searches exactly.
        nprobe: lists searched per point.
        seed: seed of the samples and of faiss's k-means.
        chunk_size: rows added / searched at a time (default :func:`knn_chunk_size`).
        num_rows: $n$ when ``vectors`` is a function.

    Returns:
        ``(values [n, k], indices [n, k])``, best first, ``-inf`` / ``-1`` in empty slots.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
        >>> values, indices = knn_faiss(x, 3, nlist=4, nprobe=2)  # doctest: +SKIP
        >>> values.shape  # doctest: +SKIP
        torch.Size([200, 3])
    """
    from personakit._imports import require

    require("faiss", "knn_faiss")
    import faiss
    import numpy as np

    k, gather, n_a, chunk = _approximate_setup(vectors, k, nprobe, num_rows, chunk_size, "knn_faiss")
    vals = torch.full((n_a, k), _NEG_INF)
    idxs = torch.full((n_a, k), -1, dtype=torch.long)
    if n_a < 2:
        return vals, idxs
    everyone = torch.arange(n_a)
    gen = torch.Generator().manual_seed(seed)
    dim = gather(everyone[:1]).shape[1]
    nlist = min(nlist, n_a)
    basis = None
    if nlist > 1 and dim > _FAISS_REDUCE_ABOVE:
        sample = torch.randperm(n_a, generator=gen)[: 4 * dim].sort().values
        basis = _inner_product_basis(gather(sample), _FAISS_REDUCED_DIM)  # (D, 384)
        dim = _FAISS_REDUCED_DIM

    def rows(start: int, stop: int) -> np.ndarray:
        x = gather(everyone[start:stop])  # (c, D)
        return np.ascontiguousarray((x if basis is None else x @ basis).numpy(), dtype=np.float32)

    if nlist <= 1:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.niter = 10
        # k-means on a sample: its cost (sample x nlist x dim x iterations) dominated the build at
        # 64 points per list (10^5 users: 200 s of which most was training); 16 keep the recall
        index.cp.max_points_per_centroid = _FAISS_TRAIN_PER_LIST
        index.cp.min_points_per_centroid = 1  # no warning about the (deliberately) small sample
        pick = torch.randperm(n_a, generator=gen)[: _FAISS_TRAIN_PER_LIST * nlist].sort().values
        train = gather(pick)
        index.train(np.ascontiguousarray((train if basis is None else train @ basis).numpy(), dtype=np.float32))
        index.nprobe = min(nprobe, nlist)
    for start in range(0, n_a, chunk):
        index.add(rows(start, start + chunk))
    kk = min(k + 1 if basis is None else _FAISS_REFINE * k + 1, n_a)
    for start in range(0, n_a, chunk):
        v, i = index.search(rows(start, start + chunk), kk)
        v, i = torch.from_numpy(v), torch.from_numpy(i).long()  # (c, kk)
        if basis is not None:  # exact scores of the candidates
            v = _candidate_scores(gather, start, i)
        own = torch.arange(start, start + len(v)).unsqueeze(1)
        v = torch.where((i == own) | (i < 0), torch.full_like(v, _NEG_INF), v)  # v != u
        v, pos = v.topk(min(k, kk), dim=1)
        i = i.gather(1, pos)
        vals[start:start + len(v), : v.shape[1]] = v
        idxs[start:start + len(v), : v.shape[1]] = torch.where(torch.isinf(v), torch.full_like(i, -1), i.clamp_min(0))
    return vals, idxs
