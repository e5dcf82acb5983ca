"""Multiplex graph construction: dense reference, chunking, backends, incremental update, PyG export.

The k-NN searches themselves (recall, ties, the faiss projection) are tested in
``tests/functional/test_knn.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from personakit.graph import DEFAULT_OMEGA, MultiplexGraph, build_multiplex_graph, update_multiplex_graph

N, M, D = 60, 3, 8


def _data(n: int = N, m: int = M, d: int = D, seed: int = 0, clusters: int = 4):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(clusters, m, d, generator=g)
    e = centers[torch.randint(clusters, (n,), generator=g)] + 0.7 * torch.randn(n, m, d, generator=g)
    r = torch.randint(0, 4, (n, m), generator=g)
    r[: n // 2] = torch.randint(2, 4, (n // 2, m), generator=g)  # enough strong facets for edges
    return F.normalize(e, dim=-1), r


def dense_reference(e, r, top_k=5, threshold=0.35, omega=DEFAULT_OMEGA):
    """Brute force with Python loops over users: [M + 1, N, K] neighbour lists (best first)."""
    n, m, _ = e.shape
    w = torch.tensor(omega)[r]
    out = []
    for layer in range(m + 1):
        rows = []
        for u in range(n):
            scores = []
            for v in range(n):
                if v == u:
                    continue
                if layer < m:
                    s = float(w[u, layer] * w[v, layer] * (e[u, layer] @ e[v, layer]))
                else:
                    s = sum(float(w[u, f] * w[v, f] * (e[u, f] @ e[v, f])) for f in range(m)) / m
                if s >= threshold:
                    scores.append((s, v))
            scores.sort(reverse=True)
            rows.append(scores[:top_k])
        out.append(rows)
    return out


def _assert_matches(graph: MultiplexGraph, ref, atol=1e-5):
    for layer, rows in enumerate(ref):
        for u, expected in enumerate(rows):
            idx, score = graph.neighbors(u, layer if layer < graph.num_facets else None)
            assert idx.tolist() == [v for _, v in expected], (layer, u)
            torch.testing.assert_close(score, torch.tensor([s for s, _ in expected], dtype=torch.float32),
                                       atol=atol, rtol=0)


@pytest.fixture(scope="module")
def data():
    e, r = _data()
    return e, r, dense_reference(e, r, threshold=0.2)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
def test_exact_equals_dense_reference_for_any_chunk(data, chunk_size):
    e, r, ref = data
    graph = build_multiplex_graph(e, r, threshold=0.2, chunk_size=chunk_size)
    _assert_matches(graph, ref)
    assert graph.neighbor_index.shape == (M + 1, N, 5)
    assert any(len(row) for rows in ref for row in rows)  # the test is not vacuous
    assert any(len(row) < 5 for rows in ref for row in rows)  # ... and the threshold bites


@pytest.mark.parametrize("backend", ["ivf", "faiss"])
def test_approximate_backends_are_exact_without_cells(data, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    e, r, ref = data
    _assert_matches(build_multiplex_graph(e, r, threshold=0.2, backend=backend, nlist=0), ref)


def test_faiss_backend_names_the_extra_when_missing(monkeypatch):
    import personakit._imports as imports

    monkeypatch.setattr(imports, "is_available", lambda module: module != "faiss")
    e, r = _data(n=20)
    with pytest.raises(ImportError, match=r"personakit\[ann\].*backend='ivf'"):
        build_multiplex_graph(e, r, backend="faiss")


def test_reliability_weights_and_threshold():
    e = F.normalize(torch.tensor([[[1.0, 0.0]], [[1.0, 0.1]], [[1.0, 0.2]]]), dim=-1)  # (3, 1, 2)
    strong = torch.full((3, 1), 3)
    graph = build_multiplex_graph(e, strong, top_k=2)
    idx, score = graph.neighbors(0, 0)
    assert idx.tolist() == [1, 2]
    assert float(score[0]) == pytest.approx(0.95 * 0.95 * float(e[0, 0] @ e[1, 0]), abs=1e-6)
    weak = strong.clone()
    weak[1] = 1  # 0.25 * 0.95 < 0.35: user 1 loses every edge
    graph = build_multiplex_graph(e, weak, top_k=2)
    assert graph.neighbors(0, "facet_0")[0].tolist() == [2]
    assert graph.neighbors(1)[0].numel() == 0


def test_edge_index_follows_pyg_flow(data):
    e, r, ref = data
    graph = build_multiplex_graph(e, r, threshold=0.2, facet_names=["a", "b", "c"])
    edge_index, edge_weight = graph.edges("b")
    for (src, dst), w in zip(edge_index.T.tolist(), edge_weight.tolist()):
        neigh, score = graph.neighbors(dst, "b")
        assert src in neigh.tolist()
        assert w == pytest.approx(float(score[neigh.tolist().index(src)]))
    assert edge_index.shape[1] == sum(len(row) for row in ref[1])
    assert torch.equal(graph.edge_index, graph.edges(None)[0])
    assert len(graph.facet_edge_index) == len(graph.facet_edge_weight) == 3


def test_to_pyg_types(data):
    pytest.importorskip("torch_geometric")
    from torch_geometric.data import HeteroData

    e, r, _ = data
    graph = build_multiplex_graph(e, r, threshold=0.2, facet_names=["taste", "tone", "values"])
    hetero = graph.to_pyg()
    assert isinstance(hetero, HeteroData)
    assert hetero.node_types == ["user"] and hetero["user"].num_nodes == N
    assert sorted(hetero.edge_types) == sorted(("user", name, "user") for name in ["taste", "tone", "values", "combined"])
    assert torch.equal(hetero["user", "tone", "user"].edge_index, graph.edges("tone")[0])
    assert torch.equal(hetero["user", "combined", "user"].edge_weight, graph.edge_weight)


def test_incremental_update_equals_rebuild():
    e, r = _data(n=80, seed=3)
    graph = build_multiplex_graph(e, r, threshold=0.2)
    e2, r2 = e.clone(), r.clone()
    changed = torch.tensor([0, 5, 41])
    g = torch.Generator().manual_seed(9)
    e2[changed] = F.normalize(torch.randn(3, M, D, generator=g), dim=-1)
    r2[changed] = torch.randint(0, 4, (3, M), generator=g)
    new_e, new_r = _data(n=10, seed=4)  # 10 new users
    e2, r2 = torch.cat([e2, new_e]), torch.cat([r2, new_r])
    for chunk in (None, 3):
        updated = update_multiplex_graph(graph, e2, r2, changed, chunk_size=chunk)
        rebuilt = build_multiplex_graph(e2, r2, threshold=0.2)
        assert torch.equal(updated.neighbor_index, rebuilt.neighbor_index)
        torch.testing.assert_close(updated.neighbor_score, rebuilt.neighbor_score, atol=1e-5, rtol=0)
    assert graph.num_users == 80  # the input graph is left alone


def test_update_that_removes_a_neighbour_recomputes_the_row():
    # users 0..3 on a line; user 1 is everyone's best neighbour, then moves away
    angles = torch.tensor([0.0, 0.05, 0.3, 0.35])
    e = torch.stack([angles.cos(), angles.sin()], -1).unsqueeze(1)  # (4, 1, 2)
    r = torch.full((4, 1), 3)
    graph = build_multiplex_graph(e, r, top_k=1, threshold=0.0)
    assert graph.neighbors(0, 0)[0].tolist() == [1]
    e2 = e.clone()
    e2[1, 0] = torch.tensor([-1.0, 0.0])
    updated = update_multiplex_graph(graph, e2, r, [1])
    rebuilt = build_multiplex_graph(e2, r, top_k=1, threshold=0.0)
    assert torch.equal(updated.neighbor_index, rebuilt.neighbor_index)
    assert updated.neighbors(0, 0)[0].tolist() == [2]


def test_bad_inputs_are_named():
    e, r = _data(n=5)
    with pytest.raises(ValueError, match=r"facet_embeddings\[2, 1\] has norm"):
        bad = e.clone()
        bad[2, 1] *= 2
        build_multiplex_graph(bad, r)
    with pytest.raises(ValueError, match=r"reliability\[3, 0\] = 7"):
        bad_r = r.clone()
        bad_r[3, 0] = 7
        build_multiplex_graph(e, bad_r)
    with pytest.raises(ValueError, match="reliability must be a"):
        build_multiplex_graph(e, r[:, :2])
    with pytest.raises(ValueError, match="backend"):
        build_multiplex_graph(e, r, backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown facet"):
        build_multiplex_graph(e, r).neighbors(0, "nope")


def test_single_user_has_no_edges():
    e, r = _data(n=1)
    graph = build_multiplex_graph(e, r)
    assert graph.edge_index.shape == (2, 0)


def test_import_does_not_load_torch_geometric():
    code = ("import sys, personakit.graph, personakit.modules; import personakit.graph.builder; "
            "assert 'torch_geometric' not in sys.modules, 'imported torch_geometric'")
    subprocess.run([sys.executable, "-c", code], check=True)
