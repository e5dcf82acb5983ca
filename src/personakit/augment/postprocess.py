"""Clean a generic LLM's reply into one agent message (:func:`clean_generic_response`) and
detect speaker labels that leaked into it (:func:`speaker_label_leak`)."""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["clean_generic_response", "speaker_label_leak", "SPEAKER_LABELS"]

SPEAKER_LABELS: tuple[str, ...] = (
    "user", "assistant", "agent", "system", "human", "bot", "ai",
    "speaker", "listener", "persuader", "persuadee", "partner", "self", "user 1", "user 2",
)
"""Labels that, at the start of a line, mark a new speaker turn (matched case-insensitively)."""

_NOTE = re.compile(r"^\s*(?:\([^()]*\)|\[[^\[\]]*\])\s*$")  # a line that is only "(...)" or "[...]"

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}


def _alternation(labels: Iterable[str]) -> str:
    unique = sorted({" ".join(label.split()) for label in labels if label.strip()}, key=len, reverse=True)
    return "|".join(re.escape(label).replace(r"\ ", r"\s+") for label in unique)


def _own_prefix(agent_name: str) -> re.Pattern[str]:
    """A role prefix of the agent's own turn at the start of a text (``"Agent:"``, ``"Reply:"``, ``"<agent>"``)."""
    own = _alternation([agent_name, "assistant", "agent", "bot", "ai", "me"])
    return re.compile(
        rf"^\s*(?:<\s*(?:{own})\s*>\s*:?|\**(?:{own})(?:['\u2019]s)?\s*(?:reply|response|message|answer)?\**\s*:\**"
        r"|\**(?:reply|response|message|answer|generic\s+reply|generic\s+response)\**\s*:\**)\s*",
        re.IGNORECASE,
    )


def _turn_start(agent_name: str, user_name: str) -> re.Pattern[str]:
    """A line that starts a speaker turn (``"User:"``, ``"<user>"``) or echoes a prompt heading."""
    labels = _alternation([agent_name, user_name, *SPEAKER_LABELS])
    return re.compile(
        rf"^\s*(?:<\s*[\w ]{{1,20}}\s*>|\**(?:{labels})\**\s*:"
        rf"|(?:{labels})['\u2019]s\s+(?:last|next|previous)\s+(?:message|reply|turn))",
        re.IGNORECASE,
    )


def _label(agent_name: str, user_name: str) -> str:
    """The template's speaker names as a case-sensitive whole word, with an optional number (``"Agent_1"``)."""
    return rf"(?<![\w-])(?:{_alternation([agent_name, user_name])})(?:[_\s]?\d+)?(?![\w-])"


def _self_naming(agent_name: str, user_name: str) -> re.Pattern[str]:
    """A speaker calling itself by a prompt label: "I'm Agent", "my name is User" (the label case-sensitive)."""
    return re.compile(rf"(?i:\b(?:i\s*['\u2019]?\s*m|i\s+am|my\s+name\s+is|this\s+is|call\s+me))\s+"
                      rf"{_label(agent_name, user_name)}")


def _names_word(agent_name: str, user_name: str) -> re.Pattern[str]:
    """The template's speaker names as words (``"Agent"``, ``"Agent_1"``; not ``"agent"`` or ``"Agents"``)."""
    return re.compile(_label(agent_name, user_name))


def speaker_label_leak(text: str, agent_name: str = "Agent", user_name: str = "User") -> bool:
    """Whether a raw completion shows the prompt's speaker labels: a leak of the prompt format.

    A leak is a role prefix at the start (``"Agent:"``, ``"User:"``, ``"<agent>"``,
    ``"Assistant:"``), a new speaker turn on a later line, or the template's names
    ``agent_name`` / ``user_name`` used as words in the text, matched case-sensitively
    (``"I'm Agent in a friendly chat."``, ``"Thanks, User!"``; ``"my travel agent"`` is
    not one).  :func:`clean_generic_response` removes the prefixes, the later turns and a
    sentence in which the speaker names itself by a label; this function measures how
    often a template makes the model write them (``AugmentStats.label_leaks``).

    Example:
        >>> speaker_label_leak("I'm Agent in a friendly chat.")
        True
        >>> speaker_label_leak("My travel agent booked it."), speaker_label_leak("Agent: Sure.")
        (False, True)
    """
    if _own_prefix(agent_name).match(text) or _names_word(agent_name, user_name).search(text):
        return True
    return any(_turn_start(agent_name, user_name).match(line) for line in text.splitlines())


