"""k-NN search backends against a brute-force loop: exact, ivf, faiss, and the list helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from personakit.functional.knn import (
    knn_chunk_size,
    knn_exact,
    knn_exact_among,
    knn_faiss,
    knn_ivf,
    knn_merge,
    knn_threshold,
)

N, L, D = 40, 3, 6


def _spaces(n: int = N, layers: int = L, d: int = D, seed: int = 0, clusters: int = 4) -> list[torch.Tensor]:
    """``layers`` clustered spaces ``[n, d]`` of unit vectors, scaled per row (unequal norms)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(clusters, layers, d, generator=g)
    x = centers[torch.randint(clusters, (n,), generator=g)] + 0.7 * torch.randn(n, layers, d, generator=g)
    x = F.normalize(x, dim=-1) * torch.rand(n, layers, 1, generator=g)  # (n, L, d)
    return [x[:, m].contiguous() for m in range(layers)]


def brute_force(spaces, k, queries=None, candidates=None, min_score=float("-inf"), mean_layer=False):
    """Python loops over pairs: per output layer and query, the [(score, v)] best first (self excluded)."""
    n = spaces[0].shape[0]
    queries = range(n) if queries is None else [int(q) for q in queries]
    candidates = range(n) if candidates is None else [int(c) for c in candidates]

    def score(layer, u, v):
        if layer < len(spaces):
            return float(spaces[layer][u] @ spaces[layer][v])
        return sum(float(x[u] @ x[v]) for x in spaces) / len(spaces)

    out = []
    for layer in range(len(spaces) + int(mean_layer)):
        rows = []
        for u in queries:
            scores = sorted(((score(layer, u, v), v) for v in candidates if v != u), reverse=True)
            rows.append([(s, v) for s, v in scores if s >= min_score][:k])
        out.append(rows)
    return out


def _assert_matches(values, indices, ref, k, atol=1e-5):
    assert values.shape == indices.shape == (len(ref), len(ref[0]), k)
    for layer, rows in enumerate(ref):
        for row, expected in enumerate(rows):
            torch.testing.assert_close(values[layer, row, : len(expected)],
                                       torch.tensor([s for s, _ in expected]), atol=atol, rtol=0)
            assert indices[layer, row, : len(expected)].tolist() == [v for _, v in expected], (layer, row)
            assert indices[layer, row, len(expected):].eq(-1).all()
            assert values[layer, row, len(expected):].eq(float("-inf")).all()


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
def test_exact_equals_brute_force_for_any_chunk(chunk_size):
    spaces = _spaces()
    values, indices = knn_exact(spaces, 5, mean_layer=True, chunk_size=chunk_size)
    _assert_matches(values, indices, brute_force(spaces, 5, mean_layer=True), 5)


def test_exact_queries_min_scores_and_one_space():
    spaces = _spaces()
    queries = torch.tensor([3, 0, 17, 39])
    min_score = [0.1, 0.0, 0.2, 0.05]
    values, indices = knn_exact(spaces, 4, queries=queries, min_score=min_score, mean_layer=True, chunk_size=3)
    ref = [brute_force(spaces, 4, queries, min_score=t, mean_layer=True)[layer] for layer, t in enumerate(min_score)]
    _assert_matches(values, indices, ref, 4)
    assert any(len(row) < 4 for rows in ref for row in rows)  # the threshold bites
    v, i = knn_exact(spaces[1], 3)  # one [n, d] tensor: one layer
    _assert_matches(v, i, brute_force(spaces[1:2], 3), 3)


@pytest.mark.parametrize("chunk_size", [None, 2, 5])
def test_exact_among_candidates_equals_brute_force(chunk_size):
    spaces = _spaces()
    candidates = torch.tensor([2, 5, 11, 12, 30, 31, 38])
    values, indices = knn_exact_among(spaces, candidates, 3, min_score=0.05, mean_layer=True, chunk_size=chunk_size)
    _assert_matches(values, indices, brute_force(spaces, 3, candidates=candidates, min_score=0.05, mean_layer=True), 3)


@pytest.mark.parametrize("search", [knn_ivf, knn_faiss], ids=["ivf", "faiss"])
@pytest.mark.parametrize("nlist", [0, 1])
def test_approximate_searches_are_exact_without_cells(search, nlist):
    if search is knn_faiss:
        pytest.importorskip("faiss")
    x = _spaces(layers=1)[0]
    values, indices = search(x, 5, nlist=nlist, chunk_size=9)
    _assert_matches(values[None], indices[None], brute_force([x], 5), 5)


