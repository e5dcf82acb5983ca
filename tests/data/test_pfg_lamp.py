"""PFG-LaMP: construction on tiny dialogues, and counts / no leakage on the real Persuasion-for-Good release."""

from __future__ import annotations

import doctest
from datetime import datetime

import pytest

import personakit.data.pfg_lamp as pfg_lamp_module
from personakit.data import parse_pfg_date
from personakit.data.pfg_lamp import build_pfg_lamp_task, format_pfg_history
from personakit.types import Dialogue, Persona, Turn

from _shared import shared_data_path


def _dialogue(user: str, day: int, idx: int, *, hour: int = 12, persuadee: str = "p") -> Dialogue:
    did = f"201808{day:02d}-{hour:02d}0000_{idx}_live"
    turns = [
        Turn(speaker="persuader", text=f"hello from {idx}"),
        Turn(speaker="persuader", text=f"second line {idx}"),  # merged with the previous turn
        Turn(speaker="persuadee", text=f"who are you {idx}"),
        Turn(speaker="persuader", text=f"a charity {idx}"),
        Turn(speaker="persuadee", text=f"tell me more {idx}"),
        Turn(speaker="persuader", text=f"save the children {idx}"),
    ]
    return Dialogue(
        id=did,
        turns=turns,
        participants={"persuader": user, "persuadee": f"{persuadee}{idx}"},
        personas={"persuader": Persona(attributes={"age": 30 + idx})},
        metadata={"date": parse_pfg_date(did)},
    )


def _corpus() -> list[Dialogue]:
    # u1: four dialogues (days 1..4), u2: two (days 2, 5), u3: one (never a target)
    return [
        _dialogue("u1", 3, 2), _dialogue("u1", 1, 0), _dialogue("u2", 2, 10), _dialogue("u1", 4, 3),
        _dialogue("u1", 2, 1), _dialogue("u2", 5, 11), _dialogue("u3", 1, 20),
    ]


def test_doctests():
    assert doctest.testmod(pfg_lamp_module).failed == 0


def test_construction_and_time_split():
    splits = build_pfg_lamp_task(_corpus())
    dialogues = {k: sorted({ex.id.rsplit(":", 1)[0] for ex in v}) for k, v in splits.items()}
    # u1 targets: days 2, 3, 4 -> train day 2, dev day 3, test day 4; u2 target: day 5 -> test
    assert dialogues == {
        "train": ["20180802-120000_1_live"],
        "dev": ["20180803-120000_2_live"],
        "test": ["20180804-120000_3_live", "20180805-120000_11_live"],
    }
    # two examples per dialogue: the persuader answers two persuadee turns (the opening turn gives none)
    assert [len(v) for v in splits.values()] == [2, 2, 4]
    ex = splits["test"][0]
    assert ex.task == "PFG-LaMP"
    assert ex.id == "20180804-120000_3_live:3"
    assert ex.target == "a charity 3"
    assert ex.input == "Persuader: hello from 3 second line 3\nPersuadee: who are you 3"
    second = splits["test"][1]
    # history_turns=3 keeps the last three merged turns
    assert second.input == "Persuadee: who are you 3\nPersuader: a charity 3\nPersuadee: tell me more 3"
    # profile: the merged persuader turns of the three earlier dialogues, oldest first
    items = ex.profile.items
    assert ex.profile.user_id == "u1"
    assert [i.id for i in items] == [f"20180801-120000_0_live:{t}" for t in (0, 3, 5)] + [
        f"20180802-120000_1_live:{t}" for t in (0, 3, 5)] + [f"20180803-120000_2_live:{t}" for t in (0, 3, 5)]
    assert items[0].text == "hello from 0 second line 0"
    assert items[0].fields == {"dialogue_id": "20180801-120000_0_live", "turn_index": 0, "reply_to": ""}
    assert items[1].fields["reply_to"] == "who are you 0"
    assert items[0].timestamp == datetime(2018, 8, 1, 12)
    assert ex.profile.persona.attributes == {"age": 33}


