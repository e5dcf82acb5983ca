"""Clean a generic LLM's reply into one agent message: :func:`clean_generic_response`."""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["clean_generic_response", "SPEAKER_LABELS"]

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
    """
    own = _alternation([agent_name, "assistant", "agent", "bot", "ai", "me"])
    prefix = re.compile(
        rf"^\s*(?:<\s*(?:{own})\s*>\s*:?|\**(?:{own})(?:['\u2019]s)?\s*(?:reply|response|message|answer)?\**\s*:\**"
        r"|\**(?:reply|response|message|answer|generic\s+reply|generic\s+response)\**\s*:\**)\s*",
        re.IGNORECASE,
    )
    labels = _alternation([agent_name, user_name, *SPEAKER_LABELS])
    turn = re.compile(
        rf"^\s*(?:<\s*[\w ]{{1,20}}\s*>|\**(?:{labels})\**\s*:"
        rf"|(?:{labels})['\u2019]s\s+(?:last|next|previous)\s+(?:message|reply|turn))",
        re.IGNORECASE,
    )

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
    return text.strip()
