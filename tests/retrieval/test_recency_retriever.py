"""RecencyRetriever: newest first, undated last, documented tie rule, score = 1/rank."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from personakit.retrieval import RecencyRetriever
from personakit.types import ProfileItem


def _item(i, ts):
    return ProfileItem(id=str(i), text=f"entry {i}", timestamp=ts)


def test_newest_first_undated_last_and_ties():
    d = datetime(2021, 6, 1)
    items = [_item(0, d), _item(1, None), _item(2, d + timedelta(days=3)), _item(3, d), _item(4, None)]
    ids = [r.item.id for r in RecencyRetriever().retrieve("ignored", items)]
    assert ids == ["2", "3", "0", "4", "1"]  # ties and undated: later position first
    ids = [r.item.id for r in RecencyRetriever(chronological=False).retrieve("ignored", items)]
    assert ids == ["2", "0", "3", "1", "4"]


def test_scores_are_reciprocal_ranks_and_ignore_the_query():
    d = datetime(2020, 1, 1)
    items = [_item(i, d + timedelta(hours=h)) for i, h in enumerate([5, 1, 9])]
    r = RecencyRetriever()
    s = r.score("a", items)
    np.testing.assert_allclose(s, [1 / 2, 1 / 3, 1.0])
    np.testing.assert_array_equal(s, r.score("something else entirely", items))
    assert [x.rank for x in r.retrieve("q", items, k=2)] == [1, 2]


def test_naive_and_aware_timestamps_mix():
    aware = datetime(2022, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))  # 07:00 UTC
    naive = datetime(2022, 1, 1, 8)  # read as 08:00 UTC
    ids = [r.item.id for r in RecencyRetriever().retrieve("q", [_item(0, aware), _item(1, naive)])]
    assert ids == ["1", "0"]


def test_strings_without_timestamps_follow_the_tie_rule():
    assert [r.index for r in RecencyRetriever().retrieve("q", ["a", "b", "c"])] == [2, 1, 0]
    assert RecencyRetriever().score("q", []).shape == (0,)
