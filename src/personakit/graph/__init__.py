"""Graph components of CoPersona: the multiplex user graph, MonotoneGate and FacetGraph (PyG).

``import personakit.graph`` does not import ``torch_geometric``: :class:`FacetGraph` and
its config are loaded on first use (module-level ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from personakit.graph.builder import (
    DEFAULT_OMEGA,
    MultiplexGraph,
    build_multiplex_graph,
    reliability_weighted,
    update_multiplex_graph,
)
from personakit.graph.gate import MonotoneGate, MonotoneGateConfig

if TYPE_CHECKING:  # pragma: no cover
    from personakit.graph.facet_graph import FacetGraph, FacetGraphConfig

_LAZY = {
    "FacetGraph": "personakit.graph.facet_graph",
    "FacetGraphConfig": "personakit.graph.facet_graph",
}

__all__ = [
    "DEFAULT_OMEGA",
    "MultiplexGraph",
    "build_multiplex_graph",
    "update_multiplex_graph",
    "reliability_weighted",
    "MonotoneGate",
    "MonotoneGateConfig",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'personakit.graph' has no attribute {name!r}")
    from personakit._imports import require

    require("torch_geometric", f"personakit.graph.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
