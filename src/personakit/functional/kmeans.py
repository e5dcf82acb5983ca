r"""Seeded k-means (Lloyd's algorithm with k-means++ seeding) on torch tensors.

Used to cluster questions (questioner-aware responder, SPEC §5) and profile excerpts
(CoPersona facet induction, SPEC §6).  Minimises the within-cluster sum of squares

$$
\min_{c_1, \dots, c_k} \sum_{i=1}^{n} \min_j \lVert x_i - c_j \rVert_2^2 .
$$

Seeding follows Arthur & Vassilvitskii (2007): the first centre is drawn uniformly, each
next one with probability proportional to the squared distance to the nearest centre
chosen so far.  Several restarts (``n_init``) keep the lowest inertia.  Distances are
computed in row chunks, so memory stays $O(\text{chunk} \cdot k)$ beyond the data.
The result is deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["KMeansResult", "kmeans", "kmeans_assign"]


@dataclass
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes:
        centers: ``[k, d]`` cluster centres.
        labels: ``[n]`` index of each point's nearest centre.
        inertia: sum of squared distances of the points to their centres.
        n_iter: Lloyd iterations of the kept restart.
    """

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int


def _sq_dists(x: torch.Tensor, centers: torch.Tensor, chunk: int) -> torch.Tensor:
    """``[n, k]`` squared distances (only for small ``k``: k-means++ draws one centre at a time)."""
    out = []
    c_sq = (centers * centers).sum(-1)  # [k]
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk]  # [b, d]
        d = (part * part).sum(-1, keepdim=True) - 2.0 * part @ centers.T + c_sq  # [b, k]
        out.append(d.clamp_min_(0.0))
    return torch.cat(out)


def _nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(squared distance [n], index [n])`` of the nearest centre, one ``[chunk, k]`` block at a time.

    Never holds the whole ``[n, k]`` matrix (10^6 points x 4,000 centres would be 16 GB).
    """
    dist = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    index = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk]  # [b, d]
        dist[start:start + len(part)], index[start:start + len(part)] = _sq_dists(part, centers, chunk).min(-1)
    return dist, index


def kmeans_assign(x: torch.Tensor, centers: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest centre for each row of ``x``.

    Args:
        x: ``[n, d]`` points.
        centers: ``[k, d]`` centres (e.g. :attr:`KMeansResult.centers`).
        chunk: rows per distance block.

    Returns:
        ``[n]`` long tensor of centre indices.
    """
    if x.ndim != 2 or centers.ndim != 2 or x.shape[1] != centers.shape[1]:
        raise ValueError(f"kmeans_assign: x {tuple(x.shape)} and centers {tuple(centers.shape)} must be [n, d] and [k, d]")
    return _nearest(x.float(), centers.float(), chunk)[1]


def _plus_plus(x: torch.Tensor, k: int, gen: torch.Generator, chunk: int) -> torch.Tensor:
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [x[first]]
    closest = _sq_dists(x, x[first:first + 1], chunk).squeeze(1)  # [n]
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # fewer distinct points than k: reuse random points
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(closest / total, 1, generator=gen))
        centers.append(x[idx])
        closest = torch.minimum(closest, _sq_dists(x, x[idx:idx + 1], chunk).squeeze(1))
    return torch.stack(centers)


def kmeans(x: torch.Tensor, k: int, *, n_init: int = 4, max_iter: int = 100, tol: float = 1e-6, seed: int = 0,
           chunk: int = 8192) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups.

    Args:
        x: ``[n, d]`` points (any float dtype; computed in float32).
        k: number of clusters, ``1 <= k <= n``.
        n_init: restarts with different seeds; the lowest inertia wins.
        max_iter: Lloyd iterations per restart.
        tol: stop when the centres move less than this (squared Frobenius norm, relative to the data's variance).
        seed: seed of the k-means++ draws.
        chunk: rows per distance block.

    Returns:
        A :class:`KMeansResult`.  An emptied cluster is re-seeded with the point farthest from its centre.

    Example:
        >>> x = torch.cat([torch.zeros(5, 2), torch.full((5, 2), 10.0)])
        >>> result = kmeans(x, 2, seed=0)
        >>> sorted(result.labels.bincount().tolist())
        [5, 5]
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans: x must be a non-empty [n, d] tensor, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: k={k} must be between 1 and the number of points ({n})")
    if n_init < 1 or max_iter < 1:
        raise ValueError(f"kmeans: n_init ({n_init}) and max_iter ({max_iter}) must be >= 1")
    x = x.detach().float()
    scale = float(x.var(0, unbiased=False).sum()) or 1.0
    best: KMeansResult | None = None
    for run in range(n_init):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + run)
        centers = _plus_plus(x, k, gen, chunk)
        it = 0
        for it in range(1, max_iter + 1):
            dist, labels = _nearest(x, centers, chunk)  # [n], [n]
            sums = torch.zeros_like(centers).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            new = sums / counts.clamp_min(1.0).unsqueeze(-1)
            empty = (counts == 0).nonzero().flatten()
            if len(empty):
                far = dist.argsort(descending=True)
                new[empty] = x[far[: len(empty)]]
            shift = float(((new - centers) ** 2).sum()) / scale
            centers = new
            if shift <= tol:
                break
        dist, labels = _nearest(x, centers, chunk)
        inertia = float(dist.sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(centers=centers, labels=labels, inertia=inertia, n_iter=it)
    assert best is not None
    return best
