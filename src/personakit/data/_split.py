"""Shared step of the dated PFG tasks: cap the examples of each (split, user) group, then order each split."""

from __future__ import annotations

import random
from typing import Hashable, Mapping, Optional, Sequence, TypeVar

__all__ = ["cap_and_order"]

T = TypeVar("T")


def cap_and_order(groups: Mapping[tuple[str, Hashable], list[tuple[tuple, T]]], splits: Sequence[str],
                  max_per_group: Optional[int], rng: random.Random) -> dict[str, list[T]]:
    """Keep at most ``max_per_group`` examples of every ``(split, group)``, then sort every split by its keys.

    Groups are visited in sorted order and each one over the cap keeps a seeded random sample
    (``rng.sample`` of its positions, kept in their original order), so the result only
    depends on ``rng``'s seed.

    Args:
        groups: ``(split, group id) -> [(sort key, example), ...]``.
        splits: the split names of the result (each present, possibly empty).
        max_per_group: the cap; ``None`` keeps everything.
        rng: the random source of the samples.

    Returns:
        ``split -> examples`` ordered by their sort keys (e.g. ``(date, dialogue id, turn index)``).

    Example:
        >>> cap_and_order({("train", "u1"): [((2,), "b"), ((1,), "a")]}, ["train", "test"], None, random.Random(0))
        {'train': ['a', 'b'], 'test': []}
    """
    out: dict[str, list[tuple[tuple, T]]] = {s: [] for s in splits}
    for (split, _group), items in sorted(groups.items()):
        if max_per_group is not None and len(items) > max_per_group:
            keep = sorted(rng.sample(range(len(items)), max_per_group))
            items = [items[i] for i in keep]
        out[split].extend(items)
    return {s: [ex for _, ex in sorted(items, key=lambda r: r[0])] for s, items in out.items()}
