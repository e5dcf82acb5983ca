"""info_nce and questioner_masks against plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from personakit.functional.contrastive import info_nce, questioner_masks


def _loop_info_nce(z, c, pos, neg, tau):
    z = torch.nn.functional.normalize(z.double(), dim=-1)
    c = torch.nn.functional.normalize(c.double(), dim=-1)
    out, valid = [], []
    for i in range(z.size(0)):
        ps = [j for j in range(c.size(0)) if pos[i, j]]
        ns = [j for j in range(c.size(0)) if neg[i, j]]
        if not ps or not ns:
            out.append(0.0)
            valid.append(False)
            continue
        total = 0.0
        for p in ps:
            sp = math.exp(float(z[i] @ c[p]) / tau)
            sn = sum(math.exp(float(z[i] @ c[n]) / tau) for n in ns)
            total += -math.log(sp / (sp + sn))
        out.append(total / len(ps))
        valid.append(True)
    return out, valid


def _loop_masks(q, k):
    n = len(q)
    pos = [[q[i] == q[j] and i != j for j in range(n)] for i in range(n)]
    neg = [[q[i] != q[j] and (k is None or k[i] == k[j]) for j in range(n)] for i in range(n)]
    return pos, neg


@pytest.mark.parametrize("use_clusters", [True, False])
def test_masks_against_loop(use_clusters):
    q = [0, 1, 0, 2, 1, 2, 0]
    k = [0, 0, 1, 1, 0, 1, 0]
    pos, neg = questioner_masks(torch.tensor(q), torch.tensor(k) if use_clusters else None)
    lp, ln = _loop_masks(q, k if use_clusters else None)
    assert pos.tolist() == lp and neg.tolist() == ln


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_info_nce_against_loop(tau):
    torch.manual_seed(0)
    z = torch.randn(7, 5)
    c = torch.cat([z, torch.randn(3, 5)])
    q = torch.tensor([0, 1, 0, 2, 1, 2, 0])
    k = torch.tensor([0, 0, 1, 1, 0, 1, 0])
    pos, neg = questioner_masks(q, k)
    qq, qk = torch.tensor([1, 0, 2]), torch.tensor([0, 0, 1])
    qpos, qneg = questioner_masks(q, k, candidate_questioners=qq, candidate_clusters=qk)
    pos = torch.cat([pos, torch.zeros_like(qpos)], 1)
    neg = torch.cat([neg, qneg], 1)
    loss, valid = info_nce(z, c, pos, neg, temperature=tau, reduction="none")
    ref, ref_valid = _loop_info_nce(z, c, pos, neg, tau)
    assert valid.tolist() == ref_valid
    assert torch.allclose(loss.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-4)
    mean, _ = info_nce(z, c, pos, neg, temperature=tau)
    assert math.isclose(float(mean), sum(ref) / sum(ref_valid), rel_tol=1e-5)


def test_no_valid_anchor_gives_connected_zero():
    z = torch.randn(3, 4, requires_grad=True)
    pos, neg = questioner_masks(torch.tensor([0, 1, 2]))  # no positives
    loss, valid = info_nce(z, z, pos, neg)
    assert float(loss) == 0.0 and not valid.any()
    loss.backward()
    assert z.grad is not None


def test_overlap_rejected():
    m = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="both positive and negative"):
        info_nce(torch.randn(2, 3), torch.randn(2, 3), m, m)
