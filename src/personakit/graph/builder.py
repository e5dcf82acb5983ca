r"""Multiplex collaborative persona graph of CoPersona (Zhang et al., 2026, §3.2 and Appendix C).

Every facet $m$ is one layer over the same users.  With L2-normalised facet embeddings
$e_u^{(m)}$ and reliability levels $r_u^{(m)} \in \{0, 1, 2, 3\}$ (none, weak, moderate,
strong), the edge score of layer $m$ is the reliability-weighted cosine (Eqs. 5-6)

$$
\tilde A^{(m)}_{uv} = \omega(r_u^{(m)})\, \omega(r_v^{(m)})\, e_u^{(m)\top} e_v^{(m)},
\qquad \omega = [0.05, 0.25, 0.60, 0.95],
$$

and each user keeps its top-$K$ neighbours $v \ne u$ with $\tilde A^{(m)}_{uv} \ge \tau$
($K = 5$, $\tau = 0.35$).  A further *combined* layer ranks users by the mean over **all**
$M$ facets of the weighted cosine,

$$
\bar A_{uv} = \frac{1}{M} \sum_{m=1}^{M} \tilde A^{(m)}_{uv},
$$

again keeping the top-$K$ with $\bar A_{uv} \ge \tau$ (``combined_threshold``).  This is the
user-level neighbour set $\mathcal{N}_u$ used by :class:`~personakit.graph.FacetGraph`.

**Departure from the paper.** Appendix C says only that "a user pair's combined similarity
is the mean of its facet weights".  We average the weighted cosine over every facet,
for every pair (not only over the facets in which the pair survived the per-facet
top-$K$), because that score does not depend on which other users exist, is symmetric,
and can be ranked exactly without a candidate list: it is the inner product of the
concatenated weighted embeddings divided by $M$.

**Scale.** No $N \times N$ matrix is ever formed.  The searches are the pure functions
of :mod:`personakit.functional.knn`.  The exact backend
(:func:`~personakit.functional.knn.knn_exact`, one space per facet plus their mean) scans
row blocks against all users (one ``[chunk, N]`` block of scores per facet at a time),
keeps the top-$K$ of each row, and adds the facet blocks into the combined block, so
memory is $O(NK + \text{chunk}\cdot N)$ and the work is the $M$ matrix products
$N^2 d M$ plus a top-$k$ per block (it holds one reliability-weighted copy of the
embeddings).

The approximate backends first drop, per layer, the users that cannot reach the
threshold at all ($\tilde A^{(m)}_{uv} \le \omega(r_u^{(m)}) \max_v \omega(r_v^{(m)})$,
so with the defaults a facet graded none or weak never has an edge: $0.25 \cdot 0.95 <
0.35$), then search an inverted file of ``nlist`` k-means cells (default $4\sqrt N$)
with exact scores inside the probed cells:

* ``"ivf"`` (:func:`~personakit.functional.knn.knn_ivf`, plain torch, no extra
  dependency): cells from :func:`personakit.functional.kmeans.kmeans` on a
  64-dimensional random projection of the layer vectors; the users of one cell are
  scored together, in one matrix product, against the members of the ``nprobe`` cells
  whose centres are nearest to their cell's centre.  Holds a cell-ordered copy of one
  layer's vectors when it fits in 2 GiB, otherwise gathers them per cell.
* ``"faiss"`` (:func:`~personakit.functional.knn.knn_faiss`): a faiss ``IndexIVFFlat``
  (inner product) per layer, probing ``nprobe`` cells per user (optional dependency
  ``faiss-cpu``).  The combined layer ($M d$ wide) is indexed in a 384-dimensional
  projection that keeps inner products best, and the 8 K best candidates found there
  are re-scored with the exact vectors.

Both are exact with ``nlist=0``.

Edges follow PyG's ``source_to_target`` flow: column ``(v, u)`` of an ``edge_index``
means that $v$ is one of $u$'s neighbours, so a message passing layer sends $v$'s state
to $u$.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from personakit.functional.knn import knn_chunk_size as _auto_chunk
from personakit.functional.knn import knn_exact, knn_exact_among, knn_faiss, knn_ivf, knn_merge, knn_threshold

__all__ = [
    "DEFAULT_OMEGA",
    "MultiplexGraph",
    "build_multiplex_graph",
    "update_multiplex_graph",
    "reliability_weighted",
    "random_neighbors",
]

DEFAULT_OMEGA: tuple[float, float, float, float] = (0.05, 0.25, 0.60, 0.95)
"""Reliability weights $\\omega$ for none, weak, moderate, strong (CoPersona, Appendix C)."""

_NEG_INF = float("-inf")


# --------------------------------------------------------------------------------------
# the graph
# --------------------------------------------------------------------------------------


@dataclass
class MultiplexGraph:
    r"""A sparse multiplex user graph: one top-$K$ layer per facet plus the combined layer.

    The neighbours are stored as fixed-width tables, row ``u`` listing $u$'s neighbours by
    descending score (``-1`` / ``-inf`` in unused slots), so memory is $O((M + 1) N K)$.

    Attributes:
        neighbor_index: ``[M + 1, N, K]`` long; layer ``m < M`` is facet ``m``, layer ``M``
            the combined score.  ``-1`` marks an empty slot.
        neighbor_score: ``[M + 1, N, K]`` float scores ($\tilde A^{(m)}_{uv}$ or
            $\bar A_{uv}$); ``-inf`` in empty slots.
        facet_names: the $M$ facet names (edge types of :meth:`to_pyg`).
        top_k, threshold, combined_threshold, omega: the settings the graph was built
            with (reused by :func:`update_multiplex_graph`).
        backend: ``"exact"``, ``"faiss"`` or ``"ivf"``.
    """

    neighbor_index: Tensor
    neighbor_score: Tensor
    facet_names: list[str]
    top_k: int
    threshold: float
    combined_threshold: float
    omega: tuple[float, ...] = DEFAULT_OMEGA
    backend: str = "exact"
    _edge_cache: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_users(self) -> int:
        """Number of users $N$ (nodes)."""
        return int(self.neighbor_index.shape[1])

    @property
    def num_facets(self) -> int:
        """Number of facet layers $M$ (the combined layer not counted)."""
        return int(self.neighbor_index.shape[0]) - 1

    def _layer(self, facet: int | str | None) -> int:
        if facet is None or facet == "combined":
            return self.num_facets
        if isinstance(facet, str):
            if facet not in self.facet_names:
                raise KeyError(f"MultiplexGraph: unknown facet {facet!r}; facets are {self.facet_names}")
            return self.facet_names.index(facet)
        if not 0 <= int(facet) < self.num_facets:
            raise IndexError(f"MultiplexGraph: facet index {facet} out of range 0..{self.num_facets - 1}")
        return int(facet)

    def edges(self, facet: int | str | None = None) -> tuple[Tensor, Tensor]:
        """``(edge_index [2, E], edge_weight [E])`` of one layer (``None``: combined).

        Column ``(v, u)`` means $v \\in \\mathcal{N}_u$ (messages flow $v \\to u$); edges
        are grouped by target ``u`` in increasing order, each group by descending score.
        """
        layer = self._layer(facet)
        if layer not in self._edge_cache:
            idx, score = self.neighbor_index[layer], self.neighbor_score[layer]  # (N, K)
            valid = idx >= 0
            target = torch.arange(self.num_users).unsqueeze(1).expand_as(idx)[valid]
            self._edge_cache[layer] = (torch.stack([idx[valid], target]), score[valid])
        return self._edge_cache[layer]

    @property
    def facet_edge_index(self) -> list[Tensor]:
        """Per-facet ``[2, E_m]`` edge indices (see :meth:`edges`)."""
        return [self.edges(m)[0] for m in range(self.num_facets)]

    @property
    def facet_edge_weight(self) -> list[Tensor]:
        """Per-facet ``[E_m]`` edge weights $\\tilde A^{(m)}_{uv}$."""
        return [self.edges(m)[1] for m in range(self.num_facets)]

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` edges of the combined layer (the user-level neighbour sets)."""
        return self.edges(None)[0]

    @property
    def edge_weight(self) -> Tensor:
        """``[E]`` combined scores $\\bar A_{uv}$."""
        return self.edges(None)[1]

    def neighbors(self, user_index: int, facet: int | str | None = None) -> tuple[Tensor, Tensor]:
        """Neighbours of one user in one layer, best first.

        Args:
            user_index: the user (row of the embedding table).
            facet: facet index or name; ``None`` (or ``"combined"``) for the combined layer.

        Returns:
            ``(indices [k], scores [k])`` with ``k <= top_k``.
        """
        if not 0 <= user_index < self.num_users:
            raise IndexError(f"MultiplexGraph: user {user_index} out of range 0..{self.num_users - 1}")
        layer = self._layer(facet)
        idx, score = self.neighbor_index[layer, user_index], self.neighbor_score[layer, user_index]
        keep = idx >= 0
        return idx[keep], score[keep]

    def to_pyg(self) -> Any:
        """The graph as a ``torch_geometric.data.HeteroData``.

        One node type ``"user"`` (``num_nodes = N``) and one edge type per layer:
        ``("user", facet_name, "user")`` for each facet and ``("user", "combined", "user")``,
        each with ``edge_index`` and ``edge_weight``.  Needs ``torch_geometric``.
        """
        from personakit._imports import require

        require("torch_geometric", "MultiplexGraph.to_pyg")
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["user"].num_nodes = self.num_users
        for m, name in enumerate([*self.facet_names, "combined"]):
            edge_index, edge_weight = self.edges(m if m < self.num_facets else None)
            data["user", name, "user"].edge_index = edge_index
            data["user", name, "user"].edge_weight = edge_weight
        return data


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


