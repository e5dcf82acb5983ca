"""The built-in sample corpus: 40 short persona dialogues shipped with personakit.

The corpus lets the demos, tutorials and doc examples run with no files from the user.
It is original text written for personakit (not drawn or paraphrased from any
dataset) and is released under the package's Apache-2.0 licence
(:data:`BUILTIN_CORPUS_LICENSE`).

Contents of ``dialogues.jsonl`` (one :class:`~personakit.types.Dialogue` per line):

* 40 dialogues: 28 in the ``"train"`` split and 12 in the ``"test"`` split
  (``metadata["split"]``), four per topic (``metadata["topic"]``): food, pets,
  travel, work, music, sports, books, weather, school and health.
* Two speakers, ``"user"`` and ``"agent"``; 6 or 8 turns that strictly alternate and
  start with the user, so each dialogue ends on an agent reply. Every turn is one or
  two casual sentences of 5 to 25 words.
* ``personas["agent"]`` holds 4 or 5 first-person sentences (job, hobbies, family,
  likes, places) that the agent's replies visibly draw on, so a persona-aware
  responder can beat a generic one; ``personas["user"]`` holds 2 or 3 sentences.
* ``participants`` gives stable ids. Three agents recur across dialogues, talking to
  different users: ``agent-rosa`` (3 dialogues, train and test), ``agent-kofi``
  (3, train and test) and ``agent-ines`` (2, train and test); every other agent
  and every user appears once. This makes the corpus usable for responder- and
  user-level features.

Example:
    >>> from personakit.data.builtin import load_builtin_corpus
    >>> train = load_builtin_corpus("train")
    >>> len(train), len(load_builtin_corpus("test"))
    (28, 12)
    >>> train[0].speakers
    ['user', 'agent']
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Union

from pydantic import ValidationError

from personakit.types import Dialogue

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11; annotations only
    from importlib.resources.abc import Traversable

__all__ = [
    "BUILTIN_CORPUS_FILE",
    "BUILTIN_CORPUS_LICENSE",
    "BUILTIN_SPLITS",
    "builtin_corpus_path",
    "builtin_pfg_dialogues",
    "load_builtin_corpus",
]

BUILTIN_CORPUS_FILE = "dialogues.jsonl"
"""Name of the corpus file inside this package."""

BUILTIN_SPLITS: tuple[str, ...] = ("train", "test", "all")
"""Valid values of ``split`` for :func:`load_builtin_corpus`."""

BUILTIN_CORPUS_LICENSE = (
    "The personakit built-in sample corpus (personakit/data/builtin/dialogues.jsonl) is "
    "original work written for personakit; it is not taken or paraphrased from any "
    "dataset, and its people are fictional. It is released under the Apache License, "
    "Version 2.0, the licence of the personakit package."
)
"""Licence note for the built-in corpus."""

_RECORD_SPLITS = ("train", "test")


def builtin_corpus_path() -> Traversable:
    """The corpus file as an :mod:`importlib.resources` resource (works from a wheel or zip).

    Returns:
        A :class:`~importlib.resources.abc.Traversable` for ``dialogues.jsonl``.
    """
    return resources.files(__name__).joinpath(BUILTIN_CORPUS_FILE)


def _error_field(err: ValidationError) -> str:
    """``'a.b.c: message'`` for the first error of a pydantic ValidationError."""
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ())) or "<record>"
    return f"field '{loc}': {first.get('msg', 'invalid')}"


def _read_dialogues(resource: Union[Traversable, Path]) -> list[Dialogue]:
    """Parse and check a dialogues JSONL resource (one Dialogue per non-blank line).

    Args:
        resource: the file to read (a resource or a filesystem path).

    Returns:
        The dialogues in file order.

    Raises:
        ValueError: naming the file, the line and the field of the first invalid record
            (bad JSON, schema violation, a ``metadata.split`` other than train/test, or
            a duplicate ``id``).
    """
    text = resource.read_text(encoding="utf-8")
    name = str(resource)
    dialogues: list[Dialogue] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            dialogue = Dialogue.model_validate_json(line)
        except ValidationError as err:
            raise ValueError(f"{name}: line {lineno}: invalid dialogue record: {_error_field(err)}") from err
        split = dialogue.metadata.get("split")
        if split not in _RECORD_SPLITS:
            raise ValueError(
                f"{name}: line {lineno}: dialogue {dialogue.id!r}: field 'metadata.split' is {split!r}; "
                f"expected one of {list(_RECORD_SPLITS)}"
            )
        if dialogue.id in seen:
            raise ValueError(
                f"{name}: line {lineno}: field 'id': duplicate id {dialogue.id!r} "
                f"(first on line {seen[dialogue.id]})"
            )
        seen[dialogue.id] = lineno
        dialogues.append(dialogue)
    return dialogues


def load_builtin_corpus(split: str = "all") -> list[Dialogue]:
    """Load the built-in sample corpus.

    Args:
        split: ``"train"`` (28 dialogues), ``"test"`` (12) or ``"all"`` (40).

    Returns:
        Fresh :class:`~personakit.types.Dialogue` objects in file order (safe to mutate).

    Raises:
        ValueError: for an unknown ``split``, or when the corpus file holds an invalid
            line (the message names the file, the line and the field).

    Example:
        >>> dialogues = load_builtin_corpus()
        >>> len(dialogues)
        40
        >>> dialogues[0].personas["agent"].sentences[0]
        'I run a small bakery in a seaside town.'
    """
    if split not in BUILTIN_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {list(BUILTIN_SPLITS)}")
    dialogues = _read_dialogues(builtin_corpus_path())
    if split == "all":
        return dialogues
    return [d for d in dialogues if d.metadata["split"] == split]


def builtin_pfg_dialogues() -> list[Dialogue]:
    """The built-in corpus as Persuasion-for-Good-style dialogues (agent → persuader, one day apart).

    The agents who talk in several dialogues (three of them) become users with profiles;
    the ROPG, CoPersona and questioner recipes run their ``tiny`` configs on it.

    Example:
        >>> dialogues = builtin_pfg_dialogues()
        >>> sorted(dialogues[0].participants), dialogues[1].metadata["date"][:10]
        (['persuadee', 'persuader'], '2024-01-02')
    """
    from datetime import datetime, timedelta

    rename = {"agent": "persuader", "user": "persuadee"}
    start = datetime(2024, 1, 1)
    out = []
    for i, d in enumerate(load_builtin_corpus()):
        out.append(d.model_copy(update={
            "turns": [t.model_copy(update={"speaker": rename.get(t.speaker, t.speaker)}) for t in d.turns],
            "participants": {rename.get(k, k): v for k, v in d.participants.items()},
            "personas": {rename.get(k, k): v for k, v in d.personas.items()},
            "metadata": {**d.metadata, "date": (start + timedelta(days=i)).isoformat()},
        }))
    return out
