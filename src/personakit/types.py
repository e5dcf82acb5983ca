"""The data model shared by every personakit family (SPEC §2).

One persona store feeds any method: the readers in :mod:`personakit.data` turn each
dataset into these pydantic models, and every model, retriever and recipe consumes
them.

* :class:`Persona`: free-text sentences and/or typed attributes.
* :class:`Turn` and :class:`Dialogue`: a conversation with the personas of its speakers.
* :class:`ProfileItem` and :class:`UserProfile`: a user's history (LaMP profile
  entries, reviews, past utterances).
* :class:`ResponseExample`: one training/evaluation point for response generation.
* :class:`ProfileExample`: one LaMP-style input with its user profile and target.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AttributeValue",
    "Persona",
    "Turn",
    "Dialogue",
    "ProfileItem",
    "UserProfile",
    "ResponseExample",
    "ProfileExample",
]

AttributeValue = Union[str, int, float, bool, None]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Persona(_Model):
    """A persona: free-text sentences and/or typed attributes.

    Args:
        sentences: persona statements such as ``"I love to bake cookies."``.
        attributes: typed attributes, e.g. Persuasion-for-Good demographics and
            Big-Five scores, or an EmpatheticDialogues ``emotion`` label.

    Example:
        >>> p = Persona(sentences=["I am a nurse."], attributes={"age": 34})
        >>> p.to_text()
        'I am a nurse. age: 34'
    """

    sentences: list[str] = Field(default_factory=list)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    def to_text(self, sep: str = " ", with_attributes: bool = True) -> str:
        """Linearise the persona for a prompt: sentences, then ``key: value`` attributes."""
        parts = [s.strip() for s in self.sentences if s.strip()]
        if with_attributes:
            parts += [f"{k}: {v}" for k, v in self.attributes.items() if v is not None and v != ""]
        return sep.join(parts)

    def is_empty(self) -> bool:
        return not self.sentences and not any(v not in (None, "") for v in self.attributes.values())


class Turn(_Model):
    """One utterance of a dialogue."""

    speaker: str
    text: str


class Dialogue(_Model):
    """A conversation.

    Args:
        id: a dataset-unique identifier.
        turns: the utterances in order.
        personas: persona of each speaker, keyed by the speaker label used in ``turns``.
        participants: stable participant ids keyed by speaker label, so the same
            person can be followed across dialogues (e.g. Persuasion-for-Good user ids).
        metadata: anything else the source provides (situation prompt, split, date...).
    """

    id: str
    turns: list[Turn]
    personas: dict[str, Persona] = Field(default_factory=dict)
    participants: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        """Speaker labels in order of first appearance."""
        seen: dict[str, None] = {}
        for t in self.turns:
            seen.setdefault(t.speaker, None)
        return list(seen)


class ProfileItem(_Model):
    """One entry of a user's history.

    Args:
        id: identifier of the entry (LaMP profile id, review id, utterance id).
        text: the main text used by retrievers.
        fields: task-specific fields (``title``, ``score``, ``rating``, ``category``...).
        timestamp: when the entry was written, if known.
    """

    id: str
    text: str
    fields: dict[str, Any] = Field(default_factory=dict)
    timestamp: Optional[datetime] = None


class UserProfile(_Model):
    """A user's history and (optionally) persona."""

    user_id: str
    items: list[ProfileItem] = Field(default_factory=list)
    persona: Optional[Persona] = None

    def texts(self) -> list[str]:
        return [item.text for item in self.items]


class ResponseExample(_Model):
    """One training/evaluation point for personalised response generation.

    ``history`` ends with a turn by someone other than the responding ``agent``
    (the user turn the response answers); ``response`` is the agent's target turn.

    Args:
        id: unique id, ``"{dialogue_id}:{turn_index}"`` for examples made from dialogues.
        persona: the responding agent's persona.
        history: previous turns, oldest first, ending with a user turn.
        response: the target (personalised) response R_P.
        agent: speaker label of the responding agent.
        generic_response: the generic response R_G, once augmented (GRAG).
        user_persona: the persona of the other party, when the dataset has it.
        user_id: the person the response is personalised for, when that differs from
            the agent (LaMP-style tasks).
        questioner_id: who asked (the questioner-aware family).
        responder_id: who answers (a stable id of the agent across dialogues).
        dialogue_id: the source dialogue.
        metadata: anything else.
    """

    id: str
    persona: Persona = Field(default_factory=Persona)
    history: list[Turn]
    response: str
    agent: str = "agent"
    generic_response: Optional[str] = None
    user_persona: Optional[Persona] = None
    user_id: Optional[str] = None
    questioner_id: Optional[str] = None
    responder_id: Optional[str] = None
    dialogue_id: Optional[str] = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _history_ends_with_user(self) -> "ResponseExample":
        if not self.history:
            raise ValueError(f"example {self.id!r}: field 'history' is empty; it must end with a user turn")
        if self.history[-1].speaker == self.agent:
            raise ValueError(
                f"example {self.id!r}: field 'history' ends with a turn by the agent {self.agent!r}; "
                "it must end with a user turn"
            )
        return self

    @property
    def last_user_turn(self) -> Turn:
        return self.history[-1]


class ProfileExample(_Model):
    """One LaMP-style input: a task input, the user's profile and (optionally) the target.

    Args:
        id: the example id.
        task: the task name, e.g. ``"LaMP-4"``.
        input: the task input text (template plus the user's content).
        profile: the user's profile entries.
        target: the gold output, when known.
    """

    id: str
    task: str
    input: str
    profile: UserProfile
    target: Optional[str] = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("field 'input' is empty")
        return v