def test_options():
    corpus = _corpus()
    s = build_pfg_lamp_task(corpus, min_prior_dialogues=3)
    assert [len(v) for v in s.values()] == [0, 0, 2]  # only u1's 4th dialogue has three earlier ones
    s = build_pfg_lamp_task(corpus, history_turns=1)
    assert all(ex.input.count("\n") == 0 and ex.input.startswith("Persuadee: ") for v in s.values() for ex in v)
    s = build_pfg_lamp_task(corpus, max_profile_items=2)
    assert [i.id for i in s["test"][0].profile.items] == ["20180803-120000_2_live:3", "20180803-120000_2_live:5"]
    s = build_pfg_lamp_task(corpus, max_users=1, seed=0)
    assert len({ex.profile.user_id for v in s.values() for ex in v}) == 1
    s = build_pfg_lamp_task(corpus, max_examples_per_user=1)
    assert [len(v) for v in s.values()] == [1, 1, 2]
    assert build_pfg_lamp_task(corpus, max_examples_per_user=1, seed=3) == build_pfg_lamp_task(
        corpus, max_examples_per_user=1, seed=3)


def test_global_split_is_a_date_cut():
    s = build_pfg_lamp_task(_corpus(), split_by="global", split_fractions=(0.5, 0.25, 0.25))
    dates = {k: [parse_pfg_date(ex.id) for ex in v] for k, v in s.items()}
    assert [len({d for d in v}) for v in dates.values()] == [2, 1, 1]
    assert max(dates["train"]) <= min(dates["dev"]) <= max(dates["dev"]) <= min(dates["test"])


def _many_users() -> list[Dialogue]:
    # ten users, u0..u9, with three dialogues each on days 1..3 (two target dialogues each)
    return [_dialogue(f"u{u}", day, 10 * u + day) for u in range(10) for day in (1, 2, 3)]


def test_user_split_holds_out_users():
    corpus = _many_users()
    s = build_pfg_lamp_task(corpus, split_by="user", split_fractions=(0.5, 0.2, 0.3))
    users = {k: {ex.profile.user_id for ex in v} for k, v in s.items()}
    assert [len(u) for u in users.values()] == [5, 2, 3]  # floor(0.5 * 10), floor(0.2 * 10), the rest
    assert not users["train"] & users["dev"] and not users["train"] & users["test"] and not users["dev"] & users["test"]
    # every target dialogue of a user is in that user's split: 2 target dialogues x 2 examples each
    assert [len(v) for v in s.values()] == [20, 8, 12]
    # profiles still hold only the user's strictly earlier dialogues
    for v in s.values():
        for ex in v:
            day = parse_pfg_date(ex.id)
            assert all(item.timestamp < datetime.fromisoformat(day) for item in ex.profile.items)
            assert all(item.id.split("_")[1] != ex.id.split("_")[1] for item in ex.profile.items)
    # deterministic for a seed, another assignment for another seed (the user shuffle is seeded)
    assert s == build_pfg_lamp_task(corpus, split_by="user", split_fractions=(0.5, 0.2, 0.3))
    others = [{ex.profile.user_id for ex in build_pfg_lamp_task(corpus, split_by="user", seed=seed,
                                                                 split_fractions=(0.5, 0.2, 0.3))["test"]}
              for seed in (1, 2, 3)]
    assert any(o != users["test"] for o in others)
    # min_prior_dialogues=2 keeps only the day-3 dialogues; the users are the same
    s2 = build_pfg_lamp_task(corpus, split_by="user", split_fractions=(0.5, 0.2, 0.3), min_prior_dialogues=2)
    assert [len(v) for v in s2.values()] == [10, 4, 6]
    assert {k: {ex.profile.user_id for ex in v} for k, v in s2.items()} == users


def test_same_second_is_not_earlier():
    a = _dialogue("u1", 1, 0)
    b = _dialogue("u1", 1, 1)  # same date and time as a
    s = build_pfg_lamp_task([a, b, _dialogue("u1", 2, 2)])
    assert sum(len(v) for v in s.values()) == 2  # only the day-2 dialogue is a target
    assert len(s["test"][0].profile.items) == 6


