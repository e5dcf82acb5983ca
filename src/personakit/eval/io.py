"""Read prediction files and score them: ``load_predictions`` and ``evaluate_file``.

Accepted layouts:

1. One JSON Lines file whose records hold ``prediction`` and ``reference`` (a
   string, or a list of strings for several references); an ``id`` is optional.
2. A JSON Lines file with ``prediction`` (and usually ``id``) plus a second file of
   references:

   * a ``.jsonl`` file of records with ``reference`` (and ``id``): matched by ``id``
     when both files carry ids, else line by line;
   * a plain text file, one reference per line: matched line by line.
3. Two plain text files, one prediction / reference per line.
4. A recipe's ``predictions.jsonl``: records of layout 1 that also name their
   ``system`` (and ``test_set``); :func:`load_prediction_groups` splits it into one
   group per test set and system, and ``personakit evaluate`` scores each.

Files ending in ``.jsonl``, ``.ndjson`` or ``.json`` are read as JSON Lines (blank
lines skipped); anything else as plain text (every line is an item, blank lines
included, so a line number always names an item).  Errors name the file, the line
and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from personakit.eval.base import Metric
from personakit.eval.evaluate import DEFAULT_METRICS, evaluate_texts

__all__ = ["LoadedPredictions", "PredictionFileError", "load_predictions", "load_prediction_groups", "evaluate_file"]

_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


class PredictionFileError(ValueError):
    """A predictions or references file is malformed; the message names file, line and field."""


class LoadedPredictions(NamedTuple):
    """Predictions paired with their references.

    Attributes:
        predictions: One string per example.
        references: One string, or a list of strings, per example.
        ids: The example ids when the predictions file has them, else ``None``.
    """

    predictions: list[str]
    references: list[str | list[str]]
    ids: list[str] | None


class _Record(NamedTuple):
    line: int
    data: dict[str, Any]


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in _JSONL_SUFFIXES


def _read_text_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionFileError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise PredictionFileError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    # splitlines() would also split on form feeds and other separators; items are newline-separated
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last item, it does not start a new one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_jsonl(path: Path) -> list[_Record]:
    records = []
    for lineno, line in enumerate(_read_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise PredictionFileError(f"{path} line {lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(data, dict):
            hint = " (write one JSON object per line: JSON Lines, not a JSON array)" if isinstance(data, list) else ""
            raise PredictionFileError(f"{path} line {lineno}: expected a JSON object, got {type(data).__name__}{hint}")
        records.append(_Record(lineno, data))
    if not records:
        raise PredictionFileError(f"{path}: no records (the file is empty)")
    return records


def _string_field(path: Path, rec: _Record, field: str) -> str:
    if field not in rec.data:
        raise PredictionFileError(f"{path} line {rec.line}: field {field!r} is missing "
                                  f"(fields present: {sorted(rec.data)})")
    value = rec.data[field]
    if not isinstance(value, str):
        raise PredictionFileError(f"{path} line {rec.line}: field {field!r} must be a string, "
                                  f"got {type(value).__name__}")
    return value


def _reference_field(path: Path, rec: _Record) -> str | list[str]:
    if "reference" not in rec.data:
        raise PredictionFileError(f"{path} line {rec.line}: field 'reference' is missing "
                                  f"(fields present: {sorted(rec.data)}); give it, or pass a references file")
    value = rec.data["reference"]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise PredictionFileError(f"{path} line {rec.line}: field 'reference' must be a string or a non-empty list "
                              f"of strings, got {json.dumps(value)[:80]}")


def _id_field(path: Path, rec: _Record) -> str | None:
    if "id" not in rec.data:
        return None
    value = rec.data["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PredictionFileError(f"{path} line {rec.line}: field 'id' must be a string or an integer, "
                                  f"got {type(value).__name__}")
    return str(value)


def _ids(path: Path, records: Sequence[_Record]) -> list[str] | None:
    ids = [_id_field(path, r) for r in records]
    present = [i is not None for i in ids]
    if not any(present):
        return None
    if not all(present):
        missing = records[present.index(False)]
        raise PredictionFileError(f"{path} line {missing.line}: field 'id' is missing, but other records have ids; "
                                  "give every record an id or none")
    seen: dict[str, int] = {}
    for rec, i in zip(records, ids):
        if i in seen:
            raise PredictionFileError(f"{path} line {rec.line}: duplicate id {i!r} (first on line {seen[i]})")
        seen[i] = rec.line
    return ids  # type: ignore[return-value]


def load_predictions(path: str | os.PathLike[str],
                     references_path: str | os.PathLike[str] | None = None) -> LoadedPredictions:
    """Read predictions and their references from one or two files.

    Args:
        path: A ``.jsonl`` file (records with ``prediction``, and ``reference`` unless
            ``references_path`` is given; optional ``id``), or a text file with one
            prediction per line.
        references_path: A ``.jsonl`` file (records with ``reference``, optional
            ``id``) or a text file with one reference per line.

    Returns:
        :class:`LoadedPredictions` ``(predictions, references, ids)``.

    Raises:
        PredictionFileError: Missing file, invalid JSON, missing or mistyped field,
            duplicate or unmatched id, or differing numbers of items; the message
            names the file, the line and the field.

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "p.jsonl").write_text('{"id": "a", "prediction": "hi there"}\\n')
        >>> _ = (tmp / "r.jsonl").write_text('{"id": "a", "reference": "hello there"}\\n')
        >>> load_predictions(tmp / "p.jsonl", tmp / "r.jsonl")
        LoadedPredictions(predictions=['hi there'], references=['hello there'], ids=['a'])
    """
    path = Path(path)
    ref_path = Path(references_path) if references_path is not None else None

    if not _is_jsonl(path):
        if ref_path is None:
            raise PredictionFileError(f"{path}: a plain-text predictions file needs a references file "
                                      "(one reference per line); or use a .jsonl file with 'prediction' and "
                                      "'reference'")
        predictions = _read_text_lines(path)
        if not predictions:
            raise PredictionFileError(f"{path}: no predictions (the file is empty)")
        if _is_jsonl(ref_path):
            ref_records = _read_jsonl(ref_path)
            references = [_reference_field(ref_path, r) for r in ref_records]
        else:
            references = _read_text_lines(ref_path)
        _check_counts(path, len(predictions), ref_path, len(references))
        return LoadedPredictions(predictions, references, None)

    records = _read_jsonl(path)
    predictions = [_string_field(path, r, "prediction") for r in records]
    ids = _ids(path, records)
    if ref_path is None:
        return LoadedPredictions(predictions, [_reference_field(path, r) for r in records], ids)

    with_ref = next((r for r in records if "reference" in r.data), None)
    if with_ref is not None:
        raise PredictionFileError(f"{path} line {with_ref.line}: field 'reference' is present although a references "
                                  f"file ({ref_path}) was given; use one source of references")
    if not _is_jsonl(ref_path):
        references = _read_text_lines(ref_path)
        _check_counts(path, len(predictions), ref_path, len(references))
        return LoadedPredictions(predictions, references, ids)

    ref_records = _read_jsonl(ref_path)
    ref_ids = _ids(ref_path, ref_records)
    if ids is None or ref_ids is None:
        _check_counts(path, len(predictions), ref_path, len(ref_records))
        return LoadedPredictions(predictions, [_reference_field(ref_path, r) for r in ref_records], ids)
    by_id = dict(zip(ref_ids, ref_records))
    references = []
    for rec, i in zip(records, ids):
        if i not in by_id:
            raise PredictionFileError(f"{ref_path}: no reference with id {i!r} (needed by {path} line {rec.line})")
        references.append(_reference_field(ref_path, by_id[i]))
    return LoadedPredictions(predictions, references, ids)


def load_prediction_groups(path: str | os.PathLike[str],
                           references_path: str | os.PathLike[str] | None = None) -> dict[str, LoadedPredictions]:
    """Read a predictions file as one group per system: ``{label: LoadedPredictions}``.

    A file whose records carry ``system`` (every recipe's ``predictions.jsonl``) gives one
    group per ``system``, labelled ``"test_set / system"`` when the records name more than
    one ``test_set``; ids need only be unique within a group.  Any other file is a single
    group labelled with the file name (:func:`load_predictions`).

    Raises:
        PredictionFileError: as :func:`load_predictions`, and when only some records name
            their system, or a recipe file is given a separate references file.

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "predictions.jsonl"
        >>> _ = tmp.write_text('{"system": "A", "id": "1", "prediction": "hi", "reference": "hi"}\\n'
        ...                    '{"system": "B", "id": "1", "prediction": "yo", "reference": "hi"}\\n')
        >>> {k: v.predictions for k, v in load_prediction_groups(tmp).items()}
        {'A': ['hi'], 'B': ['yo']}
    """
    path = Path(path)
    if not _is_jsonl(path):
        return {path.name: load_predictions(path, references_path)}
    records = _read_jsonl(path)
    named = [("system" in r.data) for r in records]
    if not any(named):
        return {path.name: load_predictions(path, references_path)}
    if not all(named):
        rec = records[named.index(False)]
        raise PredictionFileError(f"{path} line {rec.line}: field 'system' is missing, but other records name their "
                                  "system; give every record a system or none")
    if references_path is not None:
        raise PredictionFileError(f"{path}: a recipe's predictions file holds its references; give no references file")
    sets = {str(r.data.get("test_set", "")) for r in records}
    groups: dict[str, list[_Record]] = {}
    for rec in records:
        system = rec.data["system"]
        if not isinstance(system, str) or not system:
            raise PredictionFileError(f"{path} line {rec.line}: field 'system' must be a non-empty string")
        label = f"{rec.data.get('test_set', '')} / {system}" if len(sets) > 1 else system
        groups.setdefault(label, []).append(rec)
    out = {}
    for label, recs in groups.items():
        out[label] = LoadedPredictions([_string_field(path, r, "prediction") for r in recs],
                                       [_reference_field(path, r) for r in recs], _ids(path, recs))
    return out


def _check_counts(pred_path: Path, n_pred: int, ref_path: Path, n_ref: int) -> None:
    if n_pred != n_ref:
        raise PredictionFileError(f"{pred_path} has {n_pred} predictions but {ref_path} has {n_ref} references; "
                                  "line-by-line matching needs equal counts")


def evaluate_file(predictions_path: str | os.PathLike[str], references_path: str | os.PathLike[str] | None = None,
                  metrics: Sequence[str | Metric] = DEFAULT_METRICS, **options: Any) -> dict[str, float]:
    """Load a predictions file (see :func:`load_predictions`) and score it with :func:`evaluate_texts`.

    Args:
        predictions_path: Predictions file.
        references_path: Optional separate references file.
        metrics: Metric names or instances.
        **options: Per-metric options, e.g. ``rouge={"use_stemmer": False}``.

    Returns:
        Flat ``{metric key: value}``.
    """
    loaded = load_predictions(predictions_path, references_path)
    return evaluate_texts(loaded.predictions, loaded.references, metrics=metrics, **options)
