"""Markdown tables of metric results: rows are systems, columns are metrics."""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["format_metrics_table"]


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) or hasattr(value, "__float__"):
        x = float(value)
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}f}"
    return _escape(str(value))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_metrics_table(rows: Mapping[str, Mapping[str, Any]], digits: int = 3, first_column: str = "system") -> str:
    """Render ``{system: {metric: value}}`` as a GitHub-flavoured markdown table.

    Columns are the metric names in first-seen order across rows; a metric missing
    for a system shows as ``–``.  Numbers are printed with ``digits`` decimals and
    right-aligned.

    Args:
        rows: One mapping of metric values per system (row label).
        digits: Decimals for numbers.
        first_column: Header of the row-label column.

    Returns:
        The table as a string (no trailing newline).

    Example:
        >>> print(format_metrics_table({"baseline": {"rouge1": 0.31, "bleu": 12.0},
        ...                             "ours": {"rouge1": 0.35, "bleu": 14.25}}, digits=2))
        | system | rouge1 | bleu |
        | --- | ---: | ---: |
        | baseline | 0.31 | 12.00 |
        | ours | 0.35 | 14.25 |
    """
    if not rows:
        raise ValueError("format_metrics_table: no rows (give {system: {metric: value}})")
    if digits < 0:
        raise ValueError(f"format_metrics_table: digits must be >= 0, got {digits}")
    columns: list[str] = []
    for system, values in rows.items():
        if not isinstance(values, Mapping):
            raise TypeError(f"format_metrics_table: row {system!r} is {type(values).__name__}; expected a mapping "
                            "of metric name to value")
        for key in values:
            if key not in columns:
                columns.append(key)
    lines = [
        "| " + " | ".join([_escape(first_column)] + [_escape(c) for c in columns]) + " |",
        "| " + " | ".join(["---"] + ["---:"] * len(columns)) + " |",
    ]
    for system, values in rows.items():
        cells = [_escape(str(system))] + [_cell(values.get(c), digits) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