def _drop_self_naming(text: str, agent_name: str, user_name: str) -> str:
    """Drop the sentences in which the speaker names itself by a prompt label."""
    naming = _self_naming(agent_name, user_name)
    if not naming.search(text):
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(s for s in sentences if not naming.search(s))


def clean_generic_response(text: str, agent_name: str = "Agent", user_name: str = "User") -> str:
    """Turn a raw completion into the agent's message alone.

    Small chat models often echo the transcript format of the prompt; these steps undo
    that, in order:

    1. **Role prefixes** at the start are removed, repeatedly: ``"Agent:"`` (the
       template's ``agent_name``), ``"Assistant:"``, ``"Reply:"``, ``"Response:"``,
       ``"Agent's reply:"``, ``"<agent>"`` and the like.
    2. **New speaker turns** are cut: the text ends before the first line that starts
       with a speaker label and a colon (``"User:"``, the template's ``user_name`` or
       ``agent_name``, or one of :data:`SPEAKER_LABELS`), with a ``<user>``-style tag,
       or with an echo of the prompt's headings (``"User's last message"``), i.e. where
       the model goes on to write the next turns of the conversation.
    3. **Notes** are dropped: a line that is only a parenthesised or bracketed remark
       (``"(no more than 2 sentences)"``), as small models sometimes write.
    4. **Whitespace** is collapsed: the remaining lines are joined with single spaces.
    5. **Quotes** around the whole message (``"..."``, ``'...'``, curly quotes, ``«...»``)
       are removed, after stripping the prefix again inside them.
    6. **Self-naming by a label** is dropped: a sentence in which the speaker calls itself
       by the prompt's ``agent_name`` or ``user_name`` (``"Hi, I'm Agent."``, matched
       case-sensitively), a leak of the prompt format that says nothing about the reply.
       :func:`speaker_label_leak` tells whether a raw completion had any such leak.

    The text before the first speaker turn is kept even when the model wrote more turns
    after it; a completion that *starts* with another speaker's turn becomes ``""``.

    Args:
        text: the raw completion.
        agent_name: the name the prompt gives the agent (its prefix is stripped).
        user_name: the name the prompt gives the user (a line starting with it is cut).

    Returns:
        The cleaned message (possibly empty).

    Example:
        >>> clean_generic_response('Agent: "Sure, I can help with that."\\nUser: thanks!')
        'Sure, I can help with that.'
        >>> clean_generic_response("Listener's reply: That sounds hard.\\nHow are you now?", "Listener", "Speaker")
        'That sounds hard. How are you now?'
        >>> clean_generic_response("Hi, I'm Agent. I like hiking too!")
        'I like hiking too!'
    """
    prefix = _own_prefix(agent_name)
    turn = _turn_start(agent_name, user_name)

    def strip_prefix(s: str) -> str:
        while True:
            new = prefix.sub("", s, count=1)
            if new == s:
                return s.strip()
            s = new

    text = strip_prefix(text)
    kept: list[str] = []
    for line in text.splitlines():
        if turn.match(line):
            break
        if not _NOTE.match(line):
            kept.append(line)
    text = " ".join(" ".join(kept).split())
    for _ in range(2):
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
            inner = text[1:-1]
            if text[0] not in inner or text[0] != _QUOTES[text[0]]:  # one quoted span, not "a" and "b"
                text = strip_prefix(inner)
    return _drop_self_naming(text, agent_name, user_name).strip()
