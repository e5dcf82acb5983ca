"""Availability flags for optional dependencies, in one place (cheap: no imports happen here)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache

__all__ = ["is_available", "require", "WITH_PYG", "WITH_SENTENCE_TRANSFORMERS", "WITH_PEFT", "WITH_GGUF", "WITH_FAISS"]

_INSTALL_HINTS = {
    "torch_geometric": "pip install 'personakit[graph]'",
    "sentence_transformers": "pip install 'personakit[retrieval]'",
    "rank_bm25": "pip install 'personakit[retrieval]'",
    "peft": "pip install 'personakit[lora]'",
    "gguf": "pip install 'personakit[embedded]'",
    "accelerate": "pip install 'personakit[train]'",
    "faiss": "pip install 'personakit[ann]'",
}


@lru_cache(maxsize=None)
def is_available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> None:
    """Raise an ``ImportError`` that says what to install when ``module`` is missing."""
    if not is_available(module):
        hint = _INSTALL_HINTS.get(module, f"pip install {module}")
        raise ImportError(f"{feature} needs the optional package {module!r}; install it with: {hint}")


WITH_PYG = is_available("torch_geometric")
WITH_SENTENCE_TRANSFORMERS = is_available("sentence_transformers")
WITH_PEFT = is_available("peft")
WITH_GGUF = is_available("gguf")
WITH_FAISS = is_available("faiss")
