"""EmpatheticDialogues reader (Rashkin et al., 2019)."""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Optional, Union

from personakit.data._io import TRUNCATED, Loc, PathLike, iter_csv, iter_lines, load_json, parse_number, read_text
from personakit.data.errors import DataFormatError, check_file
from personakit.types import Dialogue, Persona, Turn

__all__ = ["ED_SPEAKERS", "ED_LABEL_MAP_FILE", "read_empathetic_dialogues", "load_emotion_label_map"]

ED_SPEAKERS = ("speaker", "listener")
"""Speaker labels: ``speaker`` (odd ``utterance_idx``, told the situation) and ``listener``."""

ED_LABEL_MAP_FILE = "label_map_int_to_emotion.json"
"""File name of the integer-label -> emotion map looked up next to the CSV."""

_ORIGINAL_COLUMNS = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")
_FIXED_REQUIRED = ("conv_id", "utterance_idx", "prompt", "utterance")
_SELFEVAL_RE = re.compile(r"^\d+\|\d+\|\d+_\d+\|\d+\|\d+$")


def _unescape(text: str) -> str:
    return text.replace("_comma_", ",")


def load_emotion_label_map(path: PathLike) -> dict[int, str]:
    """Read ``label_map_int_to_emotion.json`` (``{"0": "sad", ...}``) into ``{0: "sad", ...}``.

    Raises:
        DataFormatError: a key that is not an integer or a value that is not a string.
    """
    raw = load_json(path, "emotion label map")
    loc = Loc(path, None)
    if not isinstance(raw, dict):
        raise loc.error(None, f"expected a JSON object mapping label ids to emotions, got {type(raw).__name__}")
    out: dict[int, str] = {}
    for key, value in raw.items():
        number = parse_number(str(key), loc, str(key))
        if not isinstance(number, int):
            raise loc.error(str(key), f"expected an integer label id, got {key!r}")
        out[number] = loc.check(value, str, str(key))
    return out