@pytest.mark.parametrize("search", [knn_ivf, knn_faiss], ids=["ivf", "faiss"])
def test_approximate_recall_and_never_self(search):
    if search is knn_faiss:
        pytest.importorskip("faiss")
    x = F.normalize(torch.cat(_spaces(n=1000, layers=2, d=16, clusters=20, seed=1), -1), dim=-1)  # (1000, 32)
    _, want = knn_exact(x, 5)
    values, got = search(x, 5, nlist=16, nprobe=5)
    hits = int(((got.unsqueeze(-1) == want[0].unsqueeze(-2)) & (want[0].unsqueeze(-2) >= 0)).sum())
    assert hits / int((want >= 0).sum()) >= 0.9
    assert not bool((got == torch.arange(1000).unsqueeze(1)).any())  # never self
    found = got >= 0
    torch.testing.assert_close(values[found], (x[got.clamp_min(0)] @ x.unsqueeze(-1)).squeeze(-1)[found])  # exact
    assert bool((values[:, :-1] >= values[:, 1:]).all())  # best first


@pytest.mark.parametrize("search", [knn_ivf, knn_faiss], ids=["ivf", "faiss"])
def test_gathered_rows_equal_the_tensor(search):
    """A function gathering the rows on demand gives exactly what the tensor gives."""
    if search is knn_faiss:
        pytest.importorskip("faiss")
    x = F.normalize(torch.randn(300, 12, generator=torch.Generator().manual_seed(3)), dim=-1)
    calls = []

    def gather(rows):
        calls.append(len(rows))
        return x[rows]

    direct = search(x, 4, nlist=6, nprobe=2, seed=1)
    lazy = search(gather, 4, nlist=6, nprobe=2, seed=1, num_rows=300)
    assert calls and torch.equal(direct[0], lazy[0]) and torch.equal(direct[1], lazy[1])
    with pytest.raises(ValueError, match="num_rows"):
        search(gather, 4, nlist=6)


def test_ivf_gathers_per_cell_beyond_the_copy_budget():
    x = F.normalize(torch.randn(300, 12, generator=torch.Generator().manual_seed(4)), dim=-1)
    held = knn_ivf(x, 4, nlist=6, nprobe=3)
    gathered = knn_ivf(x, 4, nlist=6, nprobe=3, copy_budget_bytes=0)
    assert torch.equal(held[0], gathered[0]) and torch.equal(held[1], gathered[1])


def test_faiss_wide_vectors_are_searched_in_a_projection_and_rescored_exactly(monkeypatch):
    """Points wider than 1024 dims: found in a 384-d projection, scores exact, recall high."""
    pytest.importorskip("faiss")
    from personakit.functional import knn

    bases = []
    original = knn._inner_product_basis
    monkeypatch.setattr(knn, "_inner_product_basis", lambda x, dim: bases.append(original(x, dim)) or bases[-1])
    x = torch.cat(_spaces(n=1200, layers=4, d=300, clusters=20, seed=2), -1)  # (1200, 1200)
    _, want = knn_exact(x, 5)
    values, got = knn_faiss(x, 5, nlist=16, nprobe=6)
    hits = int(((got.unsqueeze(-1) == want[0].unsqueeze(-2)) & (want[0].unsqueeze(-2) >= 0)).sum())
    assert hits / int((want >= 0).sum()) >= 0.9
    for u in range(0, 1200, 97):
        assert u not in got[u].tolist()
        torch.testing.assert_close(values[u], x[got[u]] @ x[u], atol=1e-5, rtol=1e-5)
    assert len(bases) == 1 and bases[0].shape == (1200, 384)
    torch.testing.assert_close(bases[0].T @ bases[0], torch.eye(384), atol=1e-4, rtol=0)


