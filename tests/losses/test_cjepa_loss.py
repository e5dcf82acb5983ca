"""CJEPALoss (GRAG §3.4) and the thin loss base class."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from personakit.config import ConfigError
from personakit.functional.losses import cjepa_loss
from personakit.losses import BaseLoss, CJEPALoss, CJEPALossConfig, CJEPALossOutput, LossOutput
from personakit.testing import assert_config_matches


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_hand_made_values():
    loss = CJEPALoss()
    c = torch.tensor([[1.0, 0.0]])
    assert loss(c, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item() == -1.0  # best case: C = P, C ⟂ G
    assert loss(c, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item() == 1.0  # C = G, C ⟂ P
    assert loss(c, torch.tensor([[-1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == 2.0  # worst case
    assert loss(c, torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-1 / math.sqrt(2))


def test_against_python_loop_and_functional():
    g = torch.Generator().manual_seed(0)
    c, p, n = (torch.randn(5, 6, generator=g) for _ in range(3))
    expected = sum(_cos(c[i].tolist(), n[i].tolist()) - _cos(c[i].tolist(), p[i].tolist()) for i in range(5)) / 5
    assert CJEPALoss()(c, p, n).item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(CJEPALoss()(c, p, n), cjepa_loss(c, p, n))


def test_forward_with_parts():
    g = torch.Generator().manual_seed(1)
    c, p, n = (torch.randn(4, 6, generator=g) for _ in range(3))
    out = CJEPALoss().forward_with_parts(c, p, n)
    assert isinstance(out, CJEPALossOutput) and isinstance(out, LossOutput)
    torch.testing.assert_close(out.cos_personalised, F.cosine_similarity(c, p).mean())
    torch.testing.assert_close(out.cos_generic, F.cosine_similarity(c, n).mean())
    torch.testing.assert_close(out.loss, out.cos_generic - out.cos_personalised)
    logged = out.to_dict()
    assert set(logged) == {"loss", "cos_personalised", "cos_generic"}
    assert all(isinstance(v, float) for v in logged.values())
    per_sample = CJEPALoss(reduction="none").forward_with_parts(c, p, n)
    assert per_sample.loss.shape == per_sample.cos_generic.shape == (4,)
    assert CJEPALoss(reduction="sum")(c, p, n).item() == pytest.approx(per_sample.loss.sum().item(), abs=1e-6)


def test_zero_when_personalised_equals_generic():
    g = torch.Generator().manual_seed(2)
    c, p = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    assert CJEPALoss()(c, p, p.clone()).item() == 0.0


def test_gradient_step_pulls_to_personalised_and_pushes_from_generic():
    g = torch.Generator().manual_seed(3)
    c = torch.randn(6, 8, generator=g, requires_grad=True)
    p, n = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    CJEPALoss()(c, p, n).backward()
    with torch.no_grad():
        stepped = c - 0.05 * c.grad
        assert (F.cosine_similarity(stepped, p) > F.cosine_similarity(c, p)).all()
        assert (F.cosine_similarity(stepped, n) < F.cosine_similarity(c, n)).all()


def test_sign_is_opposite_of_printed_equation():
    """The paper prints L = cos(C,P) - cos(C,G); we implement its negation (the stated intent)."""
    g = torch.Generator().manual_seed(4)
    c, p, n = (torch.randn(4, 8, generator=g) for _ in range(3))
    printed = (F.cosine_similarity(c, p) - F.cosine_similarity(c, n)).mean()
    torch.testing.assert_close(CJEPALoss()(c, p, n), -printed)


def test_errors_and_repr():
    with pytest.raises(ValueError, match="same shape"):
        CJEPALoss()(torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reduction"):
        CJEPALoss(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        CJEPALoss(eps=0.0)
    assert repr(CJEPALoss()) == "CJEPALoss(reduction='mean', eps=1e-08)"


def test_config_matches_and_builds():
    assert_config_matches(CJEPALossConfig)
    cfg = CJEPALossConfig(reduction="sum")
    loss = cfg.build()
    assert isinstance(loss, CJEPALoss) and loss.reduction == "sum"
    assert CJEPALossConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="reduction"):
        CJEPALossConfig.from_dict({"reduction": "max"})
    with pytest.raises(ConfigError, match="eps"):
        CJEPALossConfig.from_dict({"eps": -1})


def test_base_loss_requires_a_loss_term():
    class Bad(BaseLoss):
        def compute_parts(self, x):
            return {"other": x}

    class Good(BaseLoss):
        def compute_parts(self, x):
            return {"loss": x * 2}

    with pytest.raises(KeyError, match="'loss' term"):
        Bad()(torch.ones(2))
    assert Good()(torch.tensor([1.0, 3.0])).item() == 4.0
    assert Good(reduction="none")(torch.tensor([1.0, 3.0])).tolist() == [2.0, 6.0]
    with pytest.raises(NotImplementedError):
        BaseLoss()(torch.ones(1))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_raises_naming_the_loss_and_the_shape(reduction):
    empty = torch.zeros(0, 4)
    with pytest.raises(ValueError, match=r"CJEPALoss: empty batch .*\(0, 4\)"):
        CJEPALoss(reduction=reduction)(empty, empty, empty)
    with pytest.raises(ValueError, match=r"CJEPALoss: empty batch"):
        CJEPALoss(reduction=reduction).forward_with_parts(empty, empty, empty)
    with pytest.raises(ValueError, match=r"cjepa_loss: empty batch .*\(0, 4\)"):
        cjepa_loss(empty, empty, empty, reduction=reduction)
