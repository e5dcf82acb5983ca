"""Control transformations: shuffled persona, blank generic response, reference scaffold."""

from __future__ import annotations

import pytest

from personakit.eval.controls import BLANK_GENERIC, blank_generic, persona_words, reference_scaffold, shuffle_personas
from personakit.types import Persona, ResponseExample, Turn


def _examples(n_dialogues=4, per=3):
    out = []
    for d in range(n_dialogues):
        for t in range(per):
            out.append(ResponseExample(
                id=f"dlg{d}:{2 * t + 1}", persona=Persona(sentences=[f"I am person {d}."]),
                history=[Turn(speaker="user", text="hi")], response=f"reply {d}-{t}", generic_response="hello"))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_shuffle_gives_every_example_another_dialogues_persona(seed):
    examples = _examples()
    shuffled = shuffle_personas(examples, seed=seed)
    assert [e.id for e in shuffled] == [e.id for e in examples]
    for before, after in zip(examples, shuffled):
        assert after.persona != before.persona  # one persona per dialogue here, so "other dialogue" = other persona
        assert after.response == before.response and after.history == before.history
        assert after.metadata["control"] == "shuffled_persona"
    # a permutation: every persona is used as often as before
    assert sorted(e.persona.to_text() for e in shuffled) == sorted(e.persona.to_text() for e in examples)
    assert examples[0].metadata == {}  # inputs untouched
    assert shuffle_personas(examples, seed=seed) == shuffled  # seeded


def test_shuffle_needs_two_dialogues():
    with pytest.raises(ValueError, match="one dialogue"):
        shuffle_personas(_examples(n_dialogues=1))
    with pytest.raises(ValueError, match="more than half"):
        shuffle_personas(_examples(n_dialogues=1, per=5) + _examples(n_dialogues=1, per=1)[:0] + [
            _examples(n_dialogues=2, per=1)[1]])
    assert shuffle_personas([]) == []


def test_blank_generic():
    out = blank_generic(_examples(2, 1))
    assert all(e.generic_response == BLANK_GENERIC and e.metadata["control"] == "blank_generic" for e in out)


def test_reference_scaffold_removes_persona_words():
    ex = ResponseExample(id="d:1", persona=Persona(sentences=["I love hiking in the Alps.", "My dog is Rex."]),
                         history=[Turn(speaker="user", text="hobbies?")],
                         response="I love hiking with my dog Rex, it is fun!")
    assert persona_words(ex) == {"love", "hiking", "alps", "dog", "rex"}
    (out,) = reference_scaffold([ex])
    assert out.generic_response == "I with my it is fun!"
    assert out.metadata["control"] == "reference_scaffold" and ex.generic_response is None
    only_persona = ex.model_copy(update={"response": "Rex! Hiking."})
    assert reference_scaffold([only_persona])[0].generic_response == BLANK_GENERIC
