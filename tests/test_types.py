"""The shared data model: validators, linearisation and JSON round trip."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from personakit.types import Dialogue, Persona, ProfileExample, ProfileItem, ResponseExample, Turn, UserProfile


def test_persona_to_text_and_empty():
    p = Persona(sentences=[" I am a nurse. ", ""], attributes={"age": 34, "emotion": None, "city": ""})
    assert p.to_text() == "I am a nurse. age: 34"
    assert p.to_text(with_attributes=False) == "I am a nurse."
    assert p.to_text(sep="\n") == "I am a nurse.\nage: 34"
    assert Persona().is_empty()
    assert Persona(attributes={"x": None}).is_empty()
    assert not Persona(attributes={"x": 0}).is_empty()
    assert not p.is_empty()


def test_models_forbid_unknown_fields():
    with pytest.raises(ValidationError, match="speeker"):
        Turn(speeker="a", text="hi")
    with pytest.raises(ValidationError):
        Persona(sentence=["typo"])


def test_dialogue_speakers_in_order_of_first_appearance():
    d = Dialogue(
        id="d1",
        turns=[Turn(speaker="B", text="hi"), Turn(speaker="A", text="hello"), Turn(speaker="B", text="bye")],
        personas={"A": Persona(sentences=["I ski."])},
    )
    assert d.speakers == ["B", "A"]


def _history(*speakers: str) -> list[Turn]:
    return [Turn(speaker=s, text=f"turn {i}") for i, s in enumerate(speakers)]


def test_response_example_history_must_end_with_user_turn():
    ex = ResponseExample(id="d:1", history=_history("agent", "user"), response="ok")
    assert ex.last_user_turn.speaker == "user"
    with pytest.raises(ValidationError, match=r"example 'd:2'.*history.*ends with a turn by the agent"):
        ResponseExample(id="d:2", history=_history("user", "agent"), response="ok")
    with pytest.raises(ValidationError, match=r"example 'd:3'.*'history' is empty"):
        ResponseExample(id="d:3", history=[], response="ok")
    # the agent label is configurable
    ResponseExample(id="d:4", history=_history("User 2", "User 1"), response="ok", agent="User 2")
    with pytest.raises(ValidationError):
        ResponseExample(id="d:5", history=_history("User 1", "User 2"), response="ok", agent="User 2")


def test_response_example_json_round_trip():
    ex = ResponseExample(
        id="d:1",
        persona=Persona(sentences=["I love dogs."], attributes={"age": 30, "vip": True, "score": 0.5}),
        history=_history("agent", "user"),
        response="Dogs are great!",
        generic_response="That sounds nice.",
        questioner_id="q7",
        responder_id="r1",
        metadata={"split": "test"},
    )
    again = ResponseExample.model_validate_json(ex.model_dump_json())
    assert again == ex
    assert again.persona.attributes["vip"] is True


def test_profile_models():
    item = ProfileItem(id="1", text="A review.", fields={"rating": 5}, timestamp="2023-05-01T12:00:00")
    assert item.timestamp == datetime(2023, 5, 1, 12)
    profile = UserProfile(user_id="u1", items=[item, ProfileItem(id="2", text="Another.")])
    assert profile.texts() == ["A review.", "Another."]
    ex = ProfileExample(id="e1", task="LaMP-4", input="Generate a headline: x", profile=profile, target="y")
    assert ProfileExample.model_validate_json(ex.model_dump_json()) == ex
    with pytest.raises(ValidationError, match="field 'input' is empty"):
        ProfileExample(id="e2", task="LaMP-4", input="   ", profile=profile)
