"""Persuasion-for-Good reader (Wang et al., 2019)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Optional

from personakit.data._io import Loc, PathLike, iter_csv, parse_number
from personakit.data.errors import check_file
from personakit.types import AttributeValue, Dialogue, Persona, Turn

__all__ = [
    "PFG_ROLES",
    "PFG_SPEAKERS",
    "read_persuasion_for_good",
    "unescape_pfg_text",
    "read_pfg_info",
    "parse_pfg_date",
    "participant_dialogues",
]

PFG_ROLES = {0: "persuader", 1: "persuadee"}
"""The ``B4`` role codes."""
PFG_SPEAKERS = ("persuader", "persuadee")

_DIALOG_COLUMNS = ("Unit", "Turn", "B4", "B2")
_INFO_REQUIRED = ("B2", "B3", "B4")
# Columns of full_info.csv that are not persona traits.
_INFO_META = {"B2": None, "B3": None, "B4": None, "B5": "intended_donation", "B6": "donation", "B7": "num_turns"}
_DATE_RE = re.compile(r"(\d{8})-(\d{6})")


def parse_pfg_date(dialogue_id: str) -> Optional[str]:
    """The date and time encoded in a dialogue id, as an ISO string.

    Example:
        >>> parse_pfg_date("20180904-045349_715_live")
        '2018-09-04T04:53:49'
        >>> parse_pfg_date("BAD_20180807-204848_414_live")
        '2018-08-07T20:48:48'
        >>> parse_pfg_date("no-date") is None
        True
    """
    m = _DATE_RE.search(dialogue_id)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").isoformat()
    except ValueError:
        return None


def _attribute_name(column: str) -> str:
    return column[:-2] if column.endswith(".x") else column


def _column_types(rows: list[tuple[int, dict[str, str]]], columns: list[str]) -> dict[str, type]:
    """Infer int / float / str for each column from its non-empty cells.

    A column is numeric when most (more than half) of its non-empty cells parse as
    numbers (``B5``/``B6``/``B7`` always are), so a corrupted cell in a numeric column
    is an error rather than turning the whole column into text, even in a small file.
    (In the release every text column has no numeric cell at all.)
    """
    types: dict[str, type] = {}
    for col in columns:
        n_cells = n_numbers = 0
        all_int = True
        for _, row in rows:
            cell = row[col].strip()
            if not cell or cell.upper() == "NA":
                continue
            n_cells += 1
            if re.fullmatch(r"[+-]?\d+", cell):
                n_numbers += 1
                continue
            try:
                float(cell)
            except ValueError:
                continue
            n_numbers += 1
            all_int = False
        numeric = col in _INFO_META or (n_cells > 0 and 2 * n_numbers > n_cells)
        types[col] = (int if all_int else float) if numeric else str
    return types


def read_pfg_info(path: PathLike) -> dict[tuple[str, int], dict[str, Any]]:
    """Read ``full_info.csv``: one row per participant per dialogue.

    Column types come from the data: a column whose cells parse as integers is
    ``int``, as numbers ``float`` (more than half of the non-empty cells, and then
    every other cell must be a number too; ``B5``, ``B6``, ``B7`` always), otherwise
    ``str``; an empty cell (or ``NA``) is ``None``. Trait columns lose their ``.x``
    suffix (``extrovert.x`` -> ``extrovert``); ``B6`` becomes ``donation``, ``B7``
    ``num_turns`` and ``B5`` ``intended_donation``.

    Returns:
        ``{(dialogue_id, role): {"user_id": ..., "line": ..., "traits": {...},
        "outcome": {"donation": ..., "num_turns": ...}}}``.

    Raises:
        DataFormatError: a header without ``B2``/``B3``/``B4``, a bad role, an empty
            user id, the same (dialogue, role) twice, a cell that is not a number in a
            numeric column, bytes that are not UTF-8, or a file cut short.
    """
    rows = list(iter_csv(path, _INFO_REQUIRED, "Persuasion-for-Good info file"))
    header = list(rows[0][1]) if rows else list(_INFO_REQUIRED)
    value_columns = [c for c in header if c not in ("B2", "B3", "B4") and c != ""]
    types = _column_types(rows, value_columns)
    info: dict[tuple[str, int], dict[str, Any]] = {}
    for lineno, row in rows:
        loc = Loc(path, lineno)
        did = row["B2"].strip()
        if not did:
            raise loc.error("B2", "empty dialogue id")
        role = parse_number(row["B4"], loc, "B4")
        if role not in PFG_ROLES:
            raise loc.error("B4", f"expected a role 0 (persuader) or 1 (persuadee), got {row['B4']!r}")
        user = row["B3"].strip()
        if not user:
            raise loc.error("B3", "empty user id")
        traits: dict[str, AttributeValue] = {}
        outcome: dict[str, AttributeValue] = {}
        for col in value_columns:
            cell = row[col].strip()
            value: AttributeValue
            if not cell or cell.upper() == "NA":
                value = None
            elif types[col] is str:
                value = cell
            else:
                number = parse_number(cell, loc, col)
                value = float(number) if types[col] is float else number
            if col in _INFO_META:
                outcome[_INFO_META[col] or col] = value
            else:
                traits[_attribute_name(col)] = value
        key = (did, int(role))
        if key in info:
            raise loc.error("B2", f"dialogue {did!r} has two rows for role {role} (first on line {info[key]['line']})")
        info[key] = {"user_id": user, "line": lineno, "traits": traits, "outcome": outcome}
    return info


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` (non-empty) has no line break after its last byte."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return False
        fh.seek(-1, 2)
        return fh.read(1) not in (b"\n", b"\r")


def unescape_pfg_text(text: str) -> str:
    r"""Undo the stray backslash escapes in some utterances of the release.

    114 of the 20,932 rows of ``full_dialog.csv`` carry escapes from an earlier export:
    ``I\'m`` (162 times), a doubled backslash (8: ``nieces\\nephews``,
    ``donation!\\``) and one ``\t``.  A model trained on them writes ``that\'s``.
    ``\'`` and ``\"`` become the quote, ``\t`` and ``\n`` a space, a doubled
    backslash between two letters ``/`` and elsewhere nothing; the result is stripped.
    Text without a backslash is returned as is.

    Example:
        >>> unescape_pfg_text("I\\'m in. nieces\\\\nephews? Sure!\\\\")
        "I'm in. nieces/nephews? Sure!"
    """
    if "\\" not in text:
        return text
    text = re.sub(r"(?<=[A-Za-z])\\\\(?=[A-Za-z])", "/", text)
    text = text.replace("\\\\", "")
    text = re.sub(r"\\(['\"])", r"\1", text)
    text = re.sub(r"\\[tn]", " ", text)
    return text.strip()


def read_persuasion_for_good(
    path: PathLike,
    info_csv: Optional[PathLike] = None,
    *,
    drop_flagged: bool = False,
    unescape: bool = True,
) -> list[Dialogue]:
    """Read Persuasion-for-Good dialogues with their participants' profiles.

    ``full_dialog.csv`` has one row per utterance (``Unit`` = text, ``Turn`` = turn
    index, ``B4`` = role 0 persuader / 1 persuadee, ``B2`` = dialogue id)::

        ,Unit,Turn,B4,B2
        0,Good morning. How are you doing today?,0,0,20180904-045349_715_live
        1,Hi. I am doing good. How about you?,0,1,20180904-045349_715_live

    ``full_info.csv`` has one row per participant per dialogue: ``B2`` dialogue id,
    ``B3`` user id, ``B4`` role, ``B6`` donation, ``B7`` number of turns, and the
    survey (Big-Five, moral foundations, Schwartz values, decision style,
    demographics; columns ending in ``.x``)::

        B2,B3,B4,B6,B7,extrovert.x,...,age.x,sex.x,...,ideology.x
        20180904-045349_715_live,user_585,0,0.0,11,3.2,...,34.0,Male,...,Liberal

    Speakers are ``"persuader"`` and ``"persuadee"``. ``participants`` maps each
    speaker to its user id (``B3``), so a person can be followed across dialogues
    (:func:`participant_dialogues`). Each speaker's persona carries the survey as
    typed attributes (``extrovert: 3.2``, ``sex: "Male"``, empty cells ``None``).
    The donation and turn count are outcomes of the dialogue, not traits: they are
    kept in ``metadata["donation"]`` / ``metadata["num_turns"]`` (by speaker) so a
    persona never leaks the target. ``metadata["date"]`` is the ISO date parsed
    from the dialogue id (``20180904-045349_715_live`` -> ``2018-09-04T04:53:49``),
    for splits by time; ids prefixed ``BAD_`` (27 in the release) are flagged with
    ``metadata["flagged"] = True``. Consecutive rows of one speaker stay separate
    turns (merge them with :func:`~personakit.data.dialogues_to_examples`).

    Args:
        path: the ``FullData`` folder, or the dialogue CSV itself.
        info_csv: the info CSV; by default ``full_info.csv`` beside the dialogue
            file. Pass a path that does not exist to get an error, or use a folder
            without an info file to read dialogues without profiles.
        drop_flagged: skip the dialogues whose id starts with ``BAD_``.
        unescape: undo the stray backslash escapes of 114 rows (``I\\'m`` -> ``I'm``;
            :func:`unescape_pfg_text`); ``False`` keeps the text as in the file.

    Returns:
        The dialogues in file order.

    Raises:
        FileNotFoundError: the dialogue file (or an explicit ``info_csv``) is missing.
        DataFormatError: a wrong header, a bad ``Turn``/``B4`` number, an empty
            ``Unit`` or dialogue id, a bad number in the info file, a duplicated row
            (same ``B2``, ``Turn``, ``B4`` and ``Unit``), bytes that are not UTF-8, or
            a file cut short (a quoted cell left open, a last row with missing cells,
            or a last row without line break that is the only row of its dialogue).

    Example:
        >>> dialogues = read_persuasion_for_good("persuasionforgood/FullData")  # doctest: +SKIP
        >>> d = dialogues[0]  # doctest: +SKIP
        >>> d.participants, d.metadata["date"]  # doctest: +SKIP
        ({'persuader': 'user_585', 'persuadee': 'user_1810'}, '2018-09-04T04:53:49')
        >>> d.personas["persuadee"].attributes["age"]  # doctest: +SKIP
        50.0
    """
    p = Path(path)
    if p.is_dir():
        dialog_path: Path = p / "full_dialog.csv"
        check_file(dialog_path, "Persuasion-for-Good dialogue file")
    else:
        dialog_path = check_file(path, "Persuasion-for-Good dialogue file")
    if info_csv is None:
        candidate = dialog_path.parent / "full_info.csv"
        info = read_pfg_info(candidate) if candidate.is_file() else {}
    else:
        info = read_pfg_info(info_csv)

    shown = path if not p.is_dir() else dialog_path
    convs: dict[str, dict[str, Any]] = {}
    rows_seen: dict[tuple[str, int, int, str], int] = {}
    last: Optional[tuple[Loc, str]] = None  # (location, dialogue id) of the last row
    # The release has no line break after its last row, so the end of the file is
    # checked below rather than by iter_csv.
    rows = iter_csv(dialog_path, _DIALOG_COLUMNS, "Persuasion-for-Good dialogue file", final_newline=False)
    for lineno, row in rows:
        loc = Loc(shown, lineno)
        did = row["B2"].strip()
        if not did:
            raise loc.error("B2", "empty dialogue id")
        role = parse_number(row["B4"], loc, "B4")
        if role not in PFG_ROLES:
            raise loc.error("B4", f"expected a role 0 (persuader) or 1 (persuadee), got {row['B4']!r}")
        turn = parse_number(row["Turn"], loc, "Turn")
        if not isinstance(turn, int) or turn < 0:
            raise loc.error("Turn", f"expected a non-negative integer, got {row['Turn']!r}")
        text = row["Unit"].strip()
        if unescape:
            text = unescape_pfg_text(text)
        if not text:
            raise loc.error("Unit", "empty utterance")
        key = (did, turn, int(role), text)
        if key in rows_seen:
            raise loc.error(None, f"duplicate row: same B2, Turn, B4 and Unit as line {rows_seen[key]}")
        rows_seen[key] = lineno
        conv = convs.setdefault(did, {"line": lineno, "turns": []})
        conv["turns"].append((turn, int(role), text))
        last = (loc, did)
    if last is not None and _ends_mid_line(dialog_path):
        # A file cut inside the last row's B2 gives a new dialogue id of one row.
        loc, did = last
        if len(convs[did]["turns"]) == 1:
            raise loc.error(
                "B2",
                f"the file ends without a line break in the only row of dialogue {did!r}: the file looks "
                "truncated inside the dialogue id (end the file with a line break if it is complete)",
            )

    dialogues: list[Dialogue] = []
    for did, conv in convs.items():
        flagged = did.startswith("BAD_")
        if flagged and drop_flagged:
            continue
        # stable sort by the Turn index keeps the file order inside a turn
        ordered = sorted(conv["turns"], key=lambda t: t[0])
        turns = [Turn(speaker=PFG_ROLES[role], text=text) for _, role, text in ordered]
        personas: dict[str, Persona] = {}
        participants: dict[str, str] = {}
        metadata: dict[str, Any] = {"source_file": dialog_path.name, "date": parse_pfg_date(did)}
        if flagged:
            metadata["flagged"] = True
        for role, speaker in PFG_ROLES.items():
            entry = info.get((did, role))
            if entry is None:
                continue
            participants[speaker] = entry["user_id"]
            personas[speaker] = Persona(attributes=dict(entry["traits"]))
            for key, value in entry["outcome"].items():
                metadata.setdefault(key, {})[speaker] = value
        dialogues.append(Dialogue(id=did, turns=turns, personas=personas, participants=participants, metadata=metadata))
    return dialogues


def participant_dialogues(
    dialogues: Iterable[Dialogue], speaker: Optional[str] = None
) -> dict[str, list[Dialogue]]:
    """Group dialogues by participant id (``Dialogue.participants``).

    Args:
        dialogues: dialogues with ``participants`` filled (e.g. from
            :func:`read_persuasion_for_good`).
        speaker: only count the participant in this role (``"persuader"``); by
            default every role.

    Returns:
        ``{user_id: [dialogues, in input order]}``, users in order of first appearance.

    Example:
        >>> from personakit.types import Dialogue, Turn
        >>> ds = [Dialogue(id=str(i), turns=[Turn(speaker="persuader", text="hi")],
        ...                participants={"persuader": "u1", "persuadee": f"v{i}"}) for i in range(3)]
        >>> {k: len(v) for k, v in participant_dialogues(ds, speaker="persuader").items()}
        {'u1': 3}
    """
    out: dict[str, list[Dialogue]] = {}
    for d in dialogues:
        for role, user in d.participants.items():
            if speaker is not None and role != speaker:
                continue
            bucket = out.setdefault(user, [])
            if not bucket or bucket[-1] is not d:
                bucket.append(d)
    return out