def reliability_weighted(facet_embeddings: Tensor, reliability: Tensor,
                         omega: Sequence[float] = DEFAULT_OMEGA) -> Tensor:
    r"""$\omega(r_u^{(m)})\, e_u^{(m)}$: the embeddings scaled by their reliability weight.

    The inner product of two weighted rows is the edge score $\tilde A^{(m)}_{uv}$.

    Args:
        facet_embeddings: ``[N, M, d]``.
        reliability: ``[N, M]`` levels indexing ``omega``.
        omega: weight per level.

    Returns:
        ``[N, M, d]`` float32.
    """
    w = torch.as_tensor(list(omega), dtype=torch.float32)[reliability.long()]  # (N, M)
    return facet_embeddings.float() * w.unsqueeze(-1)  # (N, M, d)


def _weighted_facets(e: Tensor, reliability: Tensor, omega: Sequence[float]) -> list[Tensor]:
    """M contiguous ``[N, d]`` float32 tensors $\\omega(r_u^{(m)}) e_u^{(m)}$, built one facet at a time."""
    w = torch.as_tensor(list(omega), dtype=torch.float32)[reliability.cpu().long()]  # (N, M)
    return [(e[:, m].float() * w[:, m:m + 1]).contiguous() for m in range(e.shape[1])]


