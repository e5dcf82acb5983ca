"""Pure maths of personakit.functional.losses, checked against plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.functional.losses import (
    cjepa_loss,
    cjepa_terms,
    last_token_index,
    last_token_pool,
    masked_mean,
    reduce_loss,
    token_cross_entropy,
)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / max(math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)), 1e-8)


# ---------------------------------------------------------------- masked_mean
def test_masked_mean_against_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [1, 0, 1, 0, 1]])
    out = masked_mean(x, mask, dim=1)
    for b in range(3):
        rows = [x[b, t] for t in range(5) if mask[b, t]]
        torch.testing.assert_close(out[b], sum(rows) / len(rows))
    assert masked_mean(x, mask, dim=1, keepdim=True).shape == (3, 1, 4)
    torch.testing.assert_close(masked_mean(x, None, dim=1), x.mean(1))


def test_masked_mean_ignores_nan_padding_and_empty_rows():
    x = torch.tensor([[[1.0], [float("nan")]], [[float("inf")], [2.0]], [[5.0], [6.0]]])
    mask = torch.tensor([[1, 0], [0, 1], [0, 0]])
    assert masked_mean(x, mask, dim=1).tolist() == [[1.0], [2.0], [0.0]]


# ------------------------------------------------------------- last_token_pool
def test_last_token_pool_right_and_left_padding():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 4]
    assert last_token_index(left).tolist() == [4, 4]
    assert torch.equal(last_token_pool(hidden, right), torch.stack([hidden[0, 2], hidden[1, 4]]))
    assert torch.equal(last_token_pool(hidden, left), hidden[:, 4])
    # boolean masks and holes: the last valid position wins
    holes = torch.tensor([[True, False, True, False, False], [False, False, False, True, False]])
    assert last_token_index(holes).tolist() == [2, 3]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6).filter(any), min_size=1, max_size=4))
def test_last_token_index_against_loop(rows):
    mask = torch.tensor(rows)
    expected = [max(i for i, v in enumerate(row) if v) for row in rows]
    assert last_token_index(mask).tolist() == expected


def test_last_token_pool_errors():
    with pytest.raises(ValueError, match=r"rows \[1\] have no non-padding token"):
        last_token_pool(torch.zeros(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="expected hidden"):
        last_token_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))


def test_last_token_pool_gradient_only_at_the_last_token():
    hidden = torch.randn(2, 4, 3, requires_grad=True)
    last_token_pool(hidden, torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])).sum().backward()
    grad_mask = hidden.grad.abs().sum(-1) > 0
    assert grad_mask.tolist() == [[False, True, False, False], [False, False, False, True]]


# ------------------------------------------------------------------ cjepa_loss
def test_cjepa_loss_hand_made_vectors():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    g = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [4.0, -3.0]])
    # per row: cos(C,G) - cos(C,P) = 0 - 1, -1 - 0, 0 - 1
    assert cjepa_loss(c, p, g, reduction="none").tolist() == [-1.0, -1.0, -1.0]
    assert cjepa_loss(c, p, g).item() == -1.0
    assert cjepa_loss(c, p, g, reduction="sum").item() == -3.0
    # the worst case: C = G and C opposite to P
    assert cjepa_loss(c[:1], -c[:1], c[:1]).item() == 2.0


def test_cjepa_loss_against_python_loop():
    g = torch.Generator().manual_seed(0)
    c, p, n = (torch.randn(6, 5, generator=g) for _ in range(3))
    expected = [_cos(c[i].tolist(), n[i].tolist()) - _cos(c[i].tolist(), p[i].tolist()) for i in range(6)]
    torch.testing.assert_close(cjepa_loss(c, p, n, reduction="none"), torch.tensor(expected))
    assert cjepa_loss(c, p, n).item() == pytest.approx(sum(expected) / 6, abs=1e-6)
    loss, cos_p, cos_g = cjepa_terms(c, p, n)
    torch.testing.assert_close(cos_p, F.cosine_similarity(c, p))
    torch.testing.assert_close(loss, cos_g - cos_p)


def test_cjepa_loss_is_zero_when_p_equals_g():
    g = torch.Generator().manual_seed(1)
    c, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    assert torch.equal(cjepa_loss(c, p, p.clone(), reduction="none"), torch.zeros(4))


def test_cjepa_gradient_step_moves_context_towards_p_and_away_from_g():
    g = torch.Generator().manual_seed(2)
    c = torch.randn(4, 8, generator=g, requires_grad=True)
    p, n = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    cjepa_loss(c, p, n).backward()
    with torch.no_grad():
        c2 = c - 0.05 * c.grad
        assert (F.cosine_similarity(c2, p) > F.cosine_similarity(c, p)).all()
        assert (F.cosine_similarity(c2, n) < F.cosine_similarity(c, n)).all()


def test_cjepa_loss_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        cjepa_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        reduce_loss(torch.zeros(2), "max")  # type: ignore[arg-type]


# ---------------------------------------------------------- token_cross_entropy
def test_token_cross_entropy_against_loop():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 7, generator=g)
    labels = torch.tensor([[1, 2, -100, -100], [-100, 6, 0, 3]])
    terms = [
        -torch.log_softmax(logits[b, t], -1)[labels[b, t]]
        for b in range(2) for t in range(4) if labels[b, t] != -100
    ]
    torch.testing.assert_close(token_cross_entropy(logits, labels), sum(terms) / len(terms))
    torch.testing.assert_close(token_cross_entropy(logits, labels, reduction="sum"), sum(terms))
    per_token = token_cross_entropy(logits, labels, reduction="none")
    assert per_token.shape == (2, 4) and per_token[0, 2] == 0 and per_token[1, 0] == 0
    # same as torch's own mean over non-ignored tokens
    torch.testing.assert_close(token_cross_entropy(logits, labels), F.cross_entropy(logits.transpose(1, 2), labels))


def test_token_cross_entropy_shift_for_causal_lm():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 4, 5, generator=g)
    labels = torch.tensor([[-100, 1, 2, 3]])
    expected = token_cross_entropy(logits[:, :3], labels[:, 1:])
    torch.testing.assert_close(token_cross_entropy(logits, labels, shift=True), expected)


def test_token_cross_entropy_all_ignored_is_zero():
    assert token_cross_entropy(torch.randn(1, 3, 4), torch.full((1, 3), -100)).item() == 0.0


def test_cjepa_empty_batch_raises_instead_of_nan():
    empty = torch.zeros(0, 3)
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(ValueError, match=r"cjepa_loss: empty batch .*\(0, 3\)"):
            cjepa_loss(empty, empty, empty, reduction=reduction)
    with pytest.raises(ValueError, match="empty batch"):
        cjepa_terms(empty, empty, empty)