def _iter_original(
    path: PathLike, lines: list[str], ends_mid_line: bool = False
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of the original release: unquoted, split on commas (text commas are ``_comma_``).

    Eight fields, a ninth with ``|``-separated candidates in some rows; a few rows
    carry a raw comma in the utterance, found by locating the ``selfeval`` field
    (``"5|5|5_2|2|5"``) after it. ``ends_mid_line``: the file has no line break
    after its last line, which is then taken as cut (an error).
    """
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if ends_mid_line and lineno == len(lines):
            raise DataFormatError(path, lineno, None, f"{TRUNCATED} (add a final line break if the file is complete)")
        parts = line.split(",")
        if len(parts) < 8:
            raise DataFormatError(path, lineno, None, f"expected 8 comma-separated fields, got {len(parts)}")
        if len(parts) == 8 or (len(parts) == 9 and not _SELFEVAL_RE.match(parts[7])):
            sel = 6
        else:
            candidates = [j for j in range(6, len(parts)) if _SELFEVAL_RE.match(parts[j])]
            if not candidates:
                raise DataFormatError(
                    path, lineno, "utterance", f"expected 8 fields (9 with candidates), got {len(parts)}; cannot locate 'selfeval'"
                )
            sel = candidates[-1]
        row = dict(zip(_ORIGINAL_COLUMNS[:5], parts[:5]))
        row["utterance"] = ",".join(parts[5:sel])
        row["selfeval"] = parts[sel]
        row["tags"] = parts[sel + 1] if len(parts) > sel + 1 else ""
        yield lineno, row


def read_empathetic_dialogues(
    path: PathLike,
    *,
    label_map: Union[Mapping[int, str], PathLike, None] = None,
) -> list[Dialogue]:
    """Read an EmpatheticDialogues split (CSV) into dialogues.

    Two layouts are recognised from the header:

    * the quoted CSV of the "fixed" copies (``fixed_valid.csv``)::

        conv_id,utterance_idx,prompt,utterance[,label]
        hit:3_conv:6,1,Today_comma_as i was leaving ...,Today_comma_as i was leaving ...,2
        hit:3_conv:6,2,Today_comma_as i was leaving ...,Are you fine now?,2

      where ``label`` is an integer emotion id, mapped to its name with
      ``label_map`` (by default ``label_map_int_to_emotion.json`` next to the CSV,
      when present);
    * the original release (``train.csv``, ``valid.csv``, ``test.csv``), not quoted::

        conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags
        hit:0_conv:1,1,sentimental,I remember going to ...,1,I remember going ...,5|5|5_2|2|5,

      where ``context`` is the emotion name and ``speaker_idx`` the worker id. Some
      rows carry a ninth field of candidates (ignored) and a few a raw comma inside
      the utterance (repaired by locating ``selfeval``).

    ``_comma_`` is turned back into ``,``. Rows are grouped by ``conv_id`` and
    ordered by ``utterance_idx``; odd indices are the ``"speaker"`` (who describes
    the situation), even ones the ``"listener"``. The conversation's emotion becomes
    the persona attribute ``emotion`` of both speakers (GRAG treats it as the
    style the partners share); the integer label, when given, is
    ``metadata["label"]``. The situation prompt is ``metadata["situation"]``. In the
    original layout the worker ids fill ``Dialogue.participants``.

    Args:
        path: the CSV file.
        label_map: ``{label id: emotion}`` or the path of the JSON map; ``None`` looks
            for ``label_map_int_to_emotion.json`` beside ``path``. Without a map an
            integer label is kept in ``metadata["label"]`` only.

    Returns:
        One :class:`~personakit.types.Dialogue` per ``conv_id`` (id = ``conv_id``), in
        order of first appearance.

    Raises:
        FileNotFoundError: the file (or an explicit ``label_map`` file) does not exist.
        DataFormatError: wrong header, a bad ``utterance_idx`` or ``label``, a label
            missing from the map or differing within a conversation, a repeated
            ``utterance_idx``, bytes that are not UTF-8, or a file cut short (no line
            break after the last row, or a quoted cell left open).

    Example:
        >>> dialogues = read_empathetic_dialogues("empatheticdialogues/fixed_valid.csv")  # doctest: +SKIP
        >>> d = dialogues[0]  # doctest: +SKIP
        >>> d.id, d.turns[1].speaker, d.personas["listener"].attributes  # doctest: +SKIP
        ('hit:3_conv:6', 'listener', {'emotion': 'terrified'})
    """
    p = check_file(path, "EmpatheticDialogues CSV file")
    header_line = next(iter(iter_lines(path, "EmpatheticDialogues CSV file")), "").rstrip("\r\n")
    header = header_line.split(",")
    original = "speaker_idx" in header and "context" in header
    if original:
        if header[: len(_ORIGINAL_COLUMNS)] != list(_ORIGINAL_COLUMNS):
            raise DataFormatError(path, 1, None, f"expected the header {','.join(_ORIGINAL_COLUMNS)!r}, got {header_line!r}")
        text = read_text(path, "EmpatheticDialogues CSV file")
        lines = text.splitlines()
        ends_mid_line = bool(text) and not text.endswith(("\n", "\r"))
        rows: Iterator[tuple[int, dict[str, str]]] = _iter_original(path, lines, ends_mid_line)
    else:
        rows = iter_csv(path, _FIXED_REQUIRED, "EmpatheticDialogues CSV file")

    mapping: Optional[Mapping[int, str]]
    if label_map is None:
        default = p.parent / ED_LABEL_MAP_FILE
        mapping = load_emotion_label_map(default) if default.is_file() else None
    elif isinstance(label_map, Mapping):
        mapping = dict(label_map)
    else:
        mapping = load_emotion_label_map(label_map)

    convs: dict[str, dict[str, Any]] = {}
    for lineno, row in rows:
        loc = Loc(path, lineno)
        conv_id = row["conv_id"].strip()
        if not conv_id:
            raise loc.error("conv_id", "empty")
        idx = parse_number(row["utterance_idx"], loc, "utterance_idx")
        if not isinstance(idx, int) or idx < 1:
            raise loc.error("utterance_idx", f"expected a positive integer, got {row['utterance_idx']!r}")
        label: Optional[int] = None
        if not original and "label" in row and row["label"].strip():
            number = parse_number(row["label"], loc, "label")
            if not isinstance(number, int):
                raise loc.error("label", f"expected an integer emotion label, got {row['label']!r}")
            label = number
            if mapping is not None and label not in mapping:
                raise loc.error("label", f"label {label} is not in the emotion label map")
        conv = convs.get(conv_id)
        situation = _unescape(row["prompt"]).strip()
        if conv is None:
            conv = convs[conv_id] = {"line": lineno, "utts": {}, "situation": situation, "meta": {}, "workers": {}}
            if original:
                conv["meta"]["emotion"] = row["context"].strip()
                if row["selfeval"]:
                    conv["meta"]["selfeval"] = row["selfeval"]
                if row["tags"].strip():
                    conv["meta"]["tags"] = row["tags"].strip()
            elif label is not None:
                conv["meta"]["label"] = label
                if mapping is not None:
                    conv["meta"]["emotion"] = mapping[label]
            elif "context" in row and row["context"].strip():
                conv["meta"]["emotion"] = row["context"].strip()
        else:
            if idx in conv["utts"]:
                raise loc.error("utterance_idx", f"repeated utterance_idx {idx} in conversation {conv_id!r}")
            if label is not None and conv["meta"].get("label") != label:
                raise loc.error(
                    "label", f"label {label} differs from the conversation's label {conv['meta'].get('label')} (line {conv['line']})"
                )
        if original:
            speaker_label = ED_SPEAKERS[(idx - 1) % 2]
            conv["workers"].setdefault(speaker_label, row["speaker_idx"].strip())
        conv["utts"][idx] = _unescape(row["utterance"]).strip()

    dialogues: list[Dialogue] = []
    for conv_id, conv in convs.items():
        ordered = sorted(conv["utts"])
        turns = [Turn(speaker=ED_SPEAKERS[(i - 1) % 2], text=conv["utts"][i]) for i in ordered]
        meta = conv["meta"]
        emotion = meta.get("emotion")
        attributes = {"emotion": emotion} if emotion else {}
        metadata = {"source_file": p.name, "situation": conv["situation"], **meta}
        dialogues.append(
            Dialogue(
                id=conv_id,
                turns=turns,
                personas={label: Persona(attributes=dict(attributes)) for label in ED_SPEAKERS},
                participants={k: v for k, v in conv["workers"].items() if v},
                metadata=metadata,
            )
        )
    return dialogues

