r"""Signs of degenerate generation: constant replies, replies that run past their turn, empty replies.

A collapsed system can still score well on overlap metrics (Char-F1 rewards word salad
made of frequent characters; a constant reply gets a paired t-test with ``p = nan``).
:class:`ReplyStats` makes it visible at a glance, next to the quality metrics:

* ``distinct``: the share of distinct replies, $|\{\text{norm}(p_i)\}| / n$, where
  ``norm`` lowercases and collapses whitespace; 1.0 when every reply differs, $1/n$ for
  a constant reply;
* ``multi_turn``: the share of replies that run past one turn (:func:`runs_past_turn`):
  text on a second line, or a speaker label such as ``"User:"``, ``"agent:"``,
  ``"Assistant:"`` or ``"User 1:"`` that starts another speaker's turn;
* ``empty``: the share of replies that are empty after stripping.

References are not used (they may be given for :func:`~personakit.eval.evaluate_texts`).

Example:
    >>> from personakit.eval import evaluate_texts
    >>> evaluate_texts(["i'm fine.", "i'm fine.", "Sure!\nUser: and you?"], ["a", "b", "c"], metrics=["reply_stats"])
    {'distinct': 0.6666666666666666, 'multi_turn': 0.3333333333333333, 'empty': 0.0}
"""

from __future__ import annotations

import re
from typing import Sequence

from personakit.eval.base import References, TextMetric

__all__ = ["ReplyStats", "reply_stats", "runs_past_turn", "distinct_share", "SPEAKER_LABEL"]

SPEAKER_LABEL = re.compile(
    r"(?:^|\n|[.!?\"]\s+)(?:user|agent|assistant|system|human|bot|persuader|persuadee|speaker|listener|person)"
    r"(?:\s*\d+)?\s*:", re.IGNORECASE)
"""A speaker label starting a turn: at the start, after a newline or after a sentence end."""


def runs_past_turn(text: str) -> bool:
    """Whether a reply runs past one turn: a second line of text, or a speaker label starting another turn.

    Example:
        >>> runs_past_turn("I love it. User: me too!"), runs_past_turn("Sure, at 5: see you.")
        (True, False)
    """
    body = text.strip()
    return bool(re.search(r"\n\s*\S", body)) or bool(SPEAKER_LABEL.search(body))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def distinct_share(predictions: Sequence[str]) -> float:
    """The share of distinct replies (lowercased, whitespace collapsed); ``nan`` for none."""
    if not predictions:
        return float("nan")
    return len({_norm(p) for p in predictions}) / len(predictions)


class ReplyStats(TextMetric):
    """``distinct``, ``multi_turn`` and ``empty`` shares of a set of replies (see the module docstring).

    ``higher_is_better`` is ``True`` for ``distinct`` only; the other two should be near 0.
    """

    name = "reply_stats"

    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        n = len(predictions)
        return {
            "distinct": distinct_share(predictions),
            "multi_turn": sum(runs_past_turn(p) for p in predictions) / n,
            "empty": sum(not p.strip() for p in predictions) / n,
        }

    def flat(self, result: float | dict[str, float]) -> dict[str, float]:
        assert isinstance(result, dict)
        return {k: float(v) for k, v in result.items()}


def reply_stats(predictions: Sequence[str], references: References | None = None) -> dict[str, float]:
    """Functional form of :class:`ReplyStats` (``references`` optional)."""
    refs = references if references is not None else [""] * len(predictions)
    return ReplyStats()(list(predictions), refs)  # type: ignore[return-value]
