"""Reference tests for personakit.functional.retrieval (BM25 against rank-bm25, RRF by hand)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.functional.retrieval import (
    bm25_idf,
    bm25_scores,
    bm25_scores_batch,
    bm25_weights,
    rank_order,
    reciprocal_rank_fusion,
    rrf_scores,
    scores_to_ranks,
    term_frequency_matrix,
)

rank_bm25 = pytest.importorskip("rank_bm25")

# corpora of token ids drawn from a tiny vocabulary, so terms repeat across documents
# (negative idf, flooring) and documents can be empty
corpus_st = st.lists(st.lists(st.integers(0, 7), min_size=0, max_size=8), min_size=1, max_size=12)
query_st = st.lists(st.integers(0, 9), min_size=0, max_size=6)  # ids 8, 9 are out of vocabulary


def _vocab_order(docs):
    """Ids in order of first appearance (the order rank-bm25 builds its idf dict in)."""
    vocab: dict[int, int] = {}
    remapped = [[vocab.setdefault(t, len(vocab)) for t in d] for d in docs]
    return vocab, remapped


def _reference(docs, query, **kw):
    bm = rank_bm25.BM25Okapi([[f"t{t}" for t in d] for d in docs], **kw)
    with np.errstate(invalid="ignore", divide="ignore"):  # rank-bm25's 0/0 cases give NaN
        return bm, bm.get_scores([f"t{t}" for t in query])


def test_term_frequency_matrix_counts_like_a_loop():
    docs = [[0, 2, 2, 1], [], [3, 3, 3], [1]]
    tf = term_frequency_matrix(docs, n_terms=5).toarray()
    expected = np.zeros((4, 5))
    for d, doc in enumerate(docs):
        for t, c in Counter(doc).items():
            expected[d, t] = c
    np.testing.assert_array_equal(tf, expected)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        term_frequency_matrix([[5]], n_terms=5)


def test_bm25_idf_floors_negative_values_like_rank_bm25():
    docs = [[0, 1], [0, 2], [0, 1, 3], [0]]  # term 0 in every document: negative idf
    vocab, remapped = _vocab_order(docs)
    bm, _ = _reference(docs, [])
    tf = term_frequency_matrix(remapped, len(vocab))
    idf = bm25_idf(np.diff(tf.indptr), n_docs=4, epsilon=0.25)
    expected = [bm.idf[f"t{t}"] for t in vocab]
    assert idf.tolist() == expected  # bit-identical
    assert idf[vocab[0]] == pytest.approx(0.25 * bm.average_idf)
    raw0 = math.log(4 - 4 + 0.5) - math.log(4 + 0.5)
    assert raw0 < 0 and idf[vocab[0]] != raw0


@settings(max_examples=150, deadline=None)
@given(docs=corpus_st, query=query_st, k1=st.floats(0.01, 3.0), b=st.floats(0.0, 1.0), eps=st.floats(0.0, 1.0))
def test_bm25_scores_equal_rank_bm25(docs, query, k1, b, eps):
    vocab, remapped = _vocab_order(docs)
    if not vocab:  # rank-bm25 divides by zero on a corpus without tokens
        w = bm25_weights(term_frequency_matrix(remapped, 0), k1=k1, b=b, epsilon=eps)
        assert bm25_scores(w, []).tolist() == [0.0] * len(docs)
        return
    _, expected = _reference(docs, query, k1=k1, b=b, epsilon=eps)
    w = bm25_weights(term_frequency_matrix(remapped, len(vocab)), k1=k1, b=b, epsilon=eps)
    ours = bm25_scores(w, [vocab[t] for t in query if t in vocab])
    # rank-bm25's only 0/0 (k1 > 0): an empty document when b = 1; we give it 0
    nan = np.isnan(expected)
    assert all(len(docs[i]) == 0 and b == 1.0 for i in np.flatnonzero(nan))
    assert np.isfinite(ours).all() and (ours[nan] == 0).all()
    np.testing.assert_allclose(ours[~nan], expected[~nan], rtol=1e-6, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(docs=corpus_st, queries=st.lists(query_st, min_size=0, max_size=5))
def test_bm25_scores_batch_equals_single(docs, queries):
    vocab, remapped = _vocab_order(docs)
    w = bm25_weights(term_frequency_matrix(remapped, len(vocab)))
    ids = [[vocab[t] for t in q if t in vocab] for q in queries]
    batch = bm25_scores_batch(w, ids)
    assert batch.shape == (len(queries), len(docs))
    for row, q in zip(batch, ids):
        np.testing.assert_array_equal(row, bm25_scores(w, q))


def test_bm25_k1_zero_is_finite():
    # rank-bm25 gives 0/0 = nan for documents without the term when k1 = 0; we give 0
    w = bm25_weights(term_frequency_matrix([[0], [1], [1]], 2), k1=0.0)
    s = bm25_scores(w, [0, 1])
    assert np.isfinite(s).all() and s[0] > 0


def test_bm25_repeated_query_term_counts_twice():
    docs = [[0, 1], [1, 2], [2, 3]]
    w = bm25_weights(term_frequency_matrix(docs, 4))
    np.testing.assert_allclose(bm25_scores(w, [0, 0]), 2 * bm25_scores(w, [0]))


def test_rank_order_breaks_ties_by_index_and_puts_nan_last():
    s = np.array([1.0, 3.0, np.nan, 3.0, 1.0, -2.0])
    assert rank_order(s).tolist() == [1, 3, 0, 4, 5, 2]
    assert scores_to_ranks(s).tolist() == [3, 1, 6, 2, 4, 5]


def test_rrf_matches_hand_computation():
    # list A: d2, d0, d1 ; list B: d0, d3   (d1 unranked by B, d3 unranked by A)
    got = reciprocal_rank_fusion([[2, 0, 1], [0, 3]], k=60, n_items=5)
    expected = [1 / 62 + 1 / 61, 1 / 63, 1 / 61, 1 / 62, 0.0]
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    ranks = np.array([[2, 3, 1, 0, 0], [1, 0, 0, 2, 0]])
    np.testing.assert_array_equal(rrf_scores(ranks, k=60), got)
    np.testing.assert_allclose(reciprocal_rank_fusion([[1, 0]], k=0), [1 / 2, 1.0])


def test_rrf_rejects_bad_rankings():
    with pytest.raises(ValueError, match="repeats"):
        reciprocal_rank_fusion([[0, 0]])
    with pytest.raises(ValueError, match="outside"):
        reciprocal_rank_fusion([[0, 3]], n_items=2)
    with pytest.raises(ValueError, match="shape"):
        rrf_scores(np.array([1, 2]))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n=st.integers(1, 8), r=st.integers(1, 5), k=st.integers(0, 100))
def test_rrf_is_independent_of_the_order_of_rankings(data, n, r, k):
    rankings = [data.draw(st.permutations(range(n)).map(lambda p: p[: data.draw(st.integers(0, n))])) for _ in range(r)]
    perm = data.draw(st.permutations(range(r)))
    a = reciprocal_rank_fusion(rankings, k=k, n_items=n)
    b = reciprocal_rank_fusion([rankings[i] for i in perm], k=k, n_items=n)
    np.testing.assert_array_equal(a, b)  # bit for bit
    assert rank_order(a).tolist() == rank_order(b).tolist()
