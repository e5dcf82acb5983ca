"""Tests of the ROPG losses (personakit.losses.ropg) and their maths (personakit.functional.ropg)."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import personakit.functional.ropg as fropg
import personakit.losses.ropg as lropg
from personakit.functional.ropg import kd_target_distribution, policy_log_probs, ropg_kd_loss, ropg_rl_rewards
from personakit.losses.ropg import ROPGKDLoss, ROPGKDLossConfig, ROPGRLLoss, ROPGRLLossConfig
from personakit.testing import assert_config_matches


def _toy_retriever(seed: int = 0):
    """A tiny differentiable retriever: scores = (W q) . (W d)."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.randn(4, 6, generator=g))
    queries = torch.randn(3, 6, generator=g)
    docs = torch.randn(3, 5, 6, generator=g)
    return proj, queries, docs


def _scores(proj, queries, docs):
    return torch.einsum("bd,bld->bl", proj(queries), proj(docs))  # (B, l)


def test_rl_gradient_equals_reinforce_estimator():
    proj, queries, docs = _toy_retriever()
    evals = torch.tensor([[0.1, 0.9, 0.3, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2, 0.2], [0.7, 0.1, 0.0, 0.4, 0.3]])
    sampled = torch.tensor([1, 3, 4])
    rewards = evals[torch.arange(3), sampled] - evals[:, 0]  # d_b = candidate 0
    tau = 0.5
    scores = _scores(proj, queries, docs)
    scores.retain_grad()
    loss = ROPGRLLoss(temperature=tau)(scores, sampled, evals=evals, baseline_index=0)
    loss.backward()
    # analytic gradient w.r.t. the scores: -(r / tau) (onehot - pi) / B
    pi = F.softmax(scores.detach() / tau, dim=-1)
    onehot = F.one_hot(sampled, 5).to(pi.dtype)
    expected = -(rewards[:, None] / tau) * (onehot - pi) / 3
    torch.testing.assert_close(scores.grad, expected)
    # and w.r.t. the parameters: -(1/B) sum_b r_b grad log pi(d_b|x_b)
    grad = proj.weight.grad.clone()
    proj.weight.grad = None
    total = torch.zeros_like(grad)
    for b in range(3):
        logp = F.log_softmax(_scores(proj, queries, docs)[b] / tau, dim=-1)[sampled[b]]
        (g,) = torch.autograd.grad(logp, proj.weight)
        total += -rewards[b] * g / 3
    torch.testing.assert_close(grad, total)


def test_rl_rewards_paths_agree_and_parts():
    scores = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    evals = torch.tensor([[0.2, 1.0, 0.0], [0.5, 0.0, 1.0]])
    sampled = torch.tensor([1, 2])
    rewards = ropg_rl_rewards(evals, sampled)
    torch.testing.assert_close(rewards, torch.tensor([0.8, 0.5]))
    base = torch.tensor([2, 1])
    torch.testing.assert_close(ropg_rl_rewards(evals, sampled, base), torch.tensor([1.0, 1.0]))
    loss = ROPGRLLoss(reduction="none")
    a = loss.forward_with_parts(scores, sampled, rewards)
    b = loss.forward_with_parts(scores, sampled, evals=evals)
    torch.testing.assert_close(a.loss, b.loss)
    logp = F.log_softmax(scores, -1)[torch.arange(2), sampled]
    torch.testing.assert_close(a.loss, -rewards * logp)
    torch.testing.assert_close(a.log_prob, logp)
    p = F.softmax(scores, -1)
    torch.testing.assert_close(a.entropy, -(p * p.log()).sum(-1))
    assert ROPGRLLoss(reduction="sum")(scores, sampled, rewards).item() == pytest.approx(a.loss.sum().item())
    assert ROPGRLLoss()(scores, sampled, rewards).item() == pytest.approx(a.loss.mean().item())
    assert set(ROPGRLLoss().forward_with_parts(scores, sampled, rewards).to_dict()) == {
        "loss", "reward", "log_prob", "entropy"}


