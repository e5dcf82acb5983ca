"""BM25Retriever: equal to rank-bm25's BM25Okapi on the same tokenisation, plus the shared interface."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.retrieval import BM25Retriever, IndexedProfile, RetrievedItem, default_tokenize, whitespace_tokenize
from personakit.types import ProfileItem, UserProfile

rank_bm25 = pytest.importorskip("rank_bm25")

WORDS = ["cat", "Cat", "dog", "dogs,", "the", "a", "hiking", "boots", "pasta", "é", "x_1", "!"]
text_st = st.lists(st.sampled_from(WORDS), min_size=0, max_size=10).map(" ".join)


def _reference(texts, query, tokenize, **kw):
    return rank_bm25.BM25Okapi([tokenize(t) for t in texts], **kw).get_scores(tokenize(query))


@settings(max_examples=120, deadline=None)
@given(texts=st.lists(text_st, min_size=1, max_size=15), query=text_st,
       tokenizer=st.sampled_from(["default", "whitespace"]))
def test_scores_equal_rank_bm25(texts, query, tokenizer):
    tok = default_tokenize if tokenizer == "default" else whitespace_tokenize
    if not any(tok(t) for t in texts):
        assert BM25Retriever(tokenizer=tokenizer).score(query, texts).tolist() == [0.0] * len(texts)
        return
    expected = _reference(texts, query, tok)
    ours = BM25Retriever(tokenizer=tokenizer).score(query, texts)
    assert ours.dtype == np.float64 and ours.shape == (len(texts),)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)


def test_parameters_and_callable_tokenizer_match_rank_bm25():
    texts = ["a b c a", "b b d", "c e", "a", "e e e e b"]
    tok = lambda s: s.split()  # noqa: E731
    for k1, b, eps in [(1.2, 0.5, 0.1), (2.0, 1.0, 0.5), (0.5, 0.0, 0.0)]:
        ours = BM25Retriever(k1=k1, b=b, epsilon=eps, tokenizer=tok).score("a b e z", texts)
        np.testing.assert_allclose(ours, _reference(texts, "a b e z", tok, k1=k1, b=b, epsilon=eps), rtol=1e-6)


def test_retrieve_sorts_by_score_then_position():
    texts = ["pasta", "hiking boots", "boots", "hiking boots", "nothing here"]
    r = BM25Retriever()
    got = r.retrieve("hiking boots", texts)
    assert [x.index for x in got] == [1, 3, 2, 0, 4]  # 1 and 3 tie: earlier first; 0 and 4 score 0
    assert [x.rank for x in got] == [1, 2, 3, 4, 5]
    assert got[0].score == got[1].score > got[2].score > 0 == got[3].score
    assert isinstance(got[0], RetrievedItem) and got[0].text == "hiking boots"
    assert [x.index for x in r.retrieve("hiking boots", texts, k=2)] == [1, 3]
    assert r.retrieve("hiking boots", texts, k=0) == []
    assert len(r.retrieve("hiking boots", texts, k=99)) == 5
    with pytest.raises(ValueError, match="non-negative"):
        r.retrieve("x", texts, k=-1)


def test_empty_profile_and_empty_query():
    r = BM25Retriever()
    assert r.score("anything", []).shape == (0,)
    assert r.retrieve("anything", [], k=3) == []
    assert r.score("", ["a b", "c"]).tolist() == [0.0, 0.0]


def test_profile_forms_agree_and_keep_items():
    items = [ProfileItem(id="p1", text="red apple pie"), ProfileItem(id="p2", text="green apple")]
    r = BM25Retriever()
    a = r.score("apple pie", UserProfile(user_id="u", items=items))
    b = r.score("apple pie", items)
    c = r.score("apple pie", [it.text for it in items])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert r.retrieve("apple pie", items, k=1)[0].item.id == "p1"
    assert r.retrieve("apple pie", [it.text for it in items], k=1)[0].item.id == "0"


def test_bad_inputs_name_the_position():
    r = BM25Retriever()
    with pytest.raises(TypeError, match="profile entry 1"):
        r.score("q", ["ok", 3])
    with pytest.raises(TypeError, match="profile entry 1: expected ProfileItem"):
        r.score("q", [ProfileItem(id="a", text="x"), "y"])
    with pytest.raises(TypeError, match="got str"):
        r.score("q", "a single string is not a profile")
    with pytest.raises(TypeError, match="query 0"):
        r.score_batch([None], [["a"]])
    with pytest.raises(ValueError, match="one profile per query"):
        r.score_batch(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="k1"):
        BM25Retriever(k1=-1)
    with pytest.raises(ValueError, match="b must"):
        BM25Retriever(b=1.5)
    with pytest.raises(KeyError, match="known"):
        BM25Retriever(tokenizer="nope")


def test_batch_over_users_equals_one_by_one():
    u1 = UserProfile(user_id="u1", items=[ProfileItem(id=str(i), text=t) for i, t in enumerate(
        ["cats and dogs", "dog food", "the cat sat"])])
    u2 = UserProfile(user_id="u2", items=[ProfileItem(id="a", text="stock market"), ProfileItem(id="b", text="cat"),
                                                 ProfileItem(id="c", text="bond yields")])
    queries = ["cat", "market crash", "dog", "cat food"]
    profiles = [u1, u2, u1, u2]
    r = BM25Retriever()
    batch = r.score_batch(queries, profiles)
    for q, p, s in zip(queries, profiles, batch):
        np.testing.assert_array_equal(s, BM25Retriever().score(q, p))
    shared = r.score_batch(queries, u1)
    assert [s.shape for s in shared] == [(3,)] * 4
    tops = r.retrieve_batch(queries, profiles, k=1)
    assert [t[0].item.id for t in tops] == ["2", "a", "1", "b"]


def test_index_is_cached_per_user_and_content(monkeypatch):
    r = BM25Retriever()
    calls = []
    orig = r._build_index
    monkeypatch.setattr(r, "_build_index", lambda items, uid: calls.append(uid) or orig(items, uid))
    p = UserProfile(user_id="u", items=[ProfileItem(id="1", text="alpha beta")])
    idx = r.index(p)
    for _ in range(3):
        r.score("alpha", p)
        r.retrieve("beta", UserProfile(user_id="u", items=[ProfileItem(id="1", text="alpha beta")]))
    assert calls == ["u"]
    assert r.index(p) is idx and isinstance(idx, IndexedProfile) and len(idx) == 1
    changed = UserProfile(user_id="u", items=[ProfileItem(id="1", text="alpha gamma")])
    assert r.score("gamma", changed)[0] != 0  # a changed profile is re-indexed, not served stale
    assert calls == ["u", "u"]
    r.clear_cache()
    r.index(p)
    assert len(calls) == 3


def test_indexed_profile_belongs_to_its_retriever():
    idx = BM25Retriever().index(["a b"])
    with pytest.raises(ValueError, match="another retriever"):
        BM25Retriever().score("a", idx)