def test_flagged_and_errors():
    flagged = _dialogue("u1", 5, 9).model_copy(update={"id": "BAD_20180805-120000_9_live", "metadata": {"flagged": True}})
    corpus = _corpus() + [flagged]
    assert any(ex.id.startswith("BAD_") for v in build_pfg_lamp_task(corpus).values() for ex in v)
    assert not any(ex.id.startswith("BAD_") for v in build_pfg_lamp_task(corpus, drop_flagged=True).values() for ex in v)
    undated = Dialogue(id="nodate", turns=[Turn(speaker="persuader", text="hi")], participants={"persuader": "u9"})
    with pytest.raises(ValueError, match="dialogue 'nodate': no date"):
        build_pfg_lamp_task([undated])
    with pytest.raises(ValueError, match="min_prior_dialogues"):
        build_pfg_lamp_task(_corpus(), min_prior_dialogues=0)
    with pytest.raises(ValueError, match="split_by"):
        build_pfg_lamp_task(_corpus(), split_by="random")
    with pytest.raises(ValueError, match="split_fractions"):
        build_pfg_lamp_task(_corpus(), split_by="global", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="split_fractions"):
        build_pfg_lamp_task(_corpus(), split_by="user", split_fractions=(0.5, 0.5))
    with pytest.raises(TypeError, match=r"dialogues\[0\] is a str"):
        build_pfg_lamp_task(["not a dialogue"])


def test_format_history():
    assert format_pfg_history([Turn(speaker="persuadee", text="a\n b")]) == "Persuadee: a b"


@pytest.mark.real_data
def test_real_persuasion_for_good():
    folder = shared_data_path("persuasionforgood", "FullData")
    splits = build_pfg_lamp_task(folder)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1198, "dev": 550, "test": 1168}
    n_dialogues = {k: len({ex.id.rsplit(":", 1)[0] for ex in v}) for k, v in splits.items()}
    assert n_dialogues == {"train": 131, "dev": 59, "test": 126}
    assert len({ex.profile.user_id for ex in splits["test"]}) == 126
    ids = [ex.id for v in splits.values() for ex in v]
    assert len(ids) == len(set(ids))
    for split in splits.values():
        for ex in split:
            did, turn = ex.id.rsplit(":", 1)
            date = datetime.fromisoformat(parse_pfg_date(did))
            assert ex.profile.items, ex.id
            assert ex.input.splitlines()[-1].startswith("Persuadee: ")
            assert ex.target and ex.task == "PFG-LaMP"
            for item in ex.profile.items:
                # no leakage: every profile entry comes from a strictly earlier dialogue of the same persuader
                assert item.timestamp < date, (ex.id, item.id)
                assert item.fields["dialogue_id"] != did
                assert item.id != ex.id
    # per-user time split: for every user, every train dialogue < every dev dialogue < every test dialogue
    spans: dict[tuple[str, str], list[datetime]] = {}
    for name, split in splits.items():
        for ex in split:
            spans.setdefault((ex.profile.user_id, name), []).append(datetime.fromisoformat(parse_pfg_date(ex.id)))
    for (user, name), dates in spans.items():
        if name == "test":
            assert len(set(dates)) == 1  # one test dialogue per user
        for later in {"train": ("dev", "test"), "dev": ("test",), "test": ()}[name]:
            if (user, later) in spans:
                assert max(dates) < min(spans[(user, later)]), (user, name, later)


def test_config_matches_function():
    from personakit.data.pfg_lamp import PFGLaMPConfig
    from personakit.testing import assert_config_matches

    assert_config_matches(PFGLaMPConfig, exclude=["dialogues_or_folder"])
    cfg = PFGLaMPConfig.from_dict({"history_turns": 1, "max_examples_per_user": 1})
    assert cfg.build(dialogues_or_folder=_corpus()) == build_pfg_lamp_task(_corpus(), history_turns=1, max_examples_per_user=1)


@pytest.mark.real_data
def test_real_user_split_counts():
    folder = shared_data_path("persuasionforgood", "FullData")
    expected = {2: {"train": (29, 76, 703), "dev": (11, 55, 501), "test": (19, 59, 542)},
                1: {"train": (63, 141, 1302), "dev": (25, 60, 560), "test": (38, 115, 1054)}}
    for m, counts in expected.items():
        splits = build_pfg_lamp_task(folder, min_prior_dialogues=m, split_by="user", split_fractions=(0.5, 0.2, 0.3))
        got = {k: (len({ex.profile.user_id for ex in v}), len({ex.id.rsplit(":", 1)[0] for ex in v}), len(v))
               for k, v in splits.items()}
        assert got == counts
        users = [{ex.profile.user_id for ex in v} for v in splits.values()]
        assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
