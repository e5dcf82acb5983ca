"""CoPersona users from PFG and from review histories."""

import pytest
from _shared import shared_data_path

from personakit.data.copersona_users import build_pfg_users, build_review_users
from personakit.types import Dialogue, Turn


def _dlg(i, day, persuader="a", persuadee=None):
    return Dialogue(id=f"201808{day:02d}-120000_{i}_live",
                    participants={"persuader": persuader, "persuadee": persuadee or f"p{i}"},
                    turns=[Turn(speaker="persuader", text=f"hello {i}"), Turn(speaker="persuadee", text=f"hi {i}"),
                           Turn(speaker="persuader", text=f"donate {i}"), Turn(speaker="persuader", text="please")])


def test_time_split_and_no_leak():
    data = build_pfg_users([_dlg(3, 4), _dlg(0, 1), _dlg(1, 2, persuader="b", persuadee="a"), _dlg(2, 3)])
    assert [u.user_id for u in data.users] == ["a"]
    hist = [it.text for it in data.users[0].items]
    assert hist == ["hello 0", "donate 0 please", "hi 1"]  # persuader in 0, persuadee in 1
    assert [ex.response for ex in data.train] == ["donate 2 please"] and data.train[0].history[-1].text == "hi 2"
    assert [ex.response for ex in data.test] == ["donate 3 please"]
    held = {ex.dialogue_id for ex in data.train + data.test}
    assert all(it.fields["dialogue_id"] not in held for it in data.users[0].items)


def test_bad_options():
    with pytest.raises(ValueError, match="min_dialogues"):
        build_pfg_users([], min_dialogues=1)


@pytest.mark.real_data
def test_real_pfg():
    folder = shared_data_path("persuasionforgood", "FullData")
    data = build_pfg_users(folder, max_users=20, max_examples_per_user=2)
    assert len(data.users) == 20 and data.test and all(len(u.items) <= 8 for u in data.users)


@pytest.mark.real_data
def test_real_amazon_reviews():
    from personakit.data import read_review_histories

    path = shared_data_path("amazon2023_sample", "cds_movies_subset.jsonl")
    profiles = read_review_histories(path)
    data = build_review_users(profiles)
    assert data.users and len(data.test) == len(data.users)
    for u, ex in zip(data.users, data.test):
        assert ex.user_id == u.user_id and ex.id.split(":", 1)[1] not in [it.id for it in u.items]
