"""Synthetic-Persona-Chat (Jandaghi et al., 2024) readers.

Two layouts are supported:

* the JSON-lines layout (:func:`read_spc_jsonl`), one conversation per line;
* the official CSV release (:func:`read_spc_csv`), one conversation per row.

Both return :class:`~personakit.types.Dialogue` objects whose speakers are
``"User 1"`` and ``"User 2"``, each with its persona sentences.
"""

from __future__ import annotations

import re
from typing import Optional

from personakit.data._io import Loc, PathLike, display_name, iter_csv, iter_jsonl, type_name, validate_model
from personakit.types import Dialogue, Persona, Turn

__all__ = ["SPC_SPEAKERS", "read_spc_jsonl", "read_spc_csv"]

SPC_SPEAKERS = ("User 1", "User 2")
"""Speaker labels of Synthetic-Persona-Chat dialogues."""

_SPEAKER_RE = re.compile(r"^\s*user\s*([12])\s*$", re.IGNORECASE)


def _normalise_speaker(value: str) -> Optional[str]:
    m = _SPEAKER_RE.match(value)
    return f"User {m.group(1)}" if m else None


def _clean(sentences: list[str]) -> list[str]:
    return [s.strip() for s in sentences if s.strip()]


def _persona(sentences: list[str]) -> Persona:
    return Persona(sentences=_clean(sentences))


def read_spc_jsonl(path: PathLike) -> list[Dialogue]:
    """Read Synthetic-Persona-Chat conversations from a JSON-lines file.

    Format: one JSON object per line::

        {"source_file": "SPC_transformed_data_test_00001.json",
         "user1_personas": ["I just bought a brand new house.", ...],
         "user2_personas": ["I love to meet new people.", ...],
         "turns": [{"speaker": "User 1", "text": "Hi, ..."},
                   {"speaker": "User 2", "text": "Hi, ..."}, ...]}

    ``user1_personas``, ``user2_personas`` and ``turns`` are required; speakers are
    ``"User 1"`` / ``"User 2"`` (case and spacing variants such as ``"user1"`` are
    normalised); other keys of a turn are ignored. The dialogue id is the record's ``id`` when present, else the stem
    of ``source_file``, else ``"{file stem}-{line number}"``; ``source_file`` is kept
    in ``metadata``. Blank lines are skipped; a conversation may have no turns.

    Args:
        path: the ``.jsonl`` file.

    Returns:
        One :class:`~personakit.types.Dialogue` per line, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: invalid JSON, a missing or ill-typed field, an unknown
            speaker or a duplicate dialogue id (the message names line and field).

    Example:
        >>> dialogues = read_spc_jsonl("spc/test.jsonl")  # doctest: +SKIP
        >>> dialogues[0].turns[0]  # doctest: +SKIP
        Turn(speaker='User 1', text="Hi, I'm participant_1. What's your name?")
        >>> dialogues[0].personas["User 2"].sentences[0]  # doctest: +SKIP
        'I love to meet new people.'
    """
    stem = display_name(path)
    dialogues: list[Dialogue] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, "SPC jsonl file"):
        loc = Loc(path, lineno)
        if not isinstance(obj, dict):
            raise loc.error(None, f"expected a JSON object, got {type_name(obj)}")
        p1 = loc.str_list(obj, "user1_personas")
        p2 = loc.str_list(obj, "user2_personas")
        turns = loc.get(obj, "turns", list)
        for i, t in enumerate(turns):
            if type(t) is dict and t.get("speaker") in SPC_SPEAKERS:
                label = t["speaker"]  # fast path; the text type is checked by the model below
            else:
                where = f"turns[{i}]"
                loc.check(t, dict, where)
                speaker = loc.get(t, "speaker", str, f"{where}.speaker")
                label = _normalise_speaker(speaker)
                if label is None:
                    raise loc.error(f"{where}.speaker", f"expected 'User 1' or 'User 2', got {speaker!r}")
            # keep speaker and text only (other keys of a turn are ignored)
            turns[i] = {"speaker": label, "text": t["text"]} if "text" in t else {"speaker": label}
        source_file = loc.get(obj, "source_file", str, optional=True)
        record_id = loc.get(obj, "id", (str, int), optional=True)
        if record_id is not None:
            did = str(record_id)
        elif source_file:
            did = source_file[: -len(".json")] if source_file.endswith(".json") else source_file
        else:
            did = f"{stem}-{lineno}"
        if did in seen:
            key = "id" if record_id is not None else "source_file"
            raise loc.error(key, f"duplicate dialogue id {did!r} (first on line {seen[did]})")
        seen[did] = lineno
        metadata = {"source_file": source_file if source_file is not None else f"{stem}.jsonl", "line": lineno}
        data = {
            "id": did,
            "turns": turns,
            "personas": {"User 1": {"sentences": _clean(p1)}, "User 2": {"sentences": _clean(p2)}},
            "metadata": metadata,
        }
        dialogues.append(validate_model(Dialogue, data, loc))
    return dialogues


# --------------------------------------------------------------------------- CSV
SPC_CSV_COLUMNS = ("user 1 personas", "user 2 personas", "Best Generated Conversation")

# "User 1: text", "*User 1:* text", "* * User 1: * * text", "* User 1: text *", "User1 : text"
_LABEL_RE = re.compile(r"^(?P<pre>[\s*_]*)user\s?(?P<n>[12])\s*[*_]*\s*:(?:[\s*_]*)(?P<text>.*)$", re.IGNORECASE)
_BRACKETED_RE = re.compile(r"^\s*(\(.*\)|\[.*\]|\[[^\]]*|\([^)]*)\s*$")
_SEPARATOR_RE = re.compile(r"^[\s*\-_=#~.]+$")
# a short heading without sentence punctuation: "The next day:", "30 minutes later", "At the gym"
_SCENE_RE = re.compile(r"^[^.!?\"]{1,40}:?$")


