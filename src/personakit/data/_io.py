"""Shared helpers of the dataset readers: file access, typed field access, timestamps.

Private: the readers' public behaviour is documented on each reader.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from personakit.data.errors import DataFormatError, check_file

PathLike = Union[str, os.PathLike[str]]

# Official CSV files carry long quoted cells (SPC conversations, PFG utterances).
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object", bool: "a boolean"}


def type_name(value: Any) -> str:
    """Short JSON-ish name of the type of ``value`` for error messages."""
    if value is None:
        return "null"
    return {str: "string", int: "int", float: "float", list: "list", dict: "object", bool: "bool"}.get(
        type(value), type(value).__name__
    )


class Loc:
    """A location in a file (path + record) that builds :class:`DataFormatError` s.

    Args:
        path: the file, as the user gave it (kept for messages).
        record: line number or record id.
        unit: ``"line"`` or ``"record"``.
    """

    __slots__ = ("path", "record", "unit")

    def __init__(self, path: PathLike, record: Union[int, str, None], unit: str = "line") -> None:
        self.path = path
        self.record = record
        self.unit = unit

    def error(self, field: Optional[str], reason: str) -> DataFormatError:
        return DataFormatError(self.path, self.record, field, reason, unit=self.unit)

    # -- typed access -------------------------------------------------------------
    def get(self, obj: dict, key: str, expected: Any, field: Optional[str] = None, *, optional: bool = False) -> Any:
        """``obj[key]`` checked against ``expected`` (a type or tuple of types).

        ``bool`` never passes for ``int``/``float``.  Missing keys (or ``None`` when
        ``optional``) give ``None`` when ``optional`` else a ``DataFormatError``.
        """
        name = field or key
        if key not in obj or (optional and obj[key] is None):
            if optional:
                return None
            raise self.error(name, "missing")
        value = obj[key]
        return self.check(value, expected, name)

    def check(self, value: Any, expected: Any, field: str) -> Any:
        types = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise self.error(field, f"expected {wanted}, got {type_name(value)}")
        return value

    def str_list(self, obj: dict, key: str, field: Optional[str] = None, *, optional: bool = False) -> list[str]:
        """``obj[key]`` as a list of strings (each element checked)."""
        name = field or key
        value = self.get(obj, key, list, name, optional=optional)
        if value is None:
            return []
        for i, item in enumerate(value):
            self.check(item, str, f"{name}[{i}]")
        return value


_BOM = "\ufeff"


def _decode_error(path: PathLike, data: bytes, err: UnicodeDecodeError, first_line: int = 1) -> DataFormatError:
    """A :class:`DataFormatError` naming the line and the byte that is not UTF-8."""
    start = err.start
    line = first_line + data.count(b"\n", 0, start)
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return DataFormatError(
        path,
        line,
        None,
        f"not UTF-8 text: byte 0x{data[start]:02x} (byte {column} of the line) cannot be decoded; "
        "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    )


def read_text(path: PathLike, what: str = "data file") -> str:
    """The whole text of a UTF-8 file, a leading byte-order mark removed.

    Every reader opens its files through this function or :func:`iter_lines`, so a
    file that is not UTF-8 is a :class:`DataFormatError` naming the file and the
    line (not a bare ``UnicodeDecodeError``), and a BOM is accepted by every format.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: the file is not valid UTF-8.
    """
    data = check_file(path, what).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _decode_error(path, data, err) from None
    return text[1:] if text.startswith(_BOM) else text


class TextLines:
    """The lines of a UTF-8 file, streamed.

    Iterating yields each line with its line break, like a file opened with
    ``newline=""`` (``translate=False``, what :mod:`csv` needs) or with universal
    newlines (``translate=True``: ``"\r\n"`` and ``"\r"`` become ``"\n"``). A leading
    byte-order mark is removed. A byte sequence that is not UTF-8 raises a
    :class:`DataFormatError` naming the file and the line (found by decoding the
    whole file again, since the decoder works in chunks).

    After the iteration, :attr:`ends_mid_line` tells whether the last line had no line
    break (a file cut in the middle of a line, or written without a final newline),
    and :attr:`lines` is the number of lines read.

    Args:
        path: the file.
        what: a short description for the "not found" message.
        translate: translate line breaks to ``"\n"``.
    """

    def __init__(self, path: PathLike, what: str = "data file", *, translate: bool = True) -> None:
        self.path = path
        self._file = check_file(path, what)
        self.translate = translate
        self.ends_mid_line = False
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        self.lines = 0
        self.ends_mid_line = False
        try:
            with self._file.open("r", encoding="utf-8-sig", newline=None if self.translate else "") as fh:
                for line in fh:
                    self.lines += 1
                    self.ends_mid_line = not line.endswith(("\n", "\r"))
                    yield line
        except UnicodeDecodeError:
            read_text(self.path)  # raises the located DataFormatError
            raise  # pragma: no cover (the whole file decodes: should not happen)


def iter_lines(path: PathLike, what: str = "data file", *, translate: bool = True) -> TextLines:
    """``TextLines(path, what, translate=translate)``: see :class:`TextLines`."""
    return TextLines(path, what, translate=translate)


TRUNCATED = "the file ends in the middle of a line (no line break after it): it looks truncated"


def iter_jsonl(path: PathLike, what: str = "jsonl file") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for every non-blank line of a JSON-lines file.

    A line that is not valid JSON is an error naming the line; when it is the last
    line and has no line break, the message says the file looks truncated.
    """
    lines = iter_lines(path, what)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            reason = f"invalid JSON ({err.msg} at column {err.colno})"
            if lines.ends_mid_line:
                reason += f"; {TRUNCATED}"
            raise DataFormatError(path, lineno, None, reason) from None
        yield lineno, obj


