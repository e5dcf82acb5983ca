"""ReplyStats: distinct, multi-turn and empty shares of generated replies."""

from __future__ import annotations

import math

import pytest

from personakit.eval import evaluate_texts
from personakit.eval.degenerate import distinct_share, reply_stats, runs_past_turn


@pytest.mark.parametrize("text, expected", [
    ("I love hiking.", False),
    ("It starts at 5: come early.", False),
    ("I love hiking.\nUser: me too", True),
    ("That's great! User 2: yes", True),
    ("sounds fun. assistant: what else?", True),
    ("...\n\nHow to make this sentence more concise:", True),
    ("  trailing newline is fine \n", False),
])
def test_runs_past_turn(text, expected):
    assert runs_past_turn(text) is expected


def test_distinct_share_ignores_case_and_spaces():
    assert distinct_share(["Hi  there", "hi there", "bye"]) == pytest.approx(2 / 3)
    assert distinct_share(["same"] * 4) == 0.25
    assert math.isnan(distinct_share([]))


def test_reply_stats_through_evaluate_texts_and_functional_form():
    preds = ["i'm a lot of fun.", "i'm a lot of fun.", "", "ok\nuser: and you"]
    got = evaluate_texts(preds, ["x"] * 4, metrics=["reply_stats"])
    assert got == {"distinct": 0.75, "multi_turn": 0.25, "empty": 0.25}
    assert reply_stats(preds) == got
