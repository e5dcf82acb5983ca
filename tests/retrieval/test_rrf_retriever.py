"""RRFRetriever: hand computation, independence from member order, members that rank nothing."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.functional.retrieval import rank_order, reciprocal_rank_fusion
from personakit.retrieval import BM25Retriever, NoRetrieval, RecencyRetriever, Retriever, RRFRetriever
from personakit.types import ProfileItem, UserProfile


class FixedScores(Retriever):
    """Scores the profile with fixed numbers, whatever the query."""

    def __init__(self, scores):
        super().__init__()
        self.scores = np.asarray(scores, dtype=np.float64)

    def _score_prepared(self, prepared, indexed):
        return np.tile(self.scores[: len(indexed)], (len(prepared), 1))


def test_rrf_matches_a_hand_computation():
    day = datetime(2022, 3, 1)
    items = [ProfileItem(id=str(i), text=t, timestamp=day + timedelta(days=i))
             for i, t in enumerate(["hiking in alps", "pasta recipe", "new hiking boots", "tax forms", "garden party"])]
    # BM25("hiking"): docs 0 and 2 match with equal length -> ranks 0:1, 2:2, 1:3, 3:4, 4:5 (ties by position)
    # Recency: newest last -> ranks 4:1, 3:2, 2:3, 1:4, 0:5
    rrf = RRFRetriever([BM25Retriever(), RecencyRetriever()], k=60)
    expected = np.array([1 / 61 + 1 / 65, 1 / 63 + 1 / 64, 1 / 62 + 1 / 63, 1 / 64 + 1 / 62, 1 / 65 + 1 / 61])
    np.testing.assert_allclose(rrf.score("hiking", items), expected, rtol=1e-12)
    assert [r.item.id for r in rrf.retrieve("hiking", items)] == ["2", "0", "4", "3", "1"]  # 0 and 4 tie: position


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 7), r=st.integers(1, 4), k=st.integers(0, 100))
def test_rrf_is_independent_of_member_order(data, n, r, k):
    score_lists = [data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)) for _ in range(r)]  # many ties
    perm = data.draw(st.permutations(range(r)))
    profile = [f"entry {i}" for i in range(n)]
    a = RRFRetriever([FixedScores(s) for s in score_lists], k=k)
    b = RRFRetriever([FixedScores(score_lists[i]) for i in perm], k=k)
    sa, sb = a.score("q", profile), b.score("q", profile)
    np.testing.assert_array_equal(sa, sb)
    assert [x.index for x in a.retrieve("q", profile)] == [x.index for x in b.retrieve("q", profile)]
    ref = reciprocal_rank_fusion([rank_order(np.array(s, dtype=float)) for s in score_lists], k=k, n_items=n)
    np.testing.assert_allclose(sa, ref, rtol=1e-12)


def test_no_retrieval_member_adds_nothing():
    texts = ["red apple", "green pear", "apple pie"]
    with_none = RRFRetriever(["bm25", NoRetrieval()]).score("apple", texts)
    alone = RRFRetriever(["bm25"]).score("apple", texts)
    np.testing.assert_array_equal(with_none, alone)


def test_members_from_names_mappings_and_batches():
    rrf = RRFRetriever(["bm25", {"name": "recency", "chronological": False}], k=10)
    assert isinstance(rrf.retrievers[0], BM25Retriever) and rrf.retrievers[1].chronological is False
    u1 = UserProfile(user_id="u1", items=[ProfileItem(id="a", text="x y"), ProfileItem(id="b", text="y z")])
    u2 = UserProfile(user_id="u2", items=[ProfileItem(id="c", text="q")])
    batch = rrf.score_batch(["x", "q", "z"], [u1, u2, u1])
    for q, p, s in zip(["x", "q", "z"], [u1, u2, u1], batch):
        np.testing.assert_array_equal(s, RRFRetriever(["bm25", {"name": "recency", "chronological": False}],
                                                      k=10).score(q, p))
    assert rrf.retrievers[0].index(u1) is rrf.index(u1).state[0]  # members keep their own cache


def test_bad_members():
    with pytest.raises(ValueError, match="non-empty"):
        RRFRetriever([])
    with pytest.raises(ValueError, match="non-empty"):
        RRFRetriever("bm25")
    with pytest.raises(ValueError, match="k must"):
        RRFRetriever(["bm25"], k=-1)
    with pytest.raises(KeyError, match="registered"):
        RRFRetriever(["bm26"])
