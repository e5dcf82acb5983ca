r"""Reader of the MQDialog format (Zeng et al., 2024): dialogues of responders with several questioners.

MQDialog, as its authors describe it, holds dialogues between 12 *responders* (main
characters of English and Chinese TV series and novels) and 173 *questioners* (the
characters who talk to them), with the non-dialogue content of the scripts (scene
descriptions, actions) filtered out; the task is to produce the responder's reply to a
questioner's utterance, personalised to who asks.  The released files are not reachable
from this project, so the exact field names below are **our assumption**, chosen to
carry what the paper describes; a file that uses other names can be mapped with
``field_map``.

One JSON object per line (``.jsonl``) or a JSON array of objects (``.json``), in either
of two shapes:

*dialogue records* (``"turns"`` present)::

    {"id": "bbt-s01e01-003", "responder": "Sheldon", "questioner": "Penny",
     "turns": [{"speaker": "Penny", "text": "Hi, I'm Penny."},
               {"speaker": "Sheldon", "text": "Hello."}],
     "language": "en", "source": "The Big Bang Theory"}

  ``id`` (string), ``responder`` and ``questioner`` (strings, speaker names used in
  ``turns``), ``turns`` (non-empty list of ``{"speaker": str, "text": str}``).  Each
  responder turn that follows a questioner turn gives one example (consecutive turns
  of one speaker are merged first); a turn by a third speaker is kept in the history.

*pair records* (``"question"`` present)::

    {"id": "hlm-0042", "responder": "Baoyu", "questioner": "Daiyu",
     "question": "...", "response": "...", "context": [{"speaker": "...", "text": "..."}]}

  ``question`` and ``response`` (non-empty strings); ``context`` (optional list of
  earlier turns, oldest first).

Optional in both: ``language``, ``source`` and ``split`` (strings) and ``metadata`` (an
object); they go to each example's ``metadata``.  Speaker names need not be unique
across records, so the reader's ids are the names as given (``questioner_id`` =
``questioner``, ``responder_id`` = ``responder``).

Every malformed record raises :class:`~personakit.data.DataFormatError` naming the file,
the line (JSON lines) or record index (JSON array) and the field.

Example:
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mq.jsonl"
    >>> _ = path.write_text(json.dumps({"id": "d1", "responder": "R", "questioner": "Q",
    ...     "turns": [{"speaker": "Q", "text": "How are you?"}, {"speaker": "R", "text": "Fine."}]}) + "\n")
    >>> [ex] = read_mqdialog(path)
    >>> ex.questioner_id, ex.responder_id, ex.history[-1].text, ex.response
    ('Q', 'R', 'How are you?', 'Fine.')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from personakit.data._io import Loc, PathLike, iter_jsonl, load_json
from personakit.data.errors import DataFormatError, check_file
from personakit.data.examples import merge_consecutive_turns
from personakit.types import ResponseExample, Turn

__all__ = ["read_mqdialog", "MQDIALOG_FIELDS"]

MQDIALOG_FIELDS = ("id", "responder", "questioner", "turns", "question", "response", "context",
                   "language", "source", "split", "metadata")
"""Field names of the assumed MQDialog record (see the module docstring)."""

_OPTIONAL_STR = ("language", "source", "split")


def _records(path: Path, shown: PathLike) -> Iterator[tuple[Loc, Any]]:
    if path.suffix.lower() == ".json":
        data = load_json(path, "MQDialog JSON file")
        if not isinstance(data, list):
            raise DataFormatError(shown, None, None, f"expected a JSON array of records, got {type(data).__name__}")
        for i, obj in enumerate(data):
            yield Loc(shown, i, unit="record"), obj
    else:
        for lineno, obj in iter_jsonl(path, "MQDialog jsonl file"):
            yield Loc(shown, lineno), obj


def _turns(loc: Loc, obj: dict, key: str, field: str) -> list[Turn]:
    raw = loc.get(obj, key, list, field)
    turns = []
    for i, t in enumerate(raw):
        loc.check(t, dict, f"{field}[{i}]")
        speaker = loc.get(t, "speaker", str, f"{field}[{i}].speaker")
        text = loc.get(t, "text", str, f"{field}[{i}].text")
        if not speaker.strip():
            raise loc.error(f"{field}[{i}].speaker", "empty speaker")
        if not text.strip():
            raise loc.error(f"{field}[{i}].text", "empty text")
        turns.append(Turn(speaker=speaker.strip(), text=text.strip()))
    return turns


def read_mqdialog(path: PathLike, *, field_map: Optional[Mapping[str, str]] = None,
                  max_history: Optional[int] = None) -> list[ResponseExample]:
    """Read an MQDialog-format file into :class:`~personakit.types.ResponseExample` s.

    Args:
        path: a ``.jsonl`` file (one record per line) or a ``.json`` array.
        field_map: ``{our field: the file's field}`` for files with other names, e.g.
            ``{"questioner": "asker", "responder": "character"}``.
        max_history: keep only the last this many history turns.

    Returns:
        One example per responder reply, in file order: ``id`` = ``"{record id}:{turn index}"``
        (dialogue records) or the record id (pair records), ``agent`` = the responder's name,
        ``questioner_id``, ``responder_id``, ``dialogue_id``, ``metadata`` with ``language``,
        ``source``, ``split`` when given (and ``turn_index`` for dialogue records).

    Raises:
        FileNotFoundError: the file is missing.
        DataFormatError: a malformed record (file, line or record, and field named),
            a duplicate ``id``, or a dialogue in which the responder never answers the questioner.
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"read_mqdialog: max_history must be >= 1, got {max_history}")
    fmap = {k: k for k in MQDIALOG_FIELDS}
    if field_map:
        unknown = set(field_map) - set(MQDIALOG_FIELDS)
        if unknown:
            raise ValueError(f"read_mqdialog: field_map has unknown keys {sorted(unknown)}; known: {MQDIALOG_FIELDS}")
        fmap.update(field_map)
    p = check_file(path, "MQDialog file")
    examples: list[ResponseExample] = []
    seen: dict[str, Any] = {}
    for loc, obj in _records(p, path):
        if not isinstance(obj, dict):
            raise loc.error(None, f"expected a JSON object, got {type(obj).__name__}")
        rid = loc.get(obj, fmap["id"], str)
        if not rid.strip():
            raise loc.error(fmap["id"], "empty id")
        if rid in seen:
            raise loc.error(fmap["id"], f"duplicate id {rid!r} (first at {loc.unit} {seen[rid]})")
        seen[rid] = loc.record
        responder = loc.get(obj, fmap["responder"], str).strip()
        questioner = loc.get(obj, fmap["questioner"], str).strip()
        for key, value in ((fmap["responder"], responder), (fmap["questioner"], questioner)):
            if not value:
                raise loc.error(key, "empty name")
        if responder == questioner:
            raise loc.error(fmap["questioner"], f"the questioner is the responder ({responder!r})")
        meta: dict[str, Any] = {}
        for key in _OPTIONAL_STR:
            value = loc.get(obj, fmap[key], str, optional=True)
            if value is not None:
                meta[key] = value
        extra = loc.get(obj, fmap["metadata"], dict, optional=True)
        if extra:
            meta.update({k: v for k, v in extra.items() if v is None or isinstance(v, (str, int, float, bool))})
        common = dict(agent=responder, questioner_id=questioner, responder_id=responder, dialogue_id=rid,
                      user_id=questioner)
        if fmap["turns"] in obj:
            turns = _turns(loc, obj, fmap["turns"], fmap["turns"])
            if not turns:
                raise loc.error(fmap["turns"], "empty list of turns")
            merged = merge_consecutive_turns(turns)
            found = 0
            for pos, (index, turn) in enumerate(merged):
                if turn.speaker != responder or pos == 0 or merged[pos - 1][1].speaker != questioner:
                    continue
                history = [t for _, t in merged[:pos]]
                if max_history is not None:
                    history = history[-max_history:]
                examples.append(ResponseExample(id=f"{rid}:{index}", history=history, response=turn.text,
                                                metadata={**meta, "turn_index": index}, **common))
                found += 1
            if not found:
                raise loc.error(fmap["turns"], f"no turn of the responder {responder!r} answers the questioner "
                                               f"{questioner!r}")
        elif fmap["question"] in obj:
            question = loc.get(obj, fmap["question"], str).strip()
            response = loc.get(obj, fmap["response"], str).strip()
            if not question:
                raise loc.error(fmap["question"], "empty text")
            if not response:
                raise loc.error(fmap["response"], "empty text")
            context = _turns(loc, obj, fmap["context"], fmap["context"]) if obj.get(fmap["context"]) is not None else []
            history = context + [Turn(speaker=questioner, text=question)]
            if max_history is not None:
                history = history[-max_history:]
            examples.append(ResponseExample(id=rid, history=history, response=response, metadata=meta, **common))
        else:
            raise loc.error(fmap["turns"], f"missing (a record needs {fmap['turns']!r}, or {fmap['question']!r} "
                                           f"and {fmap['response']!r})")
    return examples