@pytest.mark.parametrize("search", ["exact", "ivf", "faiss"])
def test_ties_keep_the_tied_scores_and_never_self(search):
    """Duplicated points: every neighbour's score is the brute-force k-th best, and a point is not its copy's self."""
    if search == "faiss":
        pytest.importorskip("faiss")
    base = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(5)), dim=-1)
    x = base.repeat(4, 1)  # (24, 4): each point has 3 exact copies
    if search == "exact":
        values, indices = knn_exact(x, 5)
        values, indices = values[0], indices[0]
    else:
        values, indices = (knn_ivf if search == "ivf" else knn_faiss)(x, 5, nlist=0)
    ref = brute_force([x], 5)[0]
    for u, expected in enumerate(ref):
        torch.testing.assert_close(values[u], torch.tensor([s for s, _ in expected]), atol=1e-5, rtol=0)
        assert u not in indices[u].tolist()
        assert indices[u, :3].remainder(6).eq(u % 6).all()  # the three copies first (score 1)
        torch.testing.assert_close(values[u], (x[indices[u]] @ x[u]), atol=1e-5, rtol=0)


def test_fewer_points_than_k_are_padded():
    x = F.normalize(torch.randn(3, 4), dim=-1)
    for values, indices in (knn_exact(x, 5), (knn_ivf(x, 5, nlist=0)[0][None], knn_ivf(x, 5, nlist=0)[1][None])):
        assert indices.shape == (1, 3, 5)
        assert (indices[0, :, :2] >= 0).all() and indices[0, :, 2:].eq(-1).all()
        assert values[0, :, 2:].eq(float("-inf")).all()
    values, indices = knn_exact(x[:1], 2)
    assert indices.eq(-1).all() and values.eq(float("-inf")).all()  # one point: no neighbour


def test_merge_is_the_top_k_of_the_union():
    g = torch.Generator().manual_seed(6)
    va, vb = torch.rand(4, 3, generator=g).sort(-1, descending=True).values, torch.rand(4, 2, generator=g)
    ia, ib = torch.arange(12).view(4, 3), torch.arange(100, 108).view(4, 2)
    va[0, 2], ia[0, 2] = float("-inf"), -1  # an empty slot stays empty
    values, indices = knn_merge(va, ia, vb, ib, 4)
    for row in range(4):
        pairs = sorted(((float(v), int(i)) for v, i in zip(torch.cat([va[row], vb[row]]), torch.cat([ia[row], ib[row]]))
                        if i >= 0), reverse=True)[:4]
        assert indices[row].tolist()[: len(pairs)] == [i for _, i in pairs]
        torch.testing.assert_close(values[row, : len(pairs)], torch.tensor([v for v, _ in pairs]))
    assert knn_merge(va, ia, vb, ib, 6)[1].shape == (4, 6)  # padded to k


def test_threshold_drops_and_pads():
    values, indices = knn_threshold(torch.tensor([[0.9, 0.5, 0.1]]), torch.tensor([[4, 2, 7]]), 4, 0.5)
    assert indices.tolist() == [[4, 2, -1, -1]]
    assert values[0, 2:].eq(float("-inf")).all()


def test_chunk_size_default_and_errors():
    assert knn_chunk_size(10) == 4096 and knn_chunk_size(2**20) == 32 and knn_chunk_size(5, 3) == 3
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        knn_chunk_size(5, 0)
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        knn_exact(x, 0)
    with pytest.raises(ValueError, match="same n points"):
        knn_exact([x, torch.randn(4, 3)], 2)
    with pytest.raises(ValueError, match="queries must be indices"):
        knn_exact(x, 2, queries=[5])
    with pytest.raises(ValueError, match="one per output layer"):
        knn_exact([x, x], 2, min_score=[0.1, 0.2], mean_layer=True)  # three output layers
    with pytest.raises(ValueError, match="nprobe"):
        knn_ivf(x, 2, nlist=2, nprobe=0)


def test_faiss_missing_names_the_extra(monkeypatch):
    import personakit._imports as imports

    monkeypatch.setattr(imports, "is_available", lambda module: module != "faiss")
    with pytest.raises(ImportError, match=r"knn_faiss needs the optional package 'faiss'.*personakit\[ann\]"):
        knn_faiss(torch.randn(5, 3), 2, nlist=0)


def test_docstring_examples_run():
    import doctest

    from personakit.functional import knn

    result = doctest.testmod(knn, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 8


def test_reexported_from_functional():
    import personakit.functional as functional

    assert functional.knn_exact is knn_exact and "knn_faiss" in functional.__all__ and "knn_ivf" in dir(functional)
    with pytest.raises(AttributeError):
        functional.knn_nope  # noqa: B018
