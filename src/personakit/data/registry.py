"""Pick a reader by dataset name or by sniffing the file: :func:`read_dataset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from personakit.data._io import PathLike
from personakit.data.convai2 import read_convai2
from personakit.data.empathetic import read_empathetic_dialogues
from personakit.data.errors import check_file
from personakit.data.lamp import read_lamp
from personakit.data.pfg import read_persuasion_for_good
from personakit.data.reviews import read_review_histories
from personakit.data.spc import read_spc_csv, read_spc_jsonl

__all__ = ["DATASET_READERS", "detect_format", "read_dataset"]

DATASET_READERS: dict[str, Callable[..., list]] = {
    "spc_jsonl": read_spc_jsonl,
    "spc_csv": read_spc_csv,
    "convai2": read_convai2,
    "empathetic_dialogues": read_empathetic_dialogues,
    "persuasion_for_good": read_persuasion_for_good,
    "lamp": read_lamp,
    "reviews": read_review_histories,
}
"""Format name -> reader. Dialogue readers return ``list[Dialogue]``, ``lamp``
``list[ProfileExample]``, ``reviews`` ``list[UserProfile]``."""

_ALIASES = {"spc": "spc_jsonl", "ed": "empathetic_dialogues", "pfg": "persuasion_for_good", "persona_chat": "convai2"}


def detect_format(path: PathLike) -> str:
    """Guess the format of ``path`` from its name and first line.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the format cannot be recognised.

    Example:
        >>> detect_format("spc/test.jsonl")  # doctest: +SKIP
        'spc_jsonl'
    """
    p = Path(path)
    if p.is_dir():
        if (p / "full_dialog.csv").is_file():
            return "persuasion_for_good"
        raise ValueError(f"{path}: a folder, but not a Persuasion-for-Good FullData folder (no full_dialog.csv)")
    check_file(path)
    with p.open("r", encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
    suffix = p.suffix.lower()
    if suffix == ".csv":
        if "Best Generated Conversation" in first:
            return "spc_csv"
        if "conv_id" in first and "utterance" in first:
            return "empathetic_dialogues"
        if "Unit" in first and "B2" in first:
            return "persuasion_for_good"
    elif suffix in (".jsonl", ".ndjson"):
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            if "turns" in record:
                return "spc_jsonl"
            if any(k in record for k in ("history", "reviews")):
                return "reviews"
    elif suffix == ".json":
        return "lamp"
    elif suffix == ".txt" and first[:2].strip().isdigit():
        return "convai2"
    raise ValueError(f"{path}: cannot tell the dataset format; pass format= one of {sorted(DATASET_READERS)}")


def read_dataset(path: PathLike, format: Optional[str] = None, **kwargs: Any) -> list:
    """Read any supported dataset file with the matching reader.

    Args:
        path: the file (or the Persuasion-for-Good ``FullData`` folder).
        format: a key of :data:`DATASET_READERS` (or ``spc``, ``ed``, ``pfg``);
            detected by :func:`detect_format` when ``None``.
        **kwargs: passed to the reader (e.g. ``outputs_path=`` for LaMP).

    Returns:
        The reader's output.

    Example:
        >>> dialogues = read_dataset("empatheticdialogues/fixed_valid.csv")  # doctest: +SKIP
        >>> len(dialogues)  # doctest: +SKIP
        2770
    """
    name = detect_format(path) if format is None else format.strip().lower().replace("-", "_").replace(" ", "_")
    name = _ALIASES.get(name, name)
    if name not in DATASET_READERS:
        raise ValueError(f"unknown dataset format {format!r}; expected one of {sorted(DATASET_READERS)}")
    return DATASET_READERS[name](path, **kwargs)
