r"""Recency retriever: the most recent profile entries first.

The "Recency" baseline of LaMP (Salemi et al. 2023) and of the ROPG/RSPG paper
(Salemi et al., SIGIR 2024, section 6.1): the query is ignored and the profile is
ranked by :attr:`~personakit.types.ProfileItem.timestamp`, newest first.  Since recency
has no natural score, the score of an entry is its reciprocal rank,
$s(d) = 1 / \operatorname{rank}(d)$, as the paper does when it needs recency scores
(section 6.3, query performance prediction).

Ordering rules (deterministic):

* dated entries come first, newest first; naive datetimes are read as UTC;
* entries without a timestamp come after every dated entry;
* among entries with equal timestamps, and among undated entries, the *later* position
  in the profile comes first when ``chronological=True`` (the profile is a history
  appended in time order), the earlier one when ``chronological=False``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from pydantic import Field

from personakit.config import BaseConfig
from personakit.retrieval.base import IndexedProfile, Retriever
from personakit.types import ProfileItem

__all__ = ["RecencyRetriever", "RecencyConfig"]


def _seconds(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


class RecencyRetriever(Retriever):
    r"""Rank profile entries by timestamp, newest first; score $= 1/\text{rank}$.

    Args:
        chronological: Whether the profile order is oldest → newest, which decides
            ties and undated entries (later position = more recent).  ``False`` keeps
            the earlier position first instead.

    Shapes:
        ``score(query, profile)``: ``(n_items,)`` float64, a permutation of
        $1, \frac12, \dots, \frac1N$ (the query is ignored).

    Example:
        >>> from datetime import datetime
        >>> from personakit.types import ProfileItem
        >>> items = [ProfileItem(id="a", text="old", timestamp=datetime(2020, 1, 1)),
        ...          ProfileItem(id="b", text="undated"),
        ...          ProfileItem(id="c", text="new", timestamp=datetime(2023, 5, 1))]
        >>> [r.item.id for r in RecencyRetriever().retrieve("anything", items)]
        ['c', 'a', 'b']
    """

    def __init__(self, chronological: bool = True):
        super().__init__()
        self.chronological = bool(chronological)

    def order(self, items: list[ProfileItem]) -> np.ndarray:
        """Positions of ``items``, most recent first (the rules in the module docstring)."""
        n = len(items)
        dated = np.array([it.timestamp is not None for it in items], dtype=bool)
        secs = np.array([_seconds(it.timestamp) if it.timestamp is not None else 0.0 for it in items], dtype=np.float64)
        pos = np.arange(n)
        tie = -pos if self.chronological else pos
        # np.lexsort sorts by the last key first: undated last, newest first, then the tie rule.
        return np.lexsort((tie, -secs, ~dated)).astype(np.int64)

    def _build_index(self, items: list[ProfileItem], user_id: str | None) -> np.ndarray:
        order = self.order(items)
        scores = np.empty(len(items), dtype=np.float64)
        scores[order] = 1.0 / np.arange(1, len(items) + 1)
        return scores  # (N,)

    def _score_prepared(self, prepared: list[str], indexed: IndexedProfile) -> np.ndarray:
        return np.tile(indexed.state, (len(prepared), 1))  # (Q, N)

    def extra_repr(self) -> str:
        return f"chronological={self.chronological}"


class RecencyConfig(BaseConfig):
    """Config of :class:`RecencyRetriever`."""

    _target_ = RecencyRetriever

    chronological: bool = Field(True, description="Profile order is oldest to newest (decides ties and undated entries).")
