"""Pure tensor maths used by the modules (losses, scores, fusion, k-NN search), free of nn.Module state.

The k-NN searches of :mod:`personakit.functional.knn` are re-exported here
(``from personakit.functional import knn_exact``), loaded on first use so that importing
a light module such as :mod:`personakit.functional.text` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from personakit.functional.knn import (
        knn_chunk_size,
        knn_exact,
        knn_exact_among,
        knn_faiss,
        knn_ivf,
        knn_merge,
        knn_threshold,
    )

_LAZY = {
    name: "personakit.functional.knn"
    for name in ("knn_chunk_size", "knn_exact", "knn_exact_among", "knn_faiss", "knn_ivf", "knn_merge",
                 "knn_threshold")
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personakit.functional' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
