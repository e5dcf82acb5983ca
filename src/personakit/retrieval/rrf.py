r"""Reciprocal rank fusion of several retrievers.

Cormack, Clarke & Büttcher, *Reciprocal Rank Fusion outperforms Condorcet and
individual Rank Learning Methods*, SIGIR 2009; the "RRF" baseline of the ROPG/RSPG
paper (Salemi et al., SIGIR 2024, section 6.1), which fuses BM25, Recency and
Contriever:

$$ \operatorname{RRF}(d) = \sum_{r \in R} \frac{1}{k + \operatorname{rank}_r(d)}, \qquad k = 60, $$

with 1-based ranks.  Each member ranks the whole profile with the library's tie rule
(score descending, position ascending); a member that ranks nothing
(:class:`~personakit.retrieval.NoRetrieval`) adds nothing.  The fused score does not
depend on the order of the members, bit for bit
(:func:`~personakit.functional.retrieval.rrf_scores` sums contributions in sorted order).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import numpy as np
from pydantic import Field, field_validator

from personakit.config import BaseConfig
from personakit.functional.retrieval import rrf_scores
from personakit.retrieval.base import IndexedProfile, Retriever
from personakit.types import ProfileItem, UserProfile

__all__ = ["RRFRetriever", "RRFConfig"]


class RRFRetriever(Retriever):
    r"""Fuse the rankings of several retrievers: $s(d) = \sum_r 1/(k + \text{rank}_r(d))$.

    Args:
        retrievers: The members: retriever instances, registered names (``"bm25"``),
            configs, or mappings ``{"name": "bm25", "k1": 1.2}``.
        k: The RRF constant (60, as in Cormack et al. 2009 and the paper).

    Shapes:
        ``score(query, profile)``: ``(n_items,)`` float64.

    Example:
        >>> from datetime import datetime
        >>> from personakit.types import ProfileItem
        >>> items = [ProfileItem(id=str(i), text=t, timestamp=datetime(2020, 1, 1 + i))
        ...          for i, t in enumerate(["hiking trip", "cooking pasta", "hiking boots"])]
        >>> rrf = RRFRetriever(["bm25", "recency"])
        >>> [r.item.id for r in rrf.retrieve("hiking", items)]
        ['2', '0', '1']
    """

    def __init__(self, retrievers: Sequence[Retriever | str | BaseConfig | Mapping[str, Any]], k: float = 60):
        super().__init__()
        from personakit.retrieval.registry import get_retriever

        if isinstance(retrievers, (str, Mapping, Retriever)) or not retrievers:
            raise ValueError("retrievers must be a non-empty list of retrievers, names, configs or mappings")
        if k < 0:
            raise ValueError(f"k must be >= 0; got {k}")
        self.retrievers: list[Retriever] = [get_retriever(r) for r in retrievers]
        self.k = k

    def _build_index(self, items: list[ProfileItem], user_id: str | None) -> list[IndexedProfile]:
        profile = UserProfile(user_id=user_id, items=items) if user_id is not None else items
        return [r.index(profile) for r in self.retrievers]  # members use their own caches

    def _prepare_queries(self, queries: list[str]) -> list[tuple[Any, ...]]:
        per_member = [r._prepare_queries(queries) for r in self.retrievers]
        return list(zip(*per_member))  # one tuple (member preparations) per query

    def _score_prepared(self, prepared: list[tuple[Any, ...]], indexed: IndexedProfile) -> np.ndarray:
        n = len(indexed)
        ranks = np.zeros((len(prepared), len(self.retrievers), n), dtype=np.int64)  # (Q, R, N); 0 = unranked
        for m, (member, sub) in enumerate(zip(self.retrievers, indexed.state)):
            scores = np.asarray(member._score_prepared([p[m] for p in prepared], sub), dtype=np.float64)  # (Q, N)
            for qi in range(len(prepared)):
                order = member._ranking(scores[qi], sub)
                ranks[qi, m, order] = np.arange(1, order.size + 1)
        return np.stack([rrf_scores(ranks[qi], k=self.k) for qi in range(len(prepared))]) if prepared else \
            np.zeros((0, n))  # (Q, N)

    def clear_cache(self) -> None:
        super().clear_cache()
        for r in self.retrievers:
            r.clear_cache()

    def extra_repr(self) -> str:
        return f"retrievers={self.retrievers!r}, k={self.k}"


class RRFConfig(BaseConfig):
    """Config of :class:`RRFRetriever`; members are names or mappings with a ``name`` key."""

    _target_ = RRFRetriever

    retrievers: list[Union[str, dict[str, Any]]] = Field(
        default_factory=lambda: ["bm25", "recency", "dense"], min_length=1,
        description="Members: registered names, or mappings {'name': ..., **options}.")
    k: float = Field(60, ge=0, description="RRF constant k.")

    @field_validator("retrievers")
    @classmethod
    def _named(cls, value: list[Union[str, dict[str, Any]]]) -> list[Union[str, dict[str, Any]]]:
        for i, r in enumerate(value):
            if isinstance(r, dict) and not isinstance(r.get("name"), str):
                raise ValueError(f"entry {i} is a mapping without a string 'name' key")
        return value
