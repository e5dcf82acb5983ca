"""NoRetrieval: the 'no personalisation' pool member."""

from __future__ import annotations

from personakit.retrieval import NoRetrieval
from personakit.types import ProfileItem, UserProfile


def test_retrieves_nothing_and_scores_zero():
    r = NoRetrieval()
    profile = UserProfile(user_id="u", items=[ProfileItem(id="1", text="a"), ProfileItem(id="2", text="b")])
    assert r.retrieve("q", profile, k=4) == []
    assert r.retrieve_batch(["q", "r"], [profile, ["x"]], k=1) == [[], []]
    assert r.score("q", profile).tolist() == [0.0, 0.0]
    assert r.score_batch(["q"], [[]])[0].shape == (0,)
