"""QuestionerContrastiveLoss: InfoNCE inside question clusters, multi-view, queue."""

from __future__ import annotations

import math

import pytest
import torch

from personakit.losses import QuestionerContrastiveLoss, QuestionerContrastiveLossConfig
from personakit.testing import assert_config_matches


def _hand_loss(emb, q, k, tau, use_clusters=True, queue=None):
    """Hand-written loop over views; queue = (embeddings, questioners, clusters) used as negatives."""
    b, v, _ = emb.shape
    flat = [torch.nn.functional.normalize(emb[i, j].double(), dim=0) for i in range(b) for j in range(v)]
    owner = [i for i in range(b) for _ in range(v)]
    extra = []
    if queue is not None:
        extra = [(torch.nn.functional.normalize(e.double(), dim=0), int(qq), int(kk)) for e, qq, kk in zip(*queue)]
    terms = []
    for a in range(len(flat)):
        i = owner[a]
        ps = [flat[c] for c in range(len(flat)) if c != a and q[owner[c]] == q[i]]
        ns = [flat[c] for c in range(len(flat))
              if q[owner[c]] != q[i] and (not use_clusters or k[owner[c]] == k[i])]
        ns += [e for e, qq, kk in extra if qq != q[i] and (not use_clusters or kk == k[i])]
        if not ps or not ns:
            continue
        t = 0.0
        for p in ps:
            sp = math.exp(float(flat[a] @ p) / tau)
            t += -math.log(sp / (sp + sum(math.exp(float(flat[a] @ n) / tau) for n in ns)))
        terms.append(t / len(ps))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("use_clusters", [True, False])
@pytest.mark.parametrize("views", [1, 3])
def test_against_hand_written_loop(use_clusters, views):
    torch.manual_seed(0)
    emb = torch.randn(6, views, 4)
    q = [0, 1, 0, 2, 1, 2]
    k = [0, 0, 0, 1, 1, 1]
    loss = QuestionerContrastiveLoss(temperature=0.3, use_clusters=use_clusters)
    got = loss(emb, torch.tensor(q), torch.tensor(k))
    assert math.isclose(float(got), _hand_loss(emb, q, k, 0.3, use_clusters), rel_tol=1e-5)


def test_negatives_only_from_same_cluster():
    torch.manual_seed(1)
    emb = torch.randn(4, 2, 8)
    q = torch.tensor([0, 1, 0, 3])
    k = torch.tensor([0, 0, 0, 1])  # row 3 is alone in cluster 1
    loss = QuestionerContrastiveLoss(temperature=0.1, reduction="none")
    base = loss(emb, q, k)
    moved = emb.clone()
    moved[3] = torch.randn(2, 8) * 10  # another cluster: may not act as a negative of cluster 0
    after = loss(moved, q, k)
    assert torch.allclose(base[:6], after[:6])
    unclustered = QuestionerContrastiveLoss(temperature=0.1, reduction="none", use_clusters=False)
    assert not torch.allclose(unclustered(emb, q, k)[:6], unclustered(moved, q, k)[:6])
    # gradient: no anchor of cluster 0 pulls on row 3
    emb_g = emb.clone().requires_grad_(True)
    per = loss(emb_g, q, k)
    per[:6].sum().backward()
    assert torch.count_nonzero(emb_g.grad[3]) == 0


def test_views_are_positives_and_valid_fraction():
    z = torch.tensor([[[1.0, 0.0], [0.9, 0.1]], [[0.0, 1.0], [0.1, 0.9]]])
    out = QuestionerContrastiveLoss(temperature=0.1).forward_with_parts(z, torch.tensor([3, 7]), torch.tensor([0, 0]))
    assert float(out.valid_fraction) == 1.0
    swapped = QuestionerContrastiveLoss(temperature=0.1)(z[:, [0, 0]] * torch.tensor([1.0, -1.0]).view(1, 2, 1),
                                                           torch.tensor([3, 7]))
    assert float(swapped) > float(out.loss)  # views pointing away from each other cost more


def test_queue_negatives_and_fifo():
    torch.manual_seed(2)
    loss = QuestionerContrastiveLoss(temperature=0.2, queue_size=3, dim=4)
    e1 = torch.randn(2, 1, 4)
    q1, k1 = torch.tensor([5, 6]), torch.tensor([0, 0])
    loss(e1, q1, k1)  # training mode: enqueued
    assert loss.queue_questioners.tolist() == [5, 6, -1] and int(loss.queue_ptr) == 2
    e2 = torch.randn(4, 2, 4)
    q2, k2 = torch.tensor([5, 5, 7, 7]), torch.tensor([0, 0, 0, 1])
    queue = (loss.queue[:2].clone(), torch.tensor([5, 6]), torch.tensor([0, 0]))
    got = loss(e2, q2, k2)
    assert math.isclose(float(got), _hand_loss(e2, q2.tolist(), k2.tolist(), 0.2, queue=queue), rel_tol=1e-5)
    assert loss.queue_questioners.tolist() == [7, 7, 5] and int(loss.queue_ptr) == 2  # wrapped around
    loss.eval()
    before = loss.queue.clone()
    loss(e2, q2, k2)
    assert torch.equal(before, loss.queue)  # no enqueue in eval mode
    assert "queue" in loss.state_dict()
    loss.reset_queue()
    assert (loss.queue_questioners == -1).all()


def test_errors_and_config():
    with pytest.raises(ValueError, match="dim"):
        QuestionerContrastiveLoss(queue_size=4)
    with pytest.raises(ValueError, match="questioners"):
        QuestionerContrastiveLoss()(torch.randn(3, 2, 4), torch.tensor([1, 2]))
    assert_config_matches(QuestionerContrastiveLossConfig)
    assert QuestionerContrastiveLossConfig().build().temperature == 0.01


@pytest.mark.parametrize("use_clusters", [True, False])
def test_pair_counts_match_a_loop(use_clusters):
    g = torch.Generator().manual_seed(3)
    q = torch.randint(1, 4, (9,), generator=g)
    k = torch.randint(0, 2, (9,), generator=g)
    counts = QuestionerContrastiveLoss(use_clusters=use_clusters).pair_counts(q, k)
    pairs = [(i, j) for i in range(9) for j in range(i + 1, 9)]
    pos = sum(int(q[i] == q[j]) for i, j in pairs)
    neg = sum(int(q[i] != q[j] and (not use_clusters or k[i] == k[j])) for i, j in pairs)
    rows = sum(any(q[i] == q[j] for j in range(9) if j != i) for i in range(9))
    assert {key: int(v) for key, v in counts.items()} == {"positive_pairs": pos, "negative_pairs": neg,
                                                           "rows_with_positive": rows}


def test_no_positive_pair_and_one_view_gives_no_term():
    loss = QuestionerContrastiveLoss()
    q, k = torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0])
    assert int(loss.pair_counts(q, k)["positive_pairs"]) == 0
    out = loss.forward_with_parts(torch.randn(3, 1, 4), q, k)
    assert float(out.valid_fraction) == 0.0 and float(out.loss) == 0.0
    with pytest.raises(ValueError, match="clusters"):
        loss.pair_counts(q, torch.tensor([0, 0]))
