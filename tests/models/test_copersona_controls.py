"""The CoPersona controls: random neighbours at the same degree, swapped own facets, no similarity scores."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

from copersona_testkit import build_context, make_model  # noqa: E402

from personakit.graph import build_multiplex_graph, random_neighbors  # noqa: E402
from personakit.models.copersona import CoPersonaContext, swap_own_facets, without_peer_similarity  # noqa: E402


@pytest.fixture(scope="module")
def context():
    return build_context()


def _graph(n=12, m=3, seed=0):
    torch.manual_seed(seed)
    e = torch.nn.functional.normalize(torch.randn(n, m, 6), dim=-1)
    rel = torch.randint(1, 4, (n, m))
    return build_multiplex_graph(e, rel, top_k=3, threshold=0.05, facet_names=["a", "b", "c"])


@pytest.mark.parametrize("pool", ["layer", "all"])
def test_random_neighbors_keep_degrees_and_scores(pool):
    g = _graph()
    r = random_neighbors(g, seed=3, pool=pool)
    assert torch.equal(r.neighbor_index >= 0, g.neighbor_index >= 0)  # same degree, every layer and user
    assert torch.equal(r.neighbor_score, g.neighbor_score)
    assert not torch.equal(r.neighbor_index, g.neighbor_index)
    for layer in range(g.num_facets + 1):
        members = set(g.neighbor_index[layer][g.neighbor_index[layer] >= 0].tolist()) | set(
            (g.neighbor_index[layer] >= 0).any(1).nonzero().flatten().tolist())
        for u in range(g.num_users):
            row = [v for v in r.neighbor_index[layer, u].tolist() if v >= 0]
            assert u not in row and len(set(row)) == len(row)  # no self-loop, no repeat
            if pool == "layer":
                assert set(row) <= members
    assert torch.equal(random_neighbors(g, seed=3, pool=pool).neighbor_index, r.neighbor_index)
    assert not torch.equal(random_neighbors(g, seed=4, pool=pool).neighbor_index, r.neighbor_index)
    with pytest.raises(ValueError, match="pool"):
        random_neighbors(g, pool="nope")


def test_random_neighbors_with_a_small_pool_leave_slots_empty():
    g = _graph(n=3)
    r = random_neighbors(g, seed=0)
    assert ((r.neighbor_index >= 0).sum(-1) <= 2).all()


def test_swap_own_facets_is_a_derangement_and_changes_only_the_own_row(context):
    swapped = swap_own_facets(context, seed=1)
    n = len(context.user_ids)
    assert sorted(swapped.own_rows) == list(range(n)) and all(i != j for i, j in enumerate(swapped.own_rows))
    assert swapped.peer_context == context.peer_context and swapped.histories == context.histories
    assert swap_own_facets(context, seed=1).own_rows == swapped.own_rows
    model = make_model(context).eval()
    with torch.no_grad():
        base = model.persona_vectors()
        model.set_context(swapped)
        got = model.persona_vectors()
        # reference: user u's soft prompt with only u's own row replaced
        c = context
        for u, src in enumerate(swapped.own_rows):
            x, r = c.facet_embeddings.clone(), c.reliability.clone()
            x[u], r[u] = c.facet_embeddings[src], c.reliability[src]
            assert torch.allclose(model.facet_graph(x, r, c.edge_index)[u], got[u], atol=1e-5)
        assert not torch.allclose(base, got)
        model.set_context(CoPersonaContext(**{**vars(context), "own_rows": list(range(n))}))
        assert torch.allclose(model.persona_vectors(), base, atol=1e-6)  # identity rows: unchanged
    with pytest.raises(ValueError, match="own_rows"):
        model.set_context(CoPersonaContext(**{**vars(context), "own_rows": [0]}))
    with pytest.raises(ValueError, match="at least two"):
        swap_own_facets(CoPersonaContext(user_ids=["a"]))


def test_swapped_profile_summary_is_another_users(context):
    swapped = swap_own_facets(context, seed=0)
    ids = context.user_ids
    for i, u in enumerate(ids):
        assert swapped.profile_summary.get(u, "") == context.profile_summary.get(ids[swapped.own_rows[i]], "")


def test_without_peer_similarity_drops_only_the_scores(context):
    assert any("(similarity" in t for t in context.peer_context.values())
    plain = without_peer_similarity(context)
    for u, text in context.peer_context.items():
        assert "(similarity" not in plain.peer_context[u]
        assert plain.peer_context[u].count("- peer:") == text.count("- peer (similarity")
    model = make_model(context, variant="copersona")
    model.set_context(plain)
    prompt = model.make_collator().prompt(__import__("copersona_testkit").examples()[0])
    assert "- peer:" in prompt and "similarity" not in prompt
