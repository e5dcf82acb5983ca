"""Pure tensor maths used by the modules (losses, scores, fusion, k-NN search), free of nn.Module state.

The k-NN searches of :mod:`personakit.functional.knn` are re-exported here
(``from personakit.functional import knn_exact``), loaded on first use so that importing
a light module such as :mod:`personakit.functional.text` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from personakit._lazy import attach as _attach

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

__getattr__, __dir__, __all__ = _attach(
    __name__,
    {"knn": ("knn_chunk_size", "knn_exact", "knn_exact_among", "knn_faiss", "knn_ivf", "knn_merge", "knn_threshold")},
)
