"""SelectorKLLoss (RSPG Eq. 7) against a plain Python loop, and its functional maths."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.functional.selector import selection_target, selector_kl
from personakit.losses.selector import SelectorKLLoss, SelectorKLLossConfig, normalize_evals
from personakit.testing import assert_config_matches


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread (and the test machine is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def loop_kl(scores: list[list[float]], evals: list[list[float]], tau: float) -> list[float]:
    """KL(softmax(evals / tau) || softmax(scores)) per row, with plain Python floats."""
    out = []
    for s_row, e_row in zip(scores, evals):
        zt = sum(math.exp(e / tau) for e in e_row)
        zs = sum(math.exp(s) for s in s_row)
        kl = 0.0
        for s, e in zip(s_row, e_row):
            p = math.exp(e / tau) / zt
            q = math.exp(s) / zs
            kl += p * math.log(p / q)
        out.append(kl)
    return out


@pytest.mark.parametrize("tau", [1.0, 0.3, 2.5])
def test_matches_a_plain_loop(tau):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 4, generator=g, dtype=torch.float64)
    evals = torch.rand(5, 4, generator=g, dtype=torch.float64)
    ref = loop_kl(scores.tolist(), evals.tolist(), tau)
    per = SelectorKLLoss(temperature=tau, reduction="none")(scores, evals)
    assert per.tolist() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert SelectorKLLoss(temperature=tau)(scores, evals).item() == pytest.approx(sum(ref) / 5, rel=1e-10)
    assert SelectorKLLoss(temperature=tau, reduction="sum")(scores, evals).item() == pytest.approx(sum(ref), rel=1e-10)
    assert selector_kl(scores, evals, tau).tolist() == pytest.approx(ref, rel=1e-10)


def test_gradient_is_softmax_minus_target_over_batch():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    evals = torch.rand(3, 5, generator=g, dtype=torch.float64)
    SelectorKLLoss(temperature=0.5)(scores, evals).backward()
    expected = (torch.softmax(scores.detach(), -1) - torch.softmax(evals / 0.5, -1)) / 3
    torch.testing.assert_close(scores.grad, expected)


def test_parts_and_zero_when_distributions_coincide():
    evals = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.9, 0.4]], dtype=torch.float64)
    loss = SelectorKLLoss(temperature=0.5, reduction="none")
    out = loss.forward_with_parts(evals / 0.5 + 7.0, evals)  # a constant shift does not change softmax
    torch.testing.assert_close(out.loss, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.cross_entropy - out.target_entropy, out.loss)
    assert out.target_agreement.tolist() == [1.0, 1.0]
    wrong = loss.forward_with_parts(torch.tensor([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64), evals)
    assert wrong.target_agreement.tolist() == [0.0, 1.0]
    assert (wrong.loss > 0).all()
    logged = SelectorKLLoss().forward_with_parts(evals, evals).to_dict()
    assert set(logged) == {"loss", "cross_entropy", "target_entropy", "target_agreement"}


def test_target_and_input_checks():
    t = selection_target(torch.tensor([[1.0, 0.0]]), temperature=1.0)
    torch.testing.assert_close(t, torch.tensor([[math.e / (math.e + 1), 1 / (math.e + 1)]]))
    assert selection_target([[1.0, 1.0, 1.0]]).tolist()[0] == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="same shape"):
        SelectorKLLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        SelectorKLLoss(temperature=0.0)
    with pytest.raises(ValueError, match=r"\[B, R\]"):
        selector_kl(torch.zeros(3), torch.zeros(3))


def test_config_and_repr():
    assert_config_matches(SelectorKLLossConfig)
    loss = SelectorKLLossConfig(temperature=0.2, reduction="sum").build()
    assert isinstance(loss, SelectorKLLoss) and loss.temperature == 0.2 and loss.reduction == "sum"
    assert loss.normalization == "none"  # the paper's target by default
    assert "temperature=0.2" in repr(loss) and "normalization='none'" in repr(loss)
    assert SelectorKLLossConfig(normalization="range").build().normalization == "range"
    with pytest.raises(ValueError, match="normalization"):
        SelectorKLLoss(normalization="zscore")  # type: ignore[arg-type]


def test_range_normalization_hand_values():
    evals = torch.tensor([[0.10, 0.12, 0.11, 0.10],   # ROUGE-sized differences
                          [0.30, 0.30, 0.30, 0.30],   # every retriever ties
                          [1.00, 0.00, 0.50, 0.25]], dtype=torch.float64)
    expected = torch.tensor([[-1.0, 0.0, -0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [0.0, -1.0, -0.5, -0.75]],
                            dtype=torch.float64)
    torch.testing.assert_close(normalize_evals(evals, "range"), expected)
    assert normalize_evals(evals, "none") is evals
    # the loss is the paper's KL with the rescaled EVALs as the target's logits
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 4, generator=g, dtype=torch.float64)
    got = SelectorKLLoss(temperature=0.1, normalization="range", reduction="none")(scores, evals)
    assert got.tolist() == pytest.approx(loop_kl(scores.tolist(), expected.tolist(), 0.1), rel=1e-10)
    # ROUGE 0.10 vs 0.12 at tau 0.1: near-uniform target without it, a sharp one with it
    soft = selection_target(evals[:1], 0.1)[0]
    sharp = selection_target(expected[:1], 0.1)[0]
    assert soft.max() < 0.3 and sharp.max() > 0.99
    assert selection_target(expected[1:2], 0.1)[0].tolist() == pytest.approx([0.25] * 4)  # ties stay uniform


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5), min_size=3, max_size=3), min_size=1, max_size=4),
       st.lists(st.floats(0, 1), min_size=3, max_size=3), st.floats(0.1, 3.0))
def test_kl_is_non_negative_and_permutation_invariant(score_rows, eval_row, tau):
    scores = torch.tensor(score_rows, dtype=torch.float64)
    evals = torch.tensor([eval_row] * len(score_rows), dtype=torch.float64)
    kl = selector_kl(scores, evals, tau)
    assert (kl >= -1e-12).all()
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(selector_kl(scores[:, perm], evals[:, perm], tau), kl)
