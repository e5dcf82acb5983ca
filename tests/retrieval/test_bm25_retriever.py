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


# ---------------------------------------------------------------- index layout (BM25State)
def _layouts(**kw):
    """Retrievers storing every term as postings, every term as a dense row, and a mix."""
    sparse, dense, mixed = (BM25Retriever(**kw) for _ in range(3))
    sparse.dense_min_entries, sparse.dense_min_fraction = 10**9, 1.0
    dense.dense_min_entries, dense.dense_min_fraction = 1, 0.0
    mixed.dense_min_entries, mixed.dense_min_fraction = 1, 0.3
    return sparse, dense, mixed


def _random_corpus(rng, n_docs, vocab=12, max_len=9):
    # Zipf-like: low ids are frequent (many negative-idf terms), high ids rare
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    return [" ".join(f"t{i}" for i in rng.choice(vocab, size=rng.integers(0, max_len + 1), p=p)) for _ in range(n_docs)]


@pytest.mark.parametrize("seed", range(25))
def test_every_layout_equals_rank_bm25_on_random_corpora(seed):
    rng = np.random.default_rng(seed)
    texts = _random_corpus(rng, n_docs=int(rng.integers(1, 40)))
    if not any(default_tokenize(t) for t in texts):
        texts[0] = "t0"
    queries = [
        " ".join(f"t{i}" for i in rng.integers(0, 15, size=rng.integers(1, 12))),  # t12..t14 unknown
        "t0 t0 t0 t1 t0",  # repeated (and usually negative-idf) terms count once per occurrence
        "t13 t1 t13 t9 t0 t9 t1",  # interleaved frequent, rare and unknown terms
        "",
        "zzz",
    ]
    layouts = _layouts()
    for q in queries:
        expected = _reference(texts, q, default_tokenize)
        got = [r.score(q, texts) for r in layouts]
        np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=1e-12)
        for g in got[1:]:  # the layout changes the speed, never a bit of the scores
            np.testing.assert_array_equal(g, got[0])
    for r in layouts:  # many queries against one profile: the same bits as one by one
        for q, s in zip(queries, r.score_batch(queries, r.index(texts))):
            np.testing.assert_array_equal(s, layouts[0].score(q, texts))


def test_negative_idf_single_entry_and_unknown_terms():
    # "a" is in every entry (idf < 0, floored to epsilon * mean idf), "c" only in one
    texts = ["a b", "a c", "a b", "a"]
    for r in _layouts():
        np.testing.assert_allclose(r.score("a c a zzz", texts), _reference(texts, "a c a zzz", default_tokenize),
                                   rtol=1e-6, atol=1e-12)
        assert r.score("zzz qqq", texts).tolist() == [0.0] * 4
        assert r.score("", texts).tolist() == [0.0] * 4
    # one entry: every term has idf ln(0.5 / 1.5) < 0 and the mean idf equals it
    for r in _layouts(epsilon=0.5):
        np.testing.assert_allclose(r.score("x y x", ["x y z"]),
                                   _reference(["x y z"], "x y x", default_tokenize, epsilon=0.5), rtol=1e-6)
    assert BM25Retriever().score("x", ["x"])[0] < 0


def test_state_layout_weights_and_pickle():
    import pickle

    from personakit.functional.retrieval import bm25_weights, term_frequency_matrix
    from personakit.retrieval.bm25 import BM25State

    texts = ["a b a", "b c", "a d", "a b c d e"]
    sparse, dense, mixed = _layouts()
    states = [r.index(texts).state for r in (sparse, dense, mixed)]
    assert all(isinstance(s, BM25State) for s in states)
    assert states[0].dense.shape == (0, 4) and states[0].n_sparse == 5
    assert states[1].n_sparse == 0 and states[1].dense.shape == (5, 4) and states[1].values.size == 0
    assert states[2].n_sparse == 1 and states[2].dense.shape == (4, 4)  # df >= ceil(0.3 * 4) = 2: only "e" sparse
    # the weights are rank-bm25's contributions whatever the layout
    docs = [default_tokenize(t) for t in texts]
    first = {t: i for i, t in enumerate(dict.fromkeys(tok for d in docs for tok in d))}
    ref = bm25_weights(term_frequency_matrix([[first[t] for t in d] for d in docs], n_terms=5)).toarray()
    for s in states:
        w = s.weights.toarray()  # (N, V) in the state's id order
        for term, i in first.items():
            np.testing.assert_array_equal(w[:, s.vocab[term]], ref[:, i])
        assert s.nbytes > 0
    for r in (sparse, dense, mixed):
        idx = r.index(texts)
        clone = pickle.loads(pickle.dumps(idx.state))
        for q in ["a", "b a c e", "e e a", ""]:
            np.testing.assert_array_equal(clone.scores(clone.term_ids(default_tokenize(q))), r.score(q, idx))
