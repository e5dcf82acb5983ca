"""The "no personalisation" member of the retriever pool: retrieves nothing.

In the ROPG/RSPG paper (Salemi et al., SIGIR 2024, sections 5 and 6) the retriever
selector chooses among BM25, Recency, Contriever, the trained retrievers *and no
retrieval*, in which case the LLM sees the task input alone.  As in the paper's
query-performance-prediction study (section 6.3) every entry scores zero.
"""

from __future__ import annotations

import numpy as np

from personakit.config import BaseConfig
from personakit.retrieval.base import IndexedProfile, Retriever

__all__ = ["NoRetrieval", "NoRetrievalConfig"]


class NoRetrieval(Retriever):
    """A retriever that returns no entries (``retrieve`` gives ``[]``; every score is 0).

    In :class:`~personakit.retrieval.RRFRetriever` it ranks nothing, so it adds nothing
    to the fused scores.

    Shapes:
        ``score(query, profile)``: ``(n_items,)`` zeros.

    Example:
        >>> NoRetrieval().retrieve("query", ["an entry", "another"], k=4)
        []
    """

    cache_size = 0  # nothing to precompute

    def _score_prepared(self, prepared: list[str], indexed: IndexedProfile) -> np.ndarray:
        return np.zeros((len(prepared), len(indexed)), dtype=np.float64)  # (Q, N)

    def _ranking(self, scores: np.ndarray, indexed: IndexedProfile) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)


class NoRetrievalConfig(BaseConfig):
    """Config of :class:`NoRetrieval` (no fields)."""

    _target_ = NoRetrieval
