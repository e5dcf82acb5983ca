"""PFG-Questioner: the multi-questioner task built from Persuasion-for-Good."""

from __future__ import annotations

import pytest

from _shared import shared_data_path
from personakit.data import build_pfg_questioner_task, read_persuasion_for_good, top_persuaders
from personakit.types import Dialogue, Persona, Turn


def _dlg(i, day, persuader, persuadee):
    return Dialogue(
        id=f"201808{day:02d}-120000_{i}_live", participants={"persuader": persuader, "persuadee": persuadee},
        personas={"persuadee": Persona(attributes={"age": 30 + i}), "persuader": Persona(attributes={"age": 99})},
        turns=[Turn(speaker="persuader", text=f"Hello {i}"), Turn(speaker="persuadee", text=f"Hi {i}"),
               Turn(speaker="persuader", text=f"Donate {i}"), Turn(speaker="persuadee", text="Why?"),
               Turn(speaker="persuader", text=f"Kids {i}")])


DIALOGUES = [_dlg(0, 1, "a", "p0"), _dlg(1, 2, "a", "p1"), _dlg(2, 3, "a", "p2"), _dlg(3, 4, "b", "p3"),
             _dlg(4, 5, "b", "p4"), _dlg(5, 6, "c", "p5")]


def test_top_persuaders_ties_by_id():
    assert top_persuaders(DIALOGUES, 2) == [("a", 3), ("b", 2)]
    assert top_persuaders(DIALOGUES + [_dlg(6, 7, "c", "p6")], 2) == [("a", 3), ("b", 2)]  # b < c


def test_time_split():
    splits = build_pfg_questioner_task(DIALOGUES, num_responders=2)
    assert [ex.questioner_id for ex in splits["train"]] == ["p0", "p0"]
    assert [ex.questioner_id for ex in splits["dev"]] == ["p1", "p1", "p3", "p3"]
    assert [ex.questioner_id for ex in splits["test"]] == ["p2", "p2", "p4", "p4"]
    ex = splits["test"][0]
    assert ex.responder_id == "a" and ex.agent == "persuader"
    assert ex.persona.attributes == {"age": 32} and ex.user_persona.attributes == {"age": 32}  # the questioner's record
    assert ex.metadata["date"].startswith("2018-08-03") and ex.history[-1].speaker == "persuadee"


def test_turn_split_and_subsampling():
    splits = build_pfg_questioner_task(DIALOGUES, num_responders=3, split_by="turn", split_fractions=(0.5, 0.0, 0.5))
    assert len(splits["train"]) == len(splits["test"]) == 6 and not splits["dev"]
    assert {ex.questioner_id for ex in splits["train"]} == {ex.questioner_id for ex in splits["test"]}
    assert all(ex.response.startswith("Donate") for ex in splits["train"])
    small = build_pfg_questioner_task(DIALOGUES, num_responders=3, split_by="turn", split_fractions=(0.5, 0.0, 0.5),
                                      max_examples_per_responder=1)
    assert len(small["train"]) == 3 and len({ex.responder_id for ex in small["train"]}) == 3


def test_options_checked():
    with pytest.raises(ValueError, match="split_fractions"):
        build_pfg_questioner_task(DIALOGUES, split_by="turn", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="split_by"):
        build_pfg_questioner_task(DIALOGUES, split_by="random")


@pytest.mark.real_data
def test_real_persuasion_for_good():
    folder = shared_data_path("persuasionforgood", "FullData")
    dialogues = read_persuasion_for_good(folder)
    top = top_persuaders(dialogues, 12)
    assert top[0] == ("user_858", 16) and top[-1][1] == 7 and len(top) == 12
    time = build_pfg_questioner_task(dialogues)
    assert {k: len(v) for k, v in time.items()} == {"train": 930, "dev": 108, "test": 110}
    assert {ex.responder_id for ex in time["test"]} == {u for u, _ in top}
    turn = build_pfg_questioner_task(dialogues, split_by="turn")
    assert {k: len(v) for k, v in turn.items()} == {"train": 880, "dev": 125, "test": 143}
    questioners = {ex.questioner_id for ex in turn["train"]}
    assert len(questioners) == 98 and {ex.questioner_id for ex in turn["test"]} <= questioners
    for ex in turn["test"][:20]:
        assert ex.questioner_id != ex.responder_id and "extrovert" in ex.persona.attributes
        assert "donation" not in ex.persona.attributes
