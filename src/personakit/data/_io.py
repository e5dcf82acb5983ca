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


def iter_jsonl(path: PathLike, what: str = "jsonl file") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)`` for every non-blank line of a JSON-lines file."""
    p = check_file(path, what)
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, lineno, None, f"invalid JSON ({err.msg} at column {err.colno})") from None
            yield lineno, obj


def load_json(path: PathLike, what: str = "JSON file") -> Any:
    """Parse a whole JSON file; a syntax error names the line."""
    p = check_file(path, what)
    text = p.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, None, f"invalid JSON ({err.msg} at column {err.colno})") from None


def iter_csv(
    path: PathLike,
    required: Sequence[str],
    what: str = "CSV file",
    *,
    header_hint: str = "",
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(first_line_number, row_dict)`` for a CSV file with a header.

    The header must contain every column of ``required``; a row with a different
    number of cells than the header is an error.  Line numbers are the physical
    line where the record starts (quoted cells may span lines).
    """
    p = check_file(path, what)
    with p.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, None, "empty file, expected a CSV header") from None
        except csv.Error as err:
            raise DataFormatError(path, 1, None, f"invalid CSV ({err})") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                path,
                1,
                missing[0],
                f"missing column in the header {header!r}; expected columns {list(required)!r}{header_hint}",
            )
        width = len(header)
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataFormatError(path, start, None, f"invalid CSV ({err})") from None
            line = start
            start = reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise DataFormatError(path, line, None, f"expected {width} cells as in the header, got {len(row)}")
            yield line, dict(zip(header, row))


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
