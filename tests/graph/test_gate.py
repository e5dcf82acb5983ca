"""MonotoneGate: monotone for any parameters, differentiable, per-facet variant, config."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.graph import MonotoneGate, MonotoneGateConfig
from personakit.testing import assert_config_matches

floats = st.floats(min_value=-30, max_value=30, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(z0=floats, deltas=st.lists(floats, min_size=3, max_size=3))
def test_monotone_for_any_parameters(z0, deltas):
    gate = MonotoneGate(4).double()
    with torch.no_grad():
        gate.z0.fill_(z0)
        gate.raw_deltas.copy_(torch.tensor(deltas, dtype=torch.float64))
    gamma = gate(torch.tensor([0, 1, 2, 3])).detach()
    assert bool((gamma[1:] >= gamma[:-1]).all())
    assert bool(((gamma >= 0) & (gamma <= 1)).all())
    assert float(gamma[0]) == pytest.approx(float(torch.sigmoid(torch.tensor(z0, dtype=torch.float64))))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), levels=st.integers(1, 6))
def test_per_facet_gate_monotone(seed, levels):
    torch.manual_seed(seed)
    gate = MonotoneGate(levels, num_facets=3)
    with torch.no_grad():
        gate.z0.normal_(0, 5)
        gate.raw_deltas.normal_(0, 5)
    table = gate.levels()  # (3, L)
    assert table.shape == (3, levels)
    assert bool((table[:, 1:] >= table[:, :-1]).all())
    r = torch.randint(0, levels, (5, 3))
    out = gate(r)
    assert torch.equal(out, table[torch.arange(3).expand(5, 3), r])


def test_formula_matches_the_paper():
    gate = MonotoneGate(4)
    with torch.no_grad():
        gate.z0.fill_(-0.5)
        gate.raw_deltas.copy_(torch.tensor([0.3, -2.0, 1.0]))
    sp = torch.nn.functional.softplus
    z = [-0.5, -0.5 + sp(torch.tensor(0.3)), -0.5 + sp(torch.tensor(0.3)) + sp(torch.tensor(-2.0)),
         -0.5 + sp(torch.tensor(0.3)) + sp(torch.tensor(-2.0)) + sp(torch.tensor(1.0))]
    torch.testing.assert_close(gate.levels(), torch.sigmoid(torch.tensor(z)))


def test_gradients_reach_every_parameter():
    gate = MonotoneGate(4).double()
    r = torch.tensor([[0, 1], [2, 3], [3, 3]])
    out = gate(r).sum()
    out.backward()
    assert gate.z0.grad is not None and float(gate.z0.grad.abs()) > 0
    assert gate.raw_deltas.grad is not None and bool((gate.raw_deltas.grad.abs() > 0).all())


def test_gradcheck_through_module():
    gate = MonotoneGate(4).double()
    r = torch.tensor([0, 1, 2, 3, 2])

    def f(z0, raw):
        return torch.func.functional_call(gate, {"z0": z0, "raw_deltas": raw}, (r,))

    z0 = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    raw = torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (z0, raw))


def test_rejects_bad_levels():
    gate = MonotoneGate(4)
    with pytest.raises(ValueError, match="0..3"):
        gate(torch.tensor([4]))
    with pytest.raises(ValueError, match="integer"):
        gate(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="last dim"):
        MonotoneGate(4, num_facets=3)(torch.tensor([[0, 1]]))


def test_config_matches_constructor():
    assert_config_matches(MonotoneGateConfig)
    gate = MonotoneGateConfig(num_levels=3).build()
    assert isinstance(gate, MonotoneGate) and gate.levels().shape == (3,)
    assert "num_levels=4" in repr(MonotoneGate())