def load_json(path: PathLike, what: str = "JSON file") -> Any:
    """Parse a whole JSON file; a syntax error names the line (and a cut file says so)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        reason = f"invalid JSON ({err.msg} at column {err.colno})"
        if err.pos >= len(text.rstrip()):
            reason += "; the file ends before the JSON document is complete: it looks truncated"
        raise DataFormatError(path, err.lineno, None, reason) from None


def iter_csv(
    path: PathLike,
    required: Sequence[str],
    what: str = "CSV file",
    *,
    header_hint: str = "",
    final_newline: bool = True,
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(first_line_number, row_dict)`` for a CSV file with a header.

    The header must contain every column of ``required``; a row with a different
    number of cells than the header is an error.  Line numbers are the physical
    line where the record starts (quoted cells may span lines).  Parsing is strict:
    a quote left open at the end of the file, or text after a closing quote, is an
    error, so a file cut inside a quoted cell does not load silently.

    Args:
        path: the CSV file.
        required: columns the header must contain.
        what: a short description for the "not found" message.
        header_hint: appended to the "missing column" message.
        final_newline: the last record must end with a line break; otherwise the
            file is taken as cut in the middle of its last record (an error naming
            the line). Pass ``False`` for files published without a final newline
            (the reader then checks the last record itself).
    """
    lines = iter_lines(path, what, translate=False)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(path, 1, None, "empty file, expected a CSV header") from None
    except csv.Error as err:
        raise DataFormatError(path, 1, None, f"invalid CSV ({_csv_reason(err)})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(
            path,
            1,
            missing[0],
            f"missing column in the header {header!r}; expected columns {list(required)!r}{header_hint}",
        )
    if final_newline and lines.ends_mid_line:
        raise DataFormatError(path, 1, None, f"{TRUNCATED} (the header has no line break and no row follows)")
    width = len(header)
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataFormatError(path, start, None, f"invalid CSV ({_csv_reason(err)})") from None
        line = start
        start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            reason = f"expected {width} cells as in the header, got {len(row)}"
            if lines.ends_mid_line:
                reason += f"; {TRUNCATED}"
            raise DataFormatError(path, line, None, reason)
        if final_newline and lines.ends_mid_line:
            raise DataFormatError(
                path, line, None, f"{TRUNCATED} (add a final line break if the file is complete)"
            )
        yield line, dict(zip(header, row))