def _check_inputs(facet_embeddings: Tensor, reliability: Tensor, omega: Sequence[float],
                  facet_names: Sequence[str] | None, where: str) -> list[str]:
    if not isinstance(facet_embeddings, Tensor) or facet_embeddings.ndim != 3:
        shape = tuple(facet_embeddings.shape) if isinstance(facet_embeddings, Tensor) else type(facet_embeddings)
        raise ValueError(f"{where}: facet_embeddings must be a [N, M, d] tensor, got {shape}")
    n, m, _ = facet_embeddings.shape
    if not isinstance(reliability, Tensor) or tuple(reliability.shape) != (n, m):
        shape = tuple(reliability.shape) if isinstance(reliability, Tensor) else type(reliability)
        raise ValueError(f"{where}: reliability must be a [N, M] = {[n, m]} tensor, got {shape}")
    if reliability.is_floating_point():
        raise ValueError(f"{where}: reliability must hold integer levels, got dtype {reliability.dtype}")
    if len(omega) < 1 or any(not math.isfinite(w) or w < 0 for w in omega):
        raise ValueError(f"{where}: omega must be finite non-negative weights, got {tuple(omega)}")
    if reliability.numel():
        bad = (reliability < 0) | (reliability >= len(omega))
        if bool(bad.any()):
            u, f = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{where}: reliability[{u}, {f}] = {int(reliability[u, f])} is not a level "
                             f"0..{len(omega) - 1} of omega")
    if facet_embeddings.numel():
        if not bool(torch.isfinite(facet_embeddings).all()):
            u, f = (int(i) for i in (~torch.isfinite(facet_embeddings)).any(-1).nonzero()[0])
            raise ValueError(f"{where}: facet_embeddings[{u}, {f}] has a non-finite value")
        norms = facet_embeddings.float().norm(dim=-1)  # (N, M)
        bad = (norms - 1).abs() > 1e-3
        if bool(bad.any()):
            u, f = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{where}: facet_embeddings[{u}, {f}] has norm {float(norms[u, f]):.4f}; the embeddings "
                             "must be L2-normalised (e.g. torch.nn.functional.normalize(x, dim=-1))")
    if facet_names is None:
        return [f"facet_{i}" for i in range(m)]
    names = [str(x) for x in facet_names]
    if len(names) != m or len(set(names)) != m or "combined" in names:
        raise ValueError(f"{where}: facet_names must be {m} distinct names other than 'combined', got {names}")
    return names


