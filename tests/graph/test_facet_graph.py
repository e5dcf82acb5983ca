"""FacetGraph: against a hand-written loop on 4 users, the gate's two extremes, shapes, config, speed path."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")

from personakit.graph import FacetGraph, FacetGraphConfig, MonotoneGate, MonotoneGateConfig  # noqa: E402
from personakit.testing import assert_config_matches  # noqa: E402

N, M, D, DOUT = 4, 3, 6, 4
# neighbours: 0 <- {1, 2}, 1 <- {0}, 2 <- {0, 1, 3}, 3 has none
EDGES = torch.tensor([[1, 2, 0, 0, 1, 3], [0, 0, 1, 2, 2, 2]])
WEIGHTS = torch.tensor([0.5, 1.5, 2.0, 1.0, 0.0, 3.0])


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, M, D, generator=g), torch.randint(0, 4, (N, M), generator=g)


def loop_reference(layer: FacetGraph, x, reliability, edges, weights=None):
    """Eq. 10-12 with Python loops over users and facets."""
    gamma_table = layer.gate.levels()
    outs = []
    for u in range(N):
        neigh = [(int(s), 1.0 if weights is None else float(w))
                 for s, t, w in zip(edges[0], edges[1], weights if weights is not None else [None] * edges.shape[1])
                 if int(t) == u]
        facets = []
        for m in range(M):
            total = sum(w for _, w in neigh)
            mean = x[u, m] if total == 0 else sum(w * x[v, m] for v, w in neigh) / total
            g = gamma_table[int(reliability[u, m])]
            facets.append(torch.relu(layer.lin(g * x[u, m] + (1 - g) * mean)))
        h = torch.stack(facets).unsqueeze(0)  # (1, M, D')
        attended, _ = layer.attn(h, h, h)
        outs.append((h + attended).reshape(-1))
    return torch.stack(outs)


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_python_loop(weighted):
    torch.manual_seed(0)
    layer = FacetGraph(D, DOUT, M, num_heads=2).eval()
    with torch.no_grad():
        layer.gate.raw_deltas.copy_(torch.tensor([0.3, -1.0, 2.0]))
    x, r = _inputs()
    w = WEIGHTS if weighted else None
    out = layer(x, r, EDGES, w)
    assert out.shape == (N, M * DOUT)
    torch.testing.assert_close(out, loop_reference(layer, x, r, EDGES, w), atol=1e-5, rtol=1e-5)


def test_gamma_one_keeps_own_embedding_and_zero_takes_neighbour_mean():
    layer = FacetGraph(D, DOUT, M)
    x, _ = _inputs(1)
    mean = layer.neighbor_mean(x, EDGES)
    assert torch.equal(layer.mix(x, torch.ones(N, M), mean), x)
    torch.testing.assert_close(layer.mix(x, torch.zeros(N, M), mean), mean)
    torch.testing.assert_close(mean[0], (x[1] + x[2]) / 2)
    torch.testing.assert_close(mean[2], (x[0] + x[1] + x[3]) / 3)
    assert torch.equal(mean[3], x[3])  # no neighbour: own embedding
    weighted = layer.neighbor_mean(x, EDGES, WEIGHTS)
    torch.testing.assert_close(weighted[0], (0.5 * x[1] + 1.5 * x[2]) / 2.0)
    torch.testing.assert_close(weighted[2], (1.0 * x[0] + 0.0 * x[1] + 3.0 * x[3]) / 4.0)


def test_gate_extremes_through_the_layer():
    """A saturated gate makes the pre-projection input the own embedding (strong) or the mean (none)."""
    layer = FacetGraph(D, DOUT, M)
    with torch.no_grad():
        layer.gate.z0.fill_(-60.0)
        layer.gate.raw_deltas.copy_(torch.tensor([0.0, 0.0, 200.0]))  # gamma ~ (0, 0, 0, 1)
    x, _ = _inputs(2)
    mean = layer.neighbor_mean(x, EDGES)
    torch.testing.assert_close(layer.gated_input(x, torch.full((N, M), 3), EDGES), x)
    torch.testing.assert_close(layer.gated_input(x, torch.zeros(N, M, dtype=torch.long), EDGES), mean)


def test_gradients_flow_to_inputs_gate_and_weights():
    layer = FacetGraph(D, DOUT, M, num_heads=2, dropout=0.1).train()
    x, r = _inputs(3)
    x.requires_grad_(True)
    layer(x, r, EDGES, WEIGHTS).pow(2).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert layer.gate.z0.grad is not None and float(layer.gate.z0.grad.abs()) > 0
    assert layer.lin.weight.grad is not None


def test_without_attention_and_per_facet_gate():
    gate = MonotoneGate(4, num_facets=M)
    layer = FacetGraph(D, DOUT, M, gate=gate, attention=False, activation="identity")
    x, r = _inputs(4)
    out = layer(x, r, EDGES).view(N, M, DOUT)
    expected = layer.lin(layer.gated_input(x, r, EDGES))
    torch.testing.assert_close(out, expected)


def test_no_edges_and_bad_inputs():
    layer = FacetGraph(D, DOUT, M)
    x, r = _inputs(5)
    empty = torch.zeros(2, 0, dtype=torch.long)
    torch.testing.assert_close(layer.neighbor_mean(x, empty), x)
    assert layer(x, r, empty).shape == (N, M * DOUT)
    with pytest.raises(ValueError, match=r"x must be \[N, 3, 6\]"):
        layer(x[:, :2], r[:, :2], EDGES)
    with pytest.raises(ValueError, match="has 4 nodes"):
        layer(x, r, torch.tensor([[0], [9]]))
    with pytest.raises(ValueError, match="non-negative"):
        layer(x, r, EDGES, -WEIGHTS)
    with pytest.raises(ValueError, match="must divide"):
        FacetGraph(D, 5, M, num_heads=2)


def test_works_with_a_multiplex_graph():
    from personakit.graph import build_multiplex_graph

    x = torch.nn.functional.normalize(torch.randn(30, M, D), dim=-1)
    r = torch.full((30, M), 3)
    graph = build_multiplex_graph(x, r, top_k=3, threshold=0.0)
    out = FacetGraph(D, DOUT, M)(x, r, graph.edge_index, graph.edge_weight.clamp_min(0))
    assert out.shape == (30, M * DOUT) and bool(torch.isfinite(out).all())


def test_config_matches_constructor():
    assert_config_matches(FacetGraphConfig)
    layer = FacetGraphConfig(in_dim=D, out_dim=DOUT, num_facets=M, num_heads=2,
                             gate=MonotoneGateConfig(num_facets=M)).build()
    assert isinstance(layer, FacetGraph) and layer.gate.num_facets == M
    assert "num_facets=3" in repr(layer)
    with pytest.raises(ValueError):
        FacetGraphConfig(in_dim=D, out_dim=5, num_facets=M, num_heads=2)


def test_no_grad_forward_in_row_blocks_equals_the_whole():
    """Without grad, large inputs run the per-user update in row blocks; the result is the same."""
    torch.manual_seed(0)
    layer = FacetGraph(D, DOUT, M, num_heads=2).eval()
    x, r = _inputs(3)
    whole = layer(x, r, EDGES, WEIGHTS)  # grad enabled: one block
    layer.ROW_BLOCK = 3  # 4 users -> blocks of 3 and 1
    with torch.no_grad():
        blocks = layer(x, r, EDGES, WEIGHTS)
    torch.testing.assert_close(blocks, whole.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(blocks, loop_reference(layer, x, r, EDGES, WEIGHTS).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("per_facet_gate", [False, True])
def test_zero_users_give_an_empty_output(grad, per_facet_gate):
    gate = MonotoneGate(4, num_facets=M) if per_facet_gate else None
    layer = FacetGraph(D, DOUT, M, num_heads=2, gate=gate)
    x = torch.zeros(0, M, D, requires_grad=grad)
    r = torch.zeros(0, M, dtype=torch.long)
    no_edges = torch.zeros(2, 0, dtype=torch.long)
    with torch.set_grad_enabled(grad):
        out = layer(x, r, no_edges, torch.zeros(0))
        assert out.shape == (0, M * DOUT) and out.dtype == x.dtype
        assert layer(x, r, no_edges).shape == (0, M * DOUT)
        assert layer.neighbor_mean(x, no_edges).shape == (0, M, D)
        assert layer.gated_input(x, r, no_edges).shape == (0, M, D)
    if grad:
        out.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape
    with pytest.raises(ValueError, match="has 0 nodes"):
        layer(x, r, torch.tensor([[0], [0]]))


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_edge_weight_raises_naming_the_field(bad):
    layer = FacetGraph(D, DOUT, M)
    x, r = _inputs(6)
    weights = WEIGHTS.clone()
    weights[3] = bad
    with pytest.raises(ValueError, match=r"edge_weight.*finite.*\[3\]"):
        layer(x, r, EDGES, weights)
    with pytest.raises(ValueError, match="edge_weight"):
        layer.neighbor_mean(x, EDGES, weights)


def test_edge_weights_that_overflow_the_dtype_raise_naming_the_field():
    layer = FacetGraph(D, DOUT, M)
    x, r = _inputs(7)
    huge = torch.tensor([1e300, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # inf once cast to float32
    with pytest.raises(ValueError, match=r"edge_weight must be finite in torch.float32.*\[0\]"):
        layer(x, r, EDGES, huge)
    big = torch.full((6,), 3e38)  # finite, but the two edges into node 0 sum to inf
    with pytest.raises(ValueError, match="edge_weight of the edges into node 0 sum to inf"):
        layer(x, r, EDGES, big)
    torch.testing.assert_close(layer(x, r, EDGES, WEIGHTS * 1e30), layer(x, r, EDGES, WEIGHTS))  # only ratios count
