"""dialogues_to_examples: dialogues -> ResponseExamples."""

from __future__ import annotations

import pytest
from _shared import shared_data_path

from personakit.data import DEFAULT_AGENTS, dialogues_to_examples, merge_consecutive_turns, read_persuasion_for_good, read_spc_jsonl
from personakit.types import Dialogue, Persona, Turn


def _dialogue(speakers, did="d", **kwargs):
    turns = [Turn(speaker=s, text=f"{s}{i}") for i, s in enumerate(speakers)]
    return Dialogue(id=did, turns=turns, **kwargs)


def _count_non_leading(turns, agent):
    """Reference: agent turns (after merging) that have a previous turn."""
    merged = [t.speaker for _, t in merge_consecutive_turns(turns)]
    return sum(1 for i, s in enumerate(merged) if s == agent and i > 0)


def test_one_example_per_non_leading_agent_turn():
    d = _dialogue(["a", "u", "a", "u", "a"], personas={"a": Persona(sentences=["I am A."]), "u": Persona(sentences=["I am U."])})
    examples = dialogues_to_examples([d], "a")
    assert [e.id for e in examples] == ["d:2", "d:4"]  # the opening agent turn has nothing to answer
    assert [e.response for e in examples] == ["a2", "a4"]
    assert [t.text for t in examples[1].history] == ["a0", "u1", "a2", "u3"]
    assert all(e.history[-1].speaker == "u" and e.agent == "a" for e in examples)
    assert examples[0].persona.sentences == ["I am A."]
    assert examples[0].user_persona.sentences == ["I am U."]
    assert examples[0].metadata == {"turn_index": 2}
    assert examples[0].dialogue_id == "d"


def test_merging_consecutive_turns():
    d = _dialogue(["u", "u", "a", "a", "u", "a"])
    merged = dialogues_to_examples([d], "a")
    assert [(e.id, e.response) for e in merged] == [("d:2", "a2 a3"), ("d:5", "a5")]
    assert [t.text for t in merged[0].history] == ["u0 u1"]
    assert [t.text for t in merged[1].history] == ["u0 u1", "a2 a3", "u4"]
    # without merging, the agent turn right after an agent turn gives no example
    unmerged = dialogues_to_examples([d], "a", merge_consecutive=False)
    assert [(e.id, e.response) for e in unmerged] == [("d:2", "a2"), ("d:5", "a5")]
    assert [t.text for t in unmerged[0].history] == ["u0", "u1"]


def test_participants_fill_ids_and_persona_from_user():
    d = _dialogue(
        ["persuader", "persuadee", "persuader"],
        participants={"persuader": "user_1", "persuadee": "user_2"},
        personas={"persuadee": Persona(attributes={"age": 30})},
        metadata={"date": "2018-09-04T04:53:49", "donation": {"persuader": 0.0}},
    )
    [ex] = dialogues_to_examples([d], DEFAULT_AGENTS["persuasion_for_good"])
    assert (ex.responder_id, ex.questioner_id, ex.user_id) == ("user_1", "user_2", "user_2")
    assert ex.persona == Persona()  # the persuader has no persona here
    assert ex.metadata == {"date": "2018-09-04T04:53:49", "turn_index": 2}  # scalar metadata only
    [ex] = dialogues_to_examples([d], "persuader", persona_from="user", include_user_persona=False)
    assert ex.persona.attributes == {"age": 30} and ex.user_persona is None
    # personas are copies: editing an example leaves the dialogue alone
    ex.persona.attributes["age"] = 99
    assert d.personas["persuadee"].attributes["age"] == 30


def test_max_history_callable_agent_and_errors():
    d1 = _dialogue(["u", "a", "u", "a", "u", "a"], did="x")
    d2 = _dialogue(["b", "c", "b"], did="y")
    examples = dialogues_to_examples([d1, d2], lambda d: "a" if d.id == "x" else "b", max_history=2)
    assert [e.id for e in examples] == ["x:1", "x:3", "x:5", "y:2"]
    assert [len(e.history) for e in examples] == [1, 2, 2, 2]
    assert [t.text for t in examples[2].history] == ["a3", "u4"]
    assert dialogues_to_examples([d2], "nobody") == []
    with pytest.raises(ValueError, match="max_history"):
        dialogues_to_examples([d1], "a", max_history=0)
    with pytest.raises(ValueError, match="speaker label"):
        dialogues_to_examples([d1], lambda d: None)


@pytest.mark.parametrize(
    "speakers",
    [["u", "a"] * 3, ["a", "a", "u", "u", "a"], ["u", "u", "u"], ["a"], [], ["u", "a", "a", "b", "a", "u", "a"]],
)
def test_count_matches_reference(speakers):
    d = _dialogue(speakers)
    examples = dialogues_to_examples([d], "a")
    assert len(examples) == _count_non_leading(d.turns, "a")
    assert all(e.history[-1].speaker != "a" for e in examples)


@pytest.mark.real_data
def test_real_spc_and_pfg_counts():
    spc = read_spc_jsonl(shared_data_path("spc", "test.jsonl"))
    examples = dialogues_to_examples(spc, DEFAULT_AGENTS["spc"])
    assert len(examples) == sum(_count_non_leading(d.turns, "User 2") for d in spc)
    first = examples[0]
    assert first.id == "SPC_transformed_data_test_00001:1"
    assert first.response == "Hi, I'm participant_2. It's nice to meet you."
    assert first.persona.sentences[0] == "I love to meet new people."
    pfg = read_persuasion_for_good(shared_data_path("persuasionforgood", "FullData"))
    pfg_examples = dialogues_to_examples(pfg, "persuader")
    assert len(pfg_examples) == 9583
    assert pfg_examples[0].responder_id == "user_585" and pfg_examples[0].questioner_id == "user_1810"
