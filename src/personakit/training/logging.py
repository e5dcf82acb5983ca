"""The trainers' JSON-lines log: one record per line, each appended with one ``write`` and fsynced.

A trainer appends ``{"kind": "train" | "eval", "step": ..., ...}`` records to
``output_dir/train_log.jsonl`` (:data:`LOG_FILE`) on the main process.  A record is
appended whole or not at all as far as readers go: :meth:`JsonlLog.records` drops a torn
last line (a writer killed mid-write), and a resumed run cuts the file back to its
checkpoint's step (:meth:`JsonlLog.truncate_after`, an atomic rewrite), so the log of a
stopped-and-resumed run equals that of an uninterrupted one.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     log = JsonlLog(pathlib.Path(tmp) / LOG_FILE)
    ...     log.append({"kind": "train", "step": 1, "loss": 2.0})
    ...     log.append({"kind": "train", "step": 2, "loss": 1.5})
    ...     log.truncate_after(1)
    ...     log.records()
    [{'kind': 'train', 'step': 1, 'loss': 2.0}]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from personakit.config import atomic_write_text

__all__ = ["JsonlLog", "LOG_FILE"]

LOG_FILE = "train_log.jsonl"
"""Name of the JSON-lines log inside ``output_dir`` (``{"kind": "train" | "eval", "step": ..., ...}``)."""


class JsonlLog:
    """Append-only JSON-lines file; each record is one ``write`` of a whole line, fsynced.

    Args:
        path: The log file (created on the first append).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line (``O_APPEND``, one ``write``, ``fsync``)."""
        line = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """Complete records (a torn last line from a killed writer is dropped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= ``step`` (rewritten atomically)."""
        kept = [r for r in self.records() if isinstance(r.get("step"), int) and r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))

    def reset(self) -> None:
        """Empty the file (atomically)."""
        atomic_write_text(self.path, "")

    def __repr__(self) -> str:
        return f"JsonlLog({str(self.path)!r})"
