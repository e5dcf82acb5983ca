"""Turn dialogues into response-generation examples (one per non-leading agent turn)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal, Optional, Union

from personakit.types import Dialogue, Persona, ResponseExample, Turn

__all__ = ["DEFAULT_AGENTS", "dialogues_to_examples", "merge_consecutive_turns"]

DEFAULT_AGENTS: dict[str, str] = {
    "spc": "User 2",
    "convai2": "self",
    "empathetic_dialogues": "listener",
    "persuasion_for_good": "persuader",
    "builtin": "agent",
}
"""The responding agent of each dialogue dataset, as used by GRAG and the questioner-aware family.

Synthetic-Persona-Chat: ``"User 2"``; ConvAI2: ``"self"``; EmpatheticDialogues:
``"listener"``; Persuasion-for-Good: ``"persuader"``; the built-in corpus: ``"agent"``.
"""

AgentSpec = Union[str, Callable[[Dialogue], str]]


def merge_consecutive_turns(turns: Iterable[Turn], sep: str = " ") -> list[tuple[int, Turn]]:
    """Merge runs of turns by the same speaker.

    Returns:
        ``(index of the run's first turn in the input, merged turn)`` pairs.

    Example:
        >>> ts = [Turn(speaker="a", text="Hi."), Turn(speaker="a", text="You there?"), Turn(speaker="b", text="Yes.")]
        >>> [(i, t.text) for i, t in merge_consecutive_turns(ts)]
        [(0, 'Hi. You there?'), (2, 'Yes.')]
    """
    out: list[tuple[int, Turn]] = []
    for i, turn in enumerate(turns):
        if out and out[-1][1].speaker == turn.speaker:
            first, prev = out[-1]
            out[-1] = (first, Turn(speaker=turn.speaker, text=f"{prev.text}{sep}{turn.text}"))
        else:
            out.append((i, turn))
    return out


def _copy(persona: Persona) -> Persona:
    # attribute values are scalars, so copying the containers is a full copy (and
    # much faster than a deep copy)
    return Persona(sentences=list(persona.sentences), attributes=dict(persona.attributes))


def _scalar_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is None or isinstance(v, (str, int, float, bool))}


def dialogues_to_examples(
    dialogues: Iterable[Dialogue],
    agent: AgentSpec,
    *,
    max_history: Optional[int] = None,
    merge_consecutive: bool = True,
    include_user_persona: bool = True,
    persona_from: Literal["agent", "user"] = "agent",
) -> list[ResponseExample]:
    """Make one :class:`~personakit.types.ResponseExample` per non-leading agent turn.

    For a dialogue $(u_1, \\dots, u_T)$ and agent $a$, every turn $u_t$ spoken by
    $a$ whose previous turn $u_{t-1}$ is by someone else gives the example
    (persona $P_a$, history $H = (u_1, \\dots, u_{t-1})$, response $R_P = u_t$). An
    agent turn that opens the dialogue has nothing to answer and is skipped.

    Args:
        dialogues: the dialogues (any reader's output).
        agent: the responding speaker label (see :data:`DEFAULT_AGENTS`), or a
            callable ``Dialogue -> label`` choosing it per dialogue. Dialogues
            where the agent never speaks give no example.
        max_history: keep only the last ``max_history`` turns of the history
            (at least 1); ``None`` keeps everything.
        merge_consecutive: first merge consecutive utterances of one speaker into
            one turn (texts joined with a space), so a response is the agent's whole
            turn and the history alternates. When ``False``, an agent utterance that
            directly follows another agent utterance gives no example (its history
            would not end with a user turn).
        include_user_persona: fill ``user_persona`` with the persona of the speaker
            of the last history turn, when the dialogue has it.
        persona_from: whose persona fills ``persona``: the ``"agent"`` (default;
            SPC, ConvAI2) or the ``"user"`` the agent talks to (GRAG's Persuasion-for-Good
            setting, where the persuader adapts to the persuadee's profile).

    Returns:
        Examples in dialogue order, then turn order. ``id`` is
        ``"{dialogue_id}:{turn_index}"`` with ``turn_index`` the position in
        ``Dialogue.turns`` of the response's first utterance; ``responder_id`` is the
        agent's and ``questioner_id`` / ``user_id`` the user's entry of
        ``Dialogue.participants`` when present; ``metadata`` holds ``turn_index`` and the
        dialogue's scalar metadata (``situation``, ``date``, ``emotion``...).

    Raises:
        ValueError: ``max_history < 1``, or the agent callable returns a non-string.

    Example:
        >>> d = Dialogue(id="d0", turns=[Turn(speaker="User 1", text="Hi!"),
        ...                              Turn(speaker="User 2", text="Hello."),
        ...                              Turn(speaker="User 2", text="I bake."),
        ...                              Turn(speaker="User 1", text="Cool.")],
        ...              personas={"User 2": Persona(sentences=["I love to bake."])})
        >>> [ex] = dialogues_to_examples([d], "User 2")
        >>> ex.id, ex.response, [t.text for t in ex.history], ex.persona.sentences
        ('d0:1', 'Hello. I bake.', ['Hi!'], ['I love to bake.'])
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history must be at least 1, got {max_history}")
    if persona_from not in ("agent", "user"):
        raise ValueError(f"persona_from must be 'agent' or 'user', got {persona_from!r}")
    examples: list[ResponseExample] = []
    for dialogue in dialogues:
        label = agent(dialogue) if callable(agent) else agent
        if not isinstance(label, str):
            raise ValueError(f"dialogue {dialogue.id!r}: the agent callable returned {label!r}, expected a speaker label")
        if merge_consecutive:
            indexed = merge_consecutive_turns(dialogue.turns)
        else:
            indexed = list(enumerate(dialogue.turns))
        turns = [t for _, t in indexed]
        agent_persona = dialogue.personas.get(label)
        base_meta = _scalar_metadata(dialogue.metadata)
        for pos, (orig_index, turn) in enumerate(indexed):
            if turn.speaker != label or pos == 0 or turns[pos - 1].speaker == label:
                continue
            start = 0 if max_history is None else max(0, pos - max_history)
            history = turns[start:pos]
            user = history[-1].speaker
            user_persona = dialogue.personas.get(user)
            persona = agent_persona if persona_from == "agent" else user_persona
            examples.append(
                ResponseExample(
                    id=f"{dialogue.id}:{orig_index}",
                    persona=_copy(persona) if persona is not None else Persona(),
                    history=list(history),
                    response=turn.text,
                    agent=label,
                    user_persona=_copy(user_persona) if include_user_persona and user_persona is not None else None,
                    user_id=dialogue.participants.get(user),
                    questioner_id=dialogue.participants.get(user),
                    responder_id=dialogue.participants.get(label),
                    dialogue_id=dialogue.id,
                    metadata={**base_meta, "turn_index": orig_index},
                )
            )
    return examples
