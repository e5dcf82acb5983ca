"""Small helpers shared by the recipes: JSON-ready results and stage messages."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

__all__ = ["StageLog", "jsonable"]


def jsonable(x: Any) -> Any:
    """``x`` with dict keys as strings, tuples as lists, NaN as ``None``, ±inf as strings, paths and tensors as plain values."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item):
        return jsonable(x.item())
    return x


class StageLog:
    """Print ``[name  12.3s] message`` lines (seconds since creation) when enabled."""

    def __init__(self, enabled: bool, name: str, width: int = 6):
        self.enabled = enabled
        self.name = name
        self.width = width
        self.start = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{self.name} {time.perf_counter() - self.start:{self.width}.1f}s] {msg}", flush=True)