def _is_scene_heading(line: str, next_labelled: bool) -> bool:
    return (
        next_labelled
        and bool(_SCENE_RE.match(line))
        and len(line.split()) <= 6
        and not line.startswith(("* ", "- "))  # the last item of a list is not a heading
    )


def _split_conversation(text: str) -> tuple[list[Turn], list[str], bool]:
    """Split a ``Best Generated Conversation`` cell into turns.

    Returns ``(turns, stage_directions, speakers_inferred)``.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    labelled = [_LABEL_RE.match(line) for line in lines]
    if not any(labelled):
        # A few conversations carry no labels at all: paragraphs alternate, User 1 first.
        paragraphs = [line for line in lines if line and not _SEPARATOR_RE.match(line)]
        turns = [Turn.model_construct(speaker=SPC_SPEAKERS[i % 2], text=p) for i, p in enumerate(paragraphs)]
        return turns, [], bool(turns)
    # whether the next non-blank line after position i is labelled
    next_labelled = [False] * len(lines)
    following = False
    for i in range(len(lines) - 1, -1, -1):
        next_labelled[i] = following
        if lines[i]:
            following = labelled[i] is not None
    speakers: list[str] = []
    texts: list[list[str]] = []
    stage: list[str] = []
    before: list[str] = []  # unlabelled lines before the first labelled one
    for i, (line, m) in enumerate(zip(lines, labelled)):
        if m is not None:
            body = m.group("text").strip()
            if "*" in m.group("pre"):  # markdown emphasis around the whole line: "* User 1: Hi! *"
                body = re.sub(r"\s*\*+$", "", body).strip()
            speakers.append(f"User {m.group('n')}")
            texts.append([body] if body else [])
        elif not line:
            continue
        elif _BRACKETED_RE.match(line) or _SEPARATOR_RE.match(line) or _is_scene_heading(line, next_labelled[i]):
            stage.append(line)
        elif texts:
            texts[-1].append(line)  # continuation of the previous turn (lists, recipes...)
        else:
            before.append(line)
    first = next(f"User {m.group('n')}" for m in labelled if m is not None)
    if before and first == "User 2":
        # unlabelled opening before the first "User 2:" line: User 1's first turn
        speakers.insert(0, "User 1")
        texts.insert(0, before)
    else:
        stage[:0] = before  # narration before the first turn
    turns = [
        Turn.model_construct(speaker=speaker, text="\n".join(parts))
        for speaker, parts in zip(speakers, texts)
        if parts
    ]
    return turns, stage, False


def read_spc_csv(path: PathLike) -> list[Dialogue]:
    """Read the official Synthetic-Persona-Chat CSV release.

    Format (header and one row; cells are quoted and span several lines)::

        user 1 personas,user 2 personas,Best Generated Conversation
        "I just bought a brand new house.
        I like to dance at the club.","I love to meet new people.
        I have a turtle named timothy.","User 1: Hi, I'm [User 1's name]. What's your name?
        User 2: Hi, I'm [User 2's name]. It's nice to meet you.
        ..."

    Persona cells hold one sentence per line. Each conversation line starts with
    ``User 1:`` or ``User 2:``. The generated text has quirks, handled as follows:

    * markdown around the labels (``*User 1:*``, ``* * User 1: * *``, ``* User 1: Hi! *``)
      is removed;
    * stage directions (``(The next day)``, ``[A few minutes later]``, ``* * *``,
      a scene heading such as ``The next day:`` right before a labelled line) are
      not turns: they are kept in ``metadata["stage_directions"]``;
    * other unlabelled lines (a recipe's ingredient list) continue the previous
      turn, joined with a newline; blank lines are ignored; unlabelled text before
      a first ``User 2:`` line is User 1's opening turn;
    * a conversation without any label (one in the test split) alternates by
      paragraph starting with User 1, and is flagged ``metadata["speakers_inferred"]``.

    Dialogue ids are ``"{file stem}-{row:05d}"`` (row counted from 1 after the header).

    Args:
        path: ``Synthetic-Persona-Chat_{train,valid,test}.csv``.

    Returns:
        One :class:`~personakit.types.Dialogue` per row.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: wrong header, a row with the wrong number of cells, bytes
            that are not UTF-8, or a file cut short (a quoted cell left open, or no
            line break after the last row).

    Example:
        >>> dialogues = read_spc_csv("spc/Synthetic-Persona-Chat_test.csv")  # doctest: +SKIP
        >>> len(dialogues), dialogues[0].turns[1].speaker  # doctest: +SKIP
        (968, 'User 2')
    """
    stem = display_name(path)
    dialogues: list[Dialogue] = []
    for row_index, (lineno, row) in enumerate(
        iter_csv(path, SPC_CSV_COLUMNS, "SPC CSV file"), start=1
    ):
        turns, stage, inferred = _split_conversation(row["Best Generated Conversation"])
        metadata: dict = {"source_file": f"{stem}.csv", "row": row_index, "line": lineno}
        if stage:
            metadata["stage_directions"] = stage
        if inferred:
            metadata["speakers_inferred"] = True
        dialogues.append(
            Dialogue(
                id=f"{stem}-{row_index:05d}",
                turns=turns,
                personas={
                    "User 1": _persona(row["user 1 personas"].splitlines()),
                    "User 2": _persona(row["user 2 personas"].splitlines()),
                },
                metadata=metadata,
            )
        )
    return dialogues

