r"""BM25 retriever over a user profile, with rank-bm25 ``BM25Okapi`` semantics (vectorised).

Okapi BM25 (Robertson & Zaragoza, *The Probabilistic Relevance Framework: BM25 and
Beyond*, 2009), used as the term-matching baseline of the ROPG/RSPG paper (Salemi et
al., SIGIR 2024, section 6.1, "we use the rank_bm25 library"):

$$
\operatorname{score}(q, d) = \sum_{t \in q} \operatorname{idf}(t)\,
\frac{f(t, d)\,(k_1 + 1)}{f(t, d) + k_1\left(1 - b + b\,|d| / \overline{|d|}\right)},
\quad \operatorname{idf}(t) = \ln\frac{N - n(t) + 0.5}{n(t) + 0.5},
$$

with negative idf values replaced by $\varepsilon \cdot \overline{\operatorname{idf}}$
exactly as ``rank_bm25.BM25Okapi`` does (see :mod:`personakit.functional.retrieval`).
The corpus statistics ($N$, $n(t)$, $\overline{|d|}$) are those of the one profile being
searched, as in LaMP.
"""

from __future__ import annotations

from itertools import chain
from typing import Optional

import numpy as np
from pydantic import Field

from personakit.config import BaseConfig
from personakit.functional.retrieval import bm25_scores, bm25_scores_batch, bm25_weights, term_frequency_from_flat
from personakit.retrieval.base import IndexedProfile, Retriever
from personakit.retrieval.tokenize import Tokenizer, get_tokenizer
from personakit.types import ProfileItem

__all__ = ["BM25Retriever", "BM25Config", "BM25State"]


class BM25State:
    """What :class:`BM25Retriever` precomputes per profile.

    Attributes:
        vocab: term → id, ids in order of first appearance in the profile.
        weights: ``(N, V)`` term-major sparse BM25 contributions
            (:func:`~personakit.functional.retrieval.bm25_weights`).
    """

    __slots__ = ("vocab", "weights")

    def __init__(self, vocab: dict[str, int], weights):
        self.vocab = vocab
        self.weights = weights


class BM25Retriever(Retriever):
    r"""Okapi BM25 over the entries of one profile, equal to rank-bm25's ``BM25Okapi``.

    Scores equal ``rank_bm25.BM25Okapi(tokenized_corpus, k1, b, epsilon).get_scores(
    tokenized_query)`` on the same tokenisation (to $10^{-6}$ relative, bit-identical in
    practice), but are computed from a sparse matrix of per-(term, document) weights built
    once at index time, so scoring one query costs a gather over its terms (tens of
    microseconds for a 1,000-entry profile instead of milliseconds).

    Departures from rank-bm25, all on inputs rank-bm25 cannot handle: an empty profile
    gives an empty score array (rank-bm25 divides by zero), a profile whose entries
    have no tokens gives all-zero scores, and where rank-bm25 computes $0/0$ = NaN (an
    entry without a query term when ``k1=0``; an empty entry when ``b=1``) the term
    adds 0.

    Args:
        k1: Term-frequency saturation $k_1$ (rank-bm25 default 1.5).
        b: Length normalisation $b \in [0, 1]$ (0.75).
        epsilon: Floor factor for negative idf values (0.25).
        tokenizer: A name from :mod:`personakit.retrieval.tokenize` (``"default"``:
            lower-cased ``\w+`` runs; ``"whitespace"``: ``str.split`` as in the LaMP
            code), any callable ``str -> list[str]``, or ``None`` for the default.

    Shapes:
        ``score(query, profile)``: ``(n_items,)`` float64.

    Example:
        >>> bm25 = BM25Retriever()
        >>> docs = ["I love hiking in the alps", "my cat sleeps all day", "hiking boots review"]
        >>> [r.index for r in bm25.retrieve("hiking boots", docs, k=2)]
        [2, 0]
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25,
                 tokenizer: str | Tokenizer | None = None):
        super().__init__()
        if k1 < 0:
            raise ValueError(f"k1 must be >= 0; got {k1}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must lie in [0, 1]; got {b}")
        self.k1 = float(k1)
        self.b = float(b)
        self.epsilon = float(epsilon)
        self.tokenizer = tokenizer
        self._tokenize = get_tokenizer(tokenizer)

    def tokenize(self, text: str) -> list[str]:
        """The tokens BM25 sees for ``text``."""
        return self._tokenize(text)

    def _build_index(self, items: list[ProfileItem], user_id: str | None) -> BM25State:
        docs = [self._tokenize(it.text) for it in items]
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))  # (N,)
        flat = list(chain.from_iterable(docs))  # (T,) all tokens, in order
        # ids in order of first appearance (the order of rank-bm25's idf dict, which its mean idf follows)
        vocab = {tok: i for i, tok in enumerate(dict.fromkeys(flat))}
        term_ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        tf = term_frequency_from_flat(term_ids, lengths, n_terms=len(vocab))  # (N, V)
        return BM25State(vocab, bm25_weights(tf, k1=self.k1, b=self.b, epsilon=self.epsilon))

    def _prepare_queries(self, queries: list[str]) -> list[list[str]]:
        return [self._tokenize(q) for q in queries]

    def _score_prepared(self, prepared: list[list[str]], indexed: IndexedProfile) -> np.ndarray:
        state: BM25State = indexed.state
        vocab = state.vocab
        ids = [[vocab[t] for t in toks if t in vocab] for toks in prepared]  # OOV terms add 0
        if len(ids) == 1:
            return bm25_scores(state.weights, ids[0])[None, :]  # (1, N)
        return bm25_scores_batch(state.weights, ids)  # (Q, N)

    def extra_repr(self) -> str:
        tok = self.tokenizer if isinstance(self.tokenizer, (str, type(None))) else getattr(self.tokenizer, "__name__", "callable")
        return f"k1={self.k1}, b={self.b}, epsilon={self.epsilon}, tokenizer={tok!r}"


class BM25Config(BaseConfig):
    """Config of :class:`BM25Retriever` (a callable tokenizer is passed to ``build(tokenizer=...)``)."""

    _target_ = BM25Retriever

    k1: float = Field(1.5, ge=0, description="Term-frequency saturation k1.")
    b: float = Field(0.75, ge=0, le=1, description="Document-length normalisation b.")
    epsilon: float = Field(0.25, description="Negative idf values become epsilon times the mean idf (rank-bm25).")
    tokenizer: Optional[str] = Field(None, description="Registered tokenizer name ('default', 'whitespace'); None = default.")