def _empty_tables(layers: int, n: int, k: int) -> tuple[Tensor, Tensor]:
    return (torch.full((layers, n, k), -1, dtype=torch.long),
            torch.full((layers, n, k), _NEG_INF, dtype=torch.float32))


# --------------------------------------------------------------------------------------
# approximate backends: the layer vectors, gathered on demand, searched by functional.knn
# --------------------------------------------------------------------------------------


def _auto_nlist(n: int, nlist: int | None) -> int:
    if nlist is not None:
        return max(0, min(int(nlist), n))
    return 0 if n < 10_000 else int(min(4 * math.sqrt(n), n // 16))


def _layer_vectors(e: Tensor, w: Tensor, layer: int, rows: Tensor) -> Tensor:
    """Rows of one layer's vectors: the weighted facet embedding, or all facets concatenated (combined).

    One gathered copy (``index_select``), weighted in place.
    """
    if layer < e.shape[1]:
        x = e[:, layer].index_select(0, rows).float()  # (r, d)
        return x.mul_(w[:, layer].index_select(0, rows).unsqueeze(-1))
    x = e.index_select(0, rows).float()  # (r, M, d)
    return x.mul_(w.index_select(0, rows).unsqueeze(-1)).reshape(len(rows), -1)  # (r, M d)


def _active_users(w: Tensor, layer: int, threshold: float) -> Tensor:
    """Users that can have an edge in ``layer`` at all: score <= w_u * max_v w_v (times 1.01 for rounding)."""
    n, n_facets = w.shape
    if threshold <= 0:
        return torch.arange(n)
    w_max = w.max(0).values  # (M,)
    bound = w[:, layer] * w_max[layer] if layer < n_facets else (w * w_max).mean(1)  # (N,)
    return (bound * 1.01 >= threshold).nonzero().flatten()


def _approx_tables(e: Tensor, w: Tensor, k: int, thresholds: list[float], backend: str, nlist: int | None,
                   nprobe: int, seed: int, chunk: int, progress: bool) -> tuple[Tensor, Tensor]:
    n, n_facets, _ = e.shape
    idx_out, val_out = _empty_tables(n_facets + 1, n, k)
    search = knn_faiss if backend == "faiss" else knn_ivf
    for layer in range(n_facets + 1):
        users = _active_users(w, layer, thresholds[layer])  # the others cannot reach the threshold
        lists = _auto_nlist(len(users), nlist)

        def gather(local: Tensor, layer: int = layer, users: Tensor = users) -> Tensor:
            return _layer_vectors(e, w, layer, users[local])  # (r, D)

        v, i = search(gather, k, nlist=lists, nprobe=nprobe, seed=seed + layer, chunk_size=chunk,
                      num_rows=len(users))  # local ids
        i = torch.where(i >= 0, users[i.clamp_min(0)], i)  # (N_a, k) global ids
        if layer == n_facets:
            v = v / n_facets
        v, i = knn_threshold(v, i, k, thresholds[layer])
        val_out[layer, users], idx_out[layer, users] = v, i
        if progress:
            print(f"  multiplex graph ({backend}): layer {layer + 1}/{n_facets + 1}, {len(users):,} active users, "
                  f"{lists} cells", flush=True)
    return idx_out, val_out


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def build_multiplex_graph(
    facet_embeddings: Tensor,
    reliability: Tensor,
    *,
    top_k: int = 5,
    threshold: float = 0.35,
    omega: Sequence[float] = DEFAULT_OMEGA,
    backend: Literal["exact", "faiss", "ivf"] = "exact",
    chunk_size: int | None = None,
    facet_names: Sequence[str] | None = None,
    progress: bool = False,
    combined_threshold: float | None = None,
    nlist: int | None = None,
    nprobe: int = 16,
    seed: int = 0,
) -> MultiplexGraph:
    r"""Build the multiplex user graph of CoPersona (§3.2): top-$K$ reliability-weighted neighbours per facet.

    See the module docstring for the scores.  Each layer keeps, for every user, the
    ``top_k`` other users with the highest score at or above the threshold.

    Args:
        facet_embeddings: ``[N, M, d]`` L2-normalised facet embeddings $e_u^{(m)}$.
        reliability: ``[N, M]`` integer levels $r_u^{(m)}$ (0 none, 1 weak, 2 moderate,
            3 strong) indexing ``omega``.
        top_k: neighbours kept per user and layer ($K$).
        threshold: minimum per-facet score $\tau$.
        omega: reliability weight per level.
        backend: ``"exact"`` (chunked all-pairs scan in torch), ``"faiss"`` (inverted-file
            index of faiss, optional dependency ``faiss-cpu``) or ``"ivf"`` (the same
            approximate search in plain torch).  Both approximate backends are exact when
            ``nlist`` is 0 or 1.
        chunk_size: rows per score block (default: as many as fit 128 MiB of ``[chunk, N]``
            float32 scores, at most 4096).  Does not change the result.
        facet_names: names of the $M$ facets (default ``facet_0`` ...).
        progress: print a line per block / layer.
        combined_threshold: minimum combined score (default: ``threshold``).
        nlist: approximate backends: number of k-means cells (default $4\sqrt{N_a}$, at
            most $N_a / 16$, for $N_a \ge 10^4$ users that can reach the threshold; exact
            search below that; ``0`` forces exact search).
        nprobe: approximate backends: cells searched per user (per cell for ``"ivf"``).
        seed: approximate backends: k-means seed.

    Returns:
        A :class:`MultiplexGraph`.

    Example:
        >>> import torch
        >>> e = torch.nn.functional.normalize(torch.randn(50, 3, 8), dim=-1)
        >>> r = torch.full((50, 3), 3)
        >>> graph = build_multiplex_graph(e, r, top_k=4, threshold=0.0)
        >>> graph.neighbor_index.shape  # (M + 1, N, K)
        torch.Size([4, 50, 4])
        >>> graph.edge_index.shape
        torch.Size([2, 200])
    """
    names = _check_inputs(facet_embeddings, reliability, omega, facet_names, "build_multiplex_graph")
    if top_k < 1:
        raise ValueError(f"build_multiplex_graph: top_k must be >= 1, got {top_k}")
    if backend not in ("exact", "faiss", "ivf"):
        raise ValueError(f"build_multiplex_graph: backend must be 'exact', 'faiss' or 'ivf', got {backend!r}")
    if backend == "faiss":
        from personakit._imports import require

        try:
            require("faiss", "build_multiplex_graph(backend='faiss')")
        except ImportError as err:
            raise ImportError(f"{err} (or use backend='ivf', the same search in plain torch)") from None
    if nprobe < 1:
        raise ValueError(f"build_multiplex_graph: nprobe must be >= 1, got {nprobe}")
    comb_t = threshold if combined_threshold is None else float(combined_threshold)
    n, n_facets, _ = facet_embeddings.shape
    thresholds = [float(threshold)] * n_facets + [comb_t]
    if n_facets == 0:
        raise ValueError("build_multiplex_graph: facet_embeddings has no facets (M = 0)")
    chunk = _auto_chunk(n, chunk_size)
    e = facet_embeddings.detach().cpu()
    if backend == "exact":
        per_facet = _weighted_facets(e, reliability, omega)  # M x (N, d): one weighted copy of the input
        def report(done: int, total: int) -> None:
            print(f"  multiplex graph: rows {done:,}/{total:,}", flush=True)

        val, idx = knn_exact(per_facet, top_k, min_score=thresholds, mean_layer=True, chunk_size=chunk,
                             progress=report if progress else None)
    else:
        w = torch.as_tensor(list(omega), dtype=torch.float32)[reliability.cpu().long()]  # (N, M)
        idx, val = _approx_tables(e, w, top_k, thresholds, backend, nlist, nprobe, seed, chunk, progress)
    return MultiplexGraph(neighbor_index=idx, neighbor_score=val, facet_names=names, top_k=int(top_k),
                          threshold=float(threshold), combined_threshold=comb_t, omega=tuple(float(w) for w in omega),
                          backend=backend)


def update_multiplex_graph(
    graph: MultiplexGraph,
    facet_embeddings: Tensor,
    reliability: Tensor,
    changed: Tensor | Sequence[int],
    *,
    chunk_size: int | None = None,
) -> MultiplexGraph:
    r"""Update a graph after some users changed or were added, without a full rebuild.

    ``facet_embeddings`` / ``reliability`` are the **full** new tables; rows beyond
    ``graph.num_users`` are new users (always treated as changed).  The rows of changed
    users are recomputed against everyone.  Every other user keeps the neighbours that did
    not change, gains changed users that now score high enough (found in one scan of the
    changed rows, using the symmetry of the scores), and is recomputed in full only when
    a changed user dropped out of a full neighbour list and the merged list can no longer
    prove that no unstored user outranks it.  The result equals
    :func:`build_multiplex_graph` on the new tables with the exact backend (up to ties and
    float rounding); the update is always exact, whatever backend built ``graph``.

    Args:
        graph: the graph to update (not modified).
        facet_embeddings: ``[N', M, d]`` new embeddings, ``N' >= graph.num_users``.
        reliability: ``[N', M]`` new levels.
        changed: indices of users whose embeddings or reliability changed.
        chunk_size: rows per score block.

    Returns:
        A new :class:`MultiplexGraph` (``backend="exact"`` if the base was exact).
    """
    _check_inputs(facet_embeddings, reliability, graph.omega, graph.facet_names, "update_multiplex_graph")
    n_old, n = graph.num_users, facet_embeddings.shape[0]
    n_facets, k = graph.num_facets, graph.top_k
    if facet_embeddings.shape[1] != n_facets:
        raise ValueError(f"update_multiplex_graph: the graph has {n_facets} facets, the embeddings "
                         f"{facet_embeddings.shape[1]}")
    if n < n_old:
        raise ValueError(f"update_multiplex_graph: {n} users given but the graph has {n_old}; removing users "
                         "needs a rebuild")
    changed = torch.as_tensor(changed, dtype=torch.long).reshape(-1)
    if changed.numel() and (int(changed.min()) < 0 or int(changed.max()) >= n):
        raise ValueError(f"update_multiplex_graph: changed indices must be in 0..{n - 1}")
    rows = torch.unique(torch.cat([changed, torch.arange(n_old, n)]))  # sorted
    thresholds = [graph.threshold] * n_facets + [graph.combined_threshold]
    per_facet = _weighted_facets(facet_embeddings.detach().cpu(), reliability, graph.omega)
    chunk = _auto_chunk(n, chunk_size)

    is_changed = torch.zeros(n, dtype=torch.bool)
    is_changed[rows] = True
    old_idx = torch.full((n_facets + 1, n, k), -1, dtype=torch.long)
    old_val = torch.full((n_facets + 1, n, k), _NEG_INF)
    old_idx[:, :n_old], old_val[:, :n_old] = graph.neighbor_index, graph.neighbor_score

    stale = (old_idx >= 0) & is_changed[old_idx.clamp_min(0)]  # (L, N, K)
    kept_idx = torch.where(stale, torch.full_like(old_idx, -1), old_idx)
    kept_val = torch.where(stale, torch.full_like(old_val, _NEG_INF), old_val)
    cand_val, cand_idx = knn_exact_among(per_facet, rows, k, min_score=thresholds, mean_layer=True, chunk_size=chunk)
    new_val, new_idx = knn_merge(kept_val, kept_idx, cand_val, cand_idx, k)

    # A full old list that lost a changed neighbour bounds every unstored unchanged user by its
    # last score; if the merged list falls below that bound, the row must be recomputed.
    old_full = (old_idx >= 0).all(-1)  # (L, N)
    lost = stale.any(-1) & old_full & ~(new_val[..., -1] >= old_val[..., -1])
    redo = lost.any(0) & ~is_changed  # (N,)
    redo_rows = torch.cat([rows, redo.nonzero().flatten()])
    fresh_val, fresh_idx = knn_exact(per_facet, k, queries=redo_rows, min_score=thresholds, mean_layer=True,
                                     chunk_size=chunk)
    new_idx[:, redo_rows], new_val[:, redo_rows] = fresh_idx, fresh_val
    return MultiplexGraph(neighbor_index=new_idx, neighbor_score=new_val, facet_names=list(graph.facet_names),
                          top_k=k, threshold=graph.threshold, combined_threshold=graph.combined_threshold,
                          omega=graph.omega, backend=graph.backend)


# --------------------------------------------------------------------------------------
# controls
# --------------------------------------------------------------------------------------


def random_neighbors(graph: MultiplexGraph, seed: int = 0, pool: Literal["layer", "all"] = "layer") -> MultiplexGraph:
    r"""A control graph: every user keeps its number of neighbours in every layer, but they are random users.

    Row $u$ of each layer keeps its $k_u$ filled slots and their scores (so the degrees,
    the score values and their order are those of ``graph``); the users in them are $k_u$
    distinct users other than $u$, drawn uniformly with a seeded generator, each layer
    independently.  ``pool`` is where they are drawn from: ``"layer"``, the users with at
    least one edge in that layer (as neighbour or as target; with the default thresholds
    those are the users whose facet is graded moderate or strong, so a random peer still
    has a usable summary), or ``"all"``, every user.  When the pool holds fewer than
    $k_u$ users other than $u$, all of them are used and the other slots stay empty.

    It answers "does the model use *which* users are linked?": a model that reads the
    graph should do worse with it (see the CoPersona benchmark's controls).

    Args:
        graph: the graph (not modified).
        seed: seed of the draw.
        pool: ``"layer"`` or ``"all"`` (see above).

    Returns:
        A new :class:`MultiplexGraph` with the settings of ``graph``.

    Example:
        >>> e = torch.nn.functional.normalize(torch.randn(6, 2, 4), dim=-1)
        >>> g = build_multiplex_graph(e, torch.full((6, 2), 3), top_k=2, threshold=0.0)
        >>> r = random_neighbors(g, seed=1)
        >>> bool(((r.neighbor_index >= 0) == (g.neighbor_index >= 0)).all())  # same degrees
        True
    """
    if pool not in ("layer", "all"):
        raise ValueError(f"random_neighbors: pool must be 'layer' or 'all', got {pool!r}")
    gen = torch.Generator().manual_seed(int(seed))
    n = graph.num_users
    new_idx = torch.full_like(graph.neighbor_index, -1)
    new_val = torch.full_like(graph.neighbor_score, _NEG_INF)
    for layer in range(graph.neighbor_index.shape[0]):
        idx, val = graph.neighbor_index[layer], graph.neighbor_score[layer]  # (N, K)
        valid = idx >= 0
        if pool == "all":
            members = torch.arange(n)
        else:
            targets = torch.arange(n).unsqueeze(1).expand_as(idx)[valid]
            members = torch.unique(torch.cat([idx[valid], targets]))
        for u in valid.any(1).nonzero().flatten().tolist():
            slots = valid[u].nonzero().flatten()
            others = members[members != u]
            take = min(len(slots), len(others))
            chosen = others[torch.randperm(len(others), generator=gen)[:take]]
            new_idx[layer, u, :take] = chosen
            new_val[layer, u, :take] = val[u, slots[:take]]
    return MultiplexGraph(neighbor_index=new_idx, neighbor_score=new_val, facet_names=list(graph.facet_names),
                          top_k=graph.top_k, threshold=graph.threshold, combined_threshold=graph.combined_threshold,
                          omega=graph.omega, backend=graph.backend)
