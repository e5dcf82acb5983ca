r"""The thin base class of every retriever: ``index → score → retrieve``.

A retriever ranks the entries of *one user's profile* for a query (ROPG/RSPG paper,
Salemi et al. SIGIR 2024, section 3: "a retrieval model $R$ scores the documents of the
user profile $P_u$ for the query $q(x)$").  The flow is fixed:

1. :meth:`Retriever.index` turns a profile (a :class:`~personakit.types.UserProfile`, a
   list of :class:`~personakit.types.ProfileItem` or a list of strings) into an
   :class:`IndexedProfile`, calling the subclass hook ``_build_index`` once per distinct
   profile: indexes are cached in memory, keyed by the user id *and* the content
   (id, text, timestamp of every entry), so the same user with a changed profile is
   re-indexed, and an unchanged one never is.
2. :meth:`Retriever.score` / :meth:`Retriever.score_batch` return one float64 NumPy
   score per profile entry (hooks ``_prepare_queries`` and ``_score_prepared``; queries
   against the same indexed profile are scored together).
3. :meth:`Retriever.retrieve` / :meth:`Retriever.retrieve_batch` sort by score
   descending, then by original position ascending (deterministic ties, see
   :func:`personakit.functional.retrieval.rank_order`) and return the top ``k`` as
   :class:`RetrievedItem` with 1-based ranks.

Subclasses implement ``_build_index(items, user_id) -> state``,
``_prepare_queries(queries) -> list`` (optional) and
``_score_prepared(prepared, indexed) -> ndarray (Q, N)``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence, Union

import numpy as np

from personakit.functional.retrieval import rank_order
from personakit.types import ProfileItem, UserProfile

__all__ = ["Retriever", "IndexedProfile", "RetrievedItem", "ProfileLike", "as_profile_items"]


@dataclass(frozen=True)
class RetrievedItem:
    """One retrieved profile entry.

    Attributes:
        item: The profile entry.
        score: Its retrieval score (retriever-specific scale).
        rank: 1-based rank among the profile's entries.
        index: Its position in the profile.
    """

    item: ProfileItem
    score: float
    rank: int
    index: int

    @property
    def text(self) -> str:
        return self.item.text


@dataclass(eq=False)
class IndexedProfile:
    """A profile prepared by one retriever (pass it back to that retriever's methods).

    Attributes:
        items: The profile entries, in profile order.
        user_id: The user id, or ``None`` for a bare list of entries.
        state: Whatever the retriever precomputed (BM25 weights, embeddings, ...).
    """

    items: list[ProfileItem]
    user_id: str | None
    state: Any
    _owner: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]


ProfileLike = Union[UserProfile, IndexedProfile, Sequence[ProfileItem], Sequence[str]]


def as_profile_items(profile: UserProfile | Sequence[ProfileItem] | Sequence[str]) -> tuple[str | None, list[ProfileItem]]:
    """Normalise a profile to ``(user_id, items)``; strings become items with ids ``"0"``, ``"1"``, ...

    Raises:
        TypeError: naming the position of an entry that is neither a ``ProfileItem``
            nor a string, or when a mix of both is given.
    """
    if isinstance(profile, UserProfile):
        return profile.user_id, list(profile.items)
    if isinstance(profile, (str, bytes)) or not isinstance(profile, Sequence):
        raise TypeError(
            "profile must be a UserProfile, an IndexedProfile, or a list of ProfileItem or of str; "
            f"got {type(profile).__name__}"
        )
    items = list(profile)
    if not items:
        return None, []
    if isinstance(items[0], str):
        for i, x in enumerate(items):
            if not isinstance(x, str):
                raise TypeError(f"profile entry {i}: expected str like entry 0, got {type(x).__name__}")
        return None, [ProfileItem(id=str(i), text=x) for i, x in enumerate(items)]
    for i, x in enumerate(items):
        if not isinstance(x, ProfileItem):
            raise TypeError(f"profile entry {i}: expected ProfileItem, got {type(x).__name__}")
    return None, items


class Retriever:
    """Base class: fixed ``index → score → retrieve`` flow over one user's profile.

    Scores are ``(n_items,)`` float64 NumPy arrays; higher is better.  Ties are broken
    by original position (earlier first).

    Attributes:
        cache_size: How many indexed profiles are kept in memory (least recently used
            are dropped first); ``0`` disables the cache.
    """

    cache_size: int = 4096

    def __init__(self) -> None:
        self._cache: OrderedDict[Hashable, IndexedProfile] = OrderedDict()

    # ---------------------------------------------------------------- hooks
    def _build_index(self, items: list[ProfileItem], user_id: str | None) -> Any:
        """Precompute what scoring needs for ``items``."""
        return None

    def _prepare_queries(self, queries: list[str]) -> list[Any]:
        """Turn queries into whatever ``_score_prepared`` consumes (once per batch)."""
        return list(queries)

    def _score_prepared(self, prepared: list[Any], indexed: IndexedProfile) -> np.ndarray:
        """``(Q, N)`` scores of the prepared queries against one indexed profile."""
        raise NotImplementedError

    def _ranking(self, scores: np.ndarray, indexed: IndexedProfile) -> np.ndarray:
        """Entry positions, best first (score desc, position asc)."""
        return rank_order(scores)

    # ----------------------------------------------------------------- index
    def _cache_key(self, user_id: str | None, items: list[ProfileItem]) -> Hashable:
        return (user_id, tuple((it.id, it.text, it.timestamp) for it in items))

    def index(self, profile: ProfileLike) -> IndexedProfile:
        """Index ``profile`` (cached per user id and content).

        Args:
            profile: A ``UserProfile``, a list of ``ProfileItem`` or of strings, or an
                ``IndexedProfile`` made by this retriever (returned unchanged).

        Returns:
            The :class:`IndexedProfile` to pass to :meth:`score` / :meth:`retrieve`.
        """
        if isinstance(profile, IndexedProfile):
            if profile._owner is not self:
                raise ValueError("this IndexedProfile was built by another retriever; index the profile again")
            return profile
        user_id, items = as_profile_items(profile)
        key = self._cache_key(user_id, items) if self.cache_size > 0 else None
        cache = self.__dict__.setdefault("_cache", OrderedDict())  # also when a subclass skipped __init__
        if key is not None:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        indexed = IndexedProfile(items=items, user_id=user_id, state=self._build_index(items, user_id), _owner=self)
        if key is not None:
            cache[key] = indexed
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return indexed

    def clear_cache(self) -> None:
        """Forget every cached index (e.g. after the encoder of a dense retriever was trained)."""
        self.__dict__.setdefault("_cache", OrderedDict()).clear()

    # ----------------------------------------------------------------- score
    def score(self, query: str, profile: ProfileLike) -> np.ndarray:
        """Scores of every profile entry for ``query``.

        Returns:
            ``(n_items,)`` float64 array, in profile order.
        """
        indexed = self.index(profile)
        return self._score_indexed([query], [indexed])[0]

    def score_batch(self, queries: Sequence[str], profiles: ProfileLike | Sequence[ProfileLike]) -> list[np.ndarray]:
        """Score many (query, profile) pairs; pairs sharing a profile are scored together.

        Args:
            queries: ``Q`` query strings.
            profiles: ``Q`` profiles (one per query; any mix of users), or a single
                ``UserProfile`` / ``IndexedProfile`` shared by every query.

        Returns:
            ``Q`` arrays, the ``i``-th of shape ``(len(profile_i),)``.
        """
        queries = list(queries)
        return self._score_indexed(queries, self._index_all(profiles, len(queries)))

    def _index_all(self, profiles: ProfileLike | Sequence[ProfileLike], n: int) -> list[IndexedProfile]:
        if isinstance(profiles, (UserProfile, IndexedProfile)):
            return [self.index(profiles)] * n
        if isinstance(profiles, (str, bytes)) or not isinstance(profiles, Sequence):
            raise TypeError(f"profiles must be a profile or a sequence of profiles; got {type(profiles).__name__}")
        if len(profiles) != n:
            raise ValueError(f"got {n} queries but {len(profiles)} profiles; pass one profile per query")
        seen: dict[int, IndexedProfile] = {}  # the same profile object is indexed once
        out = []
        for p in profiles:
            idx = seen.get(id(p))
            if idx is None:
                idx = seen[id(p)] = self.index(p)
            out.append(idx)
        return out

    def _score_indexed(self, queries: list[str], indexed: list[IndexedProfile]) -> list[np.ndarray]:
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise TypeError(f"query {i}: expected str, got {type(q).__name__}")
        if len(queries) == 1:  # fast path for one pair
            return [self._checked(self._score_prepared(self._prepare_queries(queries), indexed[0]), 1, indexed[0])[0]]
        groups: dict[int, list[int]] = {}
        for i, idx in enumerate(indexed):
            groups.setdefault(id(idx), []).append(i)
        prepared = self._prepare_queries(queries) if queries else []
        out: list[np.ndarray] = [np.empty(0)] * len(queries)
        for positions in groups.values():
            idx = indexed[positions[0]]
            mat = self._checked(self._score_prepared([prepared[i] for i in positions], idx), len(positions), idx)
            for row, i in enumerate(positions):
                out[i] = mat[row]
        return out

    def _checked(self, mat: np.ndarray, n_queries: int, indexed: IndexedProfile) -> np.ndarray:
        mat = np.asarray(mat, dtype=np.float64)
        if mat.shape != (n_queries, len(indexed)):
            raise RuntimeError(
                f"{type(self).__name__}._score_prepared returned shape {mat.shape}, expected {(n_queries, len(indexed))}"
            )
        return mat

    # -------------------------------------------------------------- retrieve
    def retrieve(self, query: str, profile: ProfileLike, k: int | None = None) -> list[RetrievedItem]:
        """The top ``k`` profile entries for ``query`` (all of them when ``k`` is ``None``).

        Sorted by score descending, then by position in the profile ascending.
        """
        return self.retrieve_batch([query], [profile], k=k)[0]

    def retrieve_batch(
        self, queries: Sequence[str], profiles: ProfileLike | Sequence[ProfileLike], k: int | None = None
    ) -> list[list[RetrievedItem]]:
        """:meth:`retrieve` for many (query, profile) pairs (profiles as in :meth:`score_batch`)."""
        if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0):
            raise ValueError(f"k must be a non-negative integer or None; got {k!r}")
        queries = list(queries)
        indexed = self._index_all(profiles, len(queries))
        scores = self._score_indexed(queries, indexed)
        results = []
        for s, idx in zip(scores, indexed):
            order = self._ranking(s, idx)
            if k is not None:
                order = order[:k]
            results.append([
                RetrievedItem(item=idx.items[j], score=float(s[j]), rank=r + 1, index=int(j))
                for r, j in enumerate(order.tolist())
            ])
        return results

    def __repr__(self) -> str:
        extra = self.extra_repr()
        return f"{type(self).__name__}({extra})"

    def extra_repr(self) -> str:
        return ""