def _csv_reason(err: csv.Error) -> str:
    text = str(err)
    if "unexpected end of data" in text:
        return "a quoted cell is not closed at the end of the file: it looks truncated"
    return text


# ------------------------------------------------------------------ numbers and dates
_INT_RE = re.compile(r"^[+-]?\d+$")


def parse_number(text: str, loc: Loc, field: str) -> Union[int, float]:
    """Parse ``text`` as an int when it is written as one, else a finite float."""
    s = text.strip()
    if _INT_RE.match(s):
        return int(s)
    try:
        value = float(s)
    except ValueError:
        raise loc.error(field, f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise loc.error(field, f"expected a finite number, got {text!r}")
    return value


def parse_timestamp(value: Any, loc: Loc, field: str, *, unit: str = "auto") -> Optional[datetime]:
    """Parse a timestamp into a timezone-aware (UTC when unspecified) ``datetime``.

    Accepts ISO-8601 strings (``"2014-04-15"``, ``"2014-04-15T10:00:00Z"``), a few
    common date layouts (``"20140415"``, ``"04/15/2014"``, ``"April 15, 2014"``), and Unix times as
    numbers or digit strings; ``unit`` is ``"s"``, ``"ms"`` or ``"auto"`` (values
    above 10**11 are taken as milliseconds).  ``None`` and ``""`` give ``None``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise loc.error(field, f"expected a date or a Unix time, got {type_name(value)}")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value) and len(value.strip()) != 8:
        value = float(value)  # Unix time written as a string (an 8-digit string is YYYYMMDD)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise loc.error(field, f"expected a Unix time, got {value!r}")
        seconds = value / 1000.0 if unit == "ms" or (unit == "auto" and abs(value) > 1e11) else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise loc.error(field, f"Unix time out of range: {value!r}") from None
    if not isinstance(value, str):
        raise loc.error(field, f"expected a date string or a Unix time, got {type_name(value)}")
    s = value.strip()
    iso = s[:-1] + "+00:00" if s.endswith("Z") else s
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        dt = None
        for fmt in ("%Y%m%d", "%m %d, %Y", "%m/%d/%Y", "%Y/%m/%d", "%d %B %Y", "%B %d, %Y", "%Y-%m-%d %H:%M:%S%z"):
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        if dt is None:
            raise loc.error(field, f"expected a date (ISO 8601 or a Unix time), got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def display_name(path: PathLike) -> str:
    """The file name used in dialogue ids (stem without extension)."""
    return Path(path).stem


# ------------------------------------------------------------------ pydantic errors
_PYDANTIC_REASONS = {
    "missing": "missing",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "extra_forbidden": "unexpected field",
}


def field_path(parts: Sequence[Any]) -> str:
    """``("turns", 3, "speaker")`` -> ``"turns[3].speaker"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validate_model(model: Any, data: dict, loc: Loc, rename: Optional[dict[str, str]] = None) -> Any:
    """``model.model_validate(data)``, turning a ``ValidationError`` into a :class:`DataFormatError`.

    ``rename`` maps the model's top-level field names back to the source's keys
    (``{"turns": "turns"}``) so the error names the field as the file spells it.
    """
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        parts = list(first.get("loc", ()))
        if parts and rename and parts[0] in rename:
            parts[0] = rename[parts[0]]
        reason = _PYDANTIC_REASONS.get(first.get("type", ""), first.get("msg", "invalid value"))
        if first.get("type") != "missing" and "input" in first:
            reason = f"{reason}, got {type_name(first['input'])}" if reason.startswith("expected") else reason
        raise loc.error(field_path(parts) or None, reason) from None