def test_rl_reward_is_not_differentiated():
    scores = torch.zeros(1, 2, requires_grad=True)
    rewards = torch.tensor([2.0], requires_grad=True)
    ROPGRLLoss()(scores, torch.tensor([0]), rewards).backward()
    assert rewards.grad is None
    torch.testing.assert_close(scores.grad, torch.tensor([[-1.0, 1.0]]))  # -2 (onehot - 0.5)


def test_rl_mask_equals_truncated_row_and_rejects_padding():
    scores = torch.tensor([[0.3, -0.2, 7.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    out = ROPGRLLoss()(scores, torch.tensor([1]), torch.tensor([0.5]), mask=mask)
    ref = ROPGRLLoss()(scores[:, :2], torch.tensor([1]), torch.tensor([0.5]))
    torch.testing.assert_close(out, ref)
    out.backward()
    assert scores.grad[0, 2].item() == 0.0 and torch.isfinite(scores.grad).all()
    with pytest.raises(ValueError, match="masked"):
        ROPGRLLoss()(scores, torch.tensor([2]), torch.tensor([0.5]), mask=mask)
    with pytest.raises(ValueError, match="exactly one"):
        ROPGRLLoss()(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match="exactly one"):
        ROPGRLLoss()(scores, torch.tensor([0]), torch.tensor([1.0]), evals=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ROPGRLLoss()(scores, torch.tensor([3]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="no candidate"):
        policy_log_probs(scores, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        ROPGRLLoss(temperature=0.0)


def _kl_by_hand(scores, evals, tau=1.0, tau_t=1.0):
    out = []
    for s_row, e_row in zip(scores.tolist(), evals.tolist()):
        zs = sum(math.exp(s / tau) for s in s_row)
        ze = sum(math.exp(e / tau_t) for e in e_row)
        kl = 0.0
        for s, e in zip(s_row, e_row):
            pi = math.exp(s / tau) / zs
            pt = math.exp(e / tau_t) / ze
            kl += pt * math.log(pt / pi)
        out.append(kl)
    return out


def test_kd_equals_hand_computed_kl():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 6, generator=g, dtype=torch.float64)
    evals = torch.rand(4, 6, generator=g, dtype=torch.float64)
    for tau, tau_t in ((1.0, 1.0), (0.5, 0.1), (2.0, 0.3)):
        per = ROPGKDLoss(reduction="none", temperature=tau, target_temperature=tau_t)(scores, evals)
        torch.testing.assert_close(per, torch.tensor(_kl_by_hand(scores, evals, tau, tau_t), dtype=torch.float64))
        mean = ROPGKDLoss(temperature=tau, target_temperature=tau_t)(scores, evals)
        assert mean.item() == pytest.approx(sum(_kl_by_hand(scores, evals, tau, tau_t)) / 4, rel=1e-10)


def test_kd_is_zero_when_scores_are_proportional_to_evals():
    evals = torch.tensor([[0.0, 0.4, 1.0, 0.2], [0.3, 0.3, 0.9, 0.1]], dtype=torch.float64)
    c, tau_t = 7.0, 0.2
    scores = (c * evals + torch.tensor([[3.0], [-1.0]], dtype=torch.float64)).requires_grad_()  # shift per row
    loss = ROPGKDLoss(temperature=c * tau_t, target_temperature=tau_t)(scores, evals)
    assert abs(loss.item()) < 1e-12
    loss.backward()
    assert scores.grad.abs().max().item() < 1e-12
    # mismatched temperatures are not zero
    assert ROPGKDLoss(temperature=1.0, target_temperature=tau_t)(scores, evals).item() > 1e-3


def test_kd_matches_torch_kl_div_and_mask():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 5, generator=g)
    evals = torch.rand(3, 5, generator=g)
    ref = F.kl_div(F.log_softmax(scores, -1), F.softmax(evals / 0.5, -1), reduction="batchmean")
    torch.testing.assert_close(ROPGKDLoss(target_temperature=0.5)(scores, evals), ref)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    s = scores.clone().requires_grad_()
    per = ROPGKDLoss(reduction="none")(s, evals, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        torch.testing.assert_close(per[b], ROPGKDLoss()(scores[b:b + 1, :n], evals[b:b + 1, :n]))
    assert per[2].item() == 0.0  # one candidate: nothing to learn
    per.sum().backward()
    assert torch.isfinite(s.grad).all() and s.grad[~mask].abs().max().item() == 0.0
    p_t = kd_target_distribution(evals, mask)
    assert p_t[~mask].abs().max().item() == 0.0
    torch.testing.assert_close(p_t.sum(-1), torch.ones(3))
    out = ROPGKDLoss().forward_with_parts(scores, evals, mask)
    assert set(out.to_dict()) == {"loss", "entropy", "target_entropy"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(0, 1)), min_size=1, max_size=8),
       st.floats(0.05, 5.0), st.floats(0.05, 5.0))
def test_kd_is_nonnegative_and_matches_loop(pairs, tau, tau_t):
    scores = torch.tensor([[p[0] for p in pairs]], dtype=torch.float64)
    evals = torch.tensor([[p[1] for p in pairs]], dtype=torch.float64)
    value = ropg_kd_loss(scores, evals, temperature=tau, target_temperature=tau_t)[0].item()
    assert value >= -1e-12
    assert value == pytest.approx(_kl_by_hand(scores, evals, tau, tau_t)[0], abs=1e-9)


def test_configs_match_and_build():
    assert_config_matches(ROPGRLLossConfig)
    assert_config_matches(ROPGKDLossConfig)
    loss = ROPGKDLossConfig(target_temperature=0.1).build()
    assert isinstance(loss, ROPGKDLoss) and loss.target_temperature == 0.1
    assert "target_temperature=0.1" in repr(loss)
    assert isinstance(ROPGRLLossConfig.from_yaml("temperature: 0.05\n").build(), ROPGRLLoss)
    with pytest.raises(Exception, match="temperature"):
        ROPGKDLossConfig(temperature=0)


def test_doctests():
    assert doctest.testmod(fropg).failed == 0
    assert doctest.testmod(lropg).failed == 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_raises_naming_the_loss_and_the_shape(reduction):
    scores, evals = torch.zeros(0, 3), torch.zeros(0, 3)
    sampled, rewards = torch.zeros(0, dtype=torch.long), torch.zeros(0)
    with pytest.raises(ValueError, match=r"ROPGRLLoss: empty batch .*\(0, 3\)"):
        ROPGRLLoss(reduction=reduction)(scores, sampled, rewards)
    with pytest.raises(ValueError, match=r"ROPGRLLoss: empty batch"):
        ROPGRLLoss(reduction=reduction)(scores, sampled, evals=evals)
    with pytest.raises(ValueError, match=r"ROPGKDLoss: empty batch .*\(0, 3\)"):
        ROPGKDLoss(reduction=reduction)(scores, evals)
    with pytest.raises(ValueError, match=r"ROPGKDLoss: empty batch"):
        ROPGKDLoss(reduction=reduction).forward_with_parts(scores, evals)
    with pytest.raises(ValueError, match=r"ropg_rl_loss: empty batch"):
        fropg.ropg_rl_loss(scores, sampled, rewards)
    with pytest.raises(ValueError, match=r"ropg_kd_loss: empty batch"):
        ropg_kd_loss(scores, evals)


def test_no_candidates_raises_naming_the_shape():
    scores = torch.zeros(2, 0)
    with pytest.raises(ValueError, match=r"ROPGKDLoss: .*no candidates.*\(2, 0\)"):
        ROPGKDLoss()(scores, torch.zeros(2, 0))
    with pytest.raises(ValueError, match=r"ROPGRLLoss: .*no candidates.*\(2, 0\)"):
        ROPGRLLoss()(scores, torch.zeros(2, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match=r"no candidates.*\(2, 0\)"):
        policy_log_probs(scores)
