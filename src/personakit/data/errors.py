"""The error every dataset reader raises on malformed input.

A reader that meets a bad JSON line, a missing or ill-typed field, a wrong CSV header
or a number that does not parse raises :class:`DataFormatError`, whose message names
the file, the line (or record) and the field, e.g.::

    spc/train.jsonl: line 12: field 'turns[3].speaker': expected a string, got int

A file that does not exist raises the built-in :class:`FileNotFoundError` with the
path (see :func:`check_file`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["DataFormatError", "check_file"]


class DataFormatError(ValueError):
    """Malformed dataset input, located by file, record and field.

    Args:
        path: the file being read.
        record: where in the file: a 1-based line number (``unit="line"``), a record
            index or a record id (``unit="record"``), or ``None`` for the whole file.
        field: the offending field, in a JSON-path-like notation
            (``"turns[3].speaker"``), or ``None`` when the record as a whole is bad.
        reason: what is wrong, e.g. ``"expected a string, got int"``.
        unit: how ``record`` is counted: ``"line"`` (default), ``"record"``, ``"row"``...

    Attributes:
        path: the file, as a string.
        record: the line number or record id (``None`` when the error is file-wide).
        field: the field, or ``None``.
        reason: the bare reason, without the location.

    Example:
        >>> err = DataFormatError("spc/train.jsonl", 12, "turns[3].speaker", "expected a string")
        >>> str(err)
        "spc/train.jsonl: line 12: field 'turns[3].speaker': expected a string"
        >>> isinstance(err, ValueError)
        True
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        record: Union[int, str, None] = None,
        field: Optional[str] = None,
        reason: str = "malformed input",
        *,
        unit: str = "line",
    ) -> None:
        self.path = os.fspath(path)
        self.record = record
        self.field = field
        self.reason = reason
        self.unit = unit
        parts = [self.path]
        if record is not None:
            parts.append(f"{unit} {record}")
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(reason)
        super().__init__(": ".join(parts))

    def __reduce__(self) -> Any:  # keep the structured attributes through pickling
        return (_rebuild, (self.path, self.record, self.field, self.reason, self.unit))


def _rebuild(path: str, record: Any, field: Optional[str], reason: str, unit: str) -> DataFormatError:
    return DataFormatError(path, record, field, reason, unit=unit)


def check_file(path: Union[str, os.PathLike[str]], what: str = "data file") -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`; raise ``FileNotFoundError`` naming it when absent.

    Args:
        path: the file to read.
        what: a short description used in the message (``"SPC jsonl file"``).

    Raises:
        FileNotFoundError: ``path`` does not exist or is a directory.
    """
    p = Path(path)
    if not p.is_file():
        reason = "is a directory, expected a file" if p.is_dir() else "not found"
        raise FileNotFoundError(errno.ENOENT, f"{what} {os.fspath(path)!s} {reason}", os.fspath(path))
    return p
