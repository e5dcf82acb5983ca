"""Augmented examples on disk: JSON lines, one :class:`~personakit.types.ResponseExample` per line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

from pydantic import ValidationError

from personakit.config import atomic_write_text
from personakit.types import ResponseExample

__all__ = ["save_examples", "load_examples"]


def save_examples(path: Union[str, "os.PathLike[str]"], examples: Iterable[ResponseExample]) -> Path:
    """Write ``examples`` as JSON lines (``ResponseExample.model_dump_json`` per line), atomically.

    A reader never sees a half-written file: the lines go to a temporary file that is
    renamed over ``path``.

    Example:
        >>> import tempfile, os
        >>> from personakit.types import ResponseExample, Turn
        >>> ex = ResponseExample(id="a", history=[Turn(speaker="user", text="Hi")], response="Hey",
        ...                      generic_response="Hello.")
        >>> path = save_examples(os.path.join(tempfile.mkdtemp(), "aug.jsonl"), [ex])
        >>> load_examples(path)[0].generic_response
        'Hello.'
    """
    lines = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, ResponseExample):
            raise TypeError(f"example {i}: expected a ResponseExample, got {type(ex).__name__}")
        lines.append(ex.model_dump_json() + "\n")
    return atomic_write_text(path, "".join(lines))


def load_examples(path: Union[str, "os.PathLike[str]"]) -> list[ResponseExample]:
    """Read a file written by :func:`save_examples` (or ``personakit augment``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not a valid example; the message names the file, the
            line and the field.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: examples file not found")
    examples = []
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                examples.append(ResponseExample.model_validate_json(line))
            except ValidationError as err:
                first = err.errors()[0]
                loc = ".".join(str(part) for part in first.get("loc", ())) or "<record>"
                raise ValueError(f"{p}: line {lineno}: field {loc!r}: {first.get('msg', 'invalid')}") from err
    return examples
