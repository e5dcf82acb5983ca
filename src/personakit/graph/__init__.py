"""Graph components of CoPersona: the multiplex user graph, MonotoneGate and FacetGraph (PyG).

``import personakit.graph`` does not import ``torch_geometric``: :class:`FacetGraph` and
its config are loaded on first use (module-level ``__getattr__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from personakit._lazy import attach as _attach
from personakit.graph.builder import (
    DEFAULT_OMEGA,
    MultiplexGraph,
    build_multiplex_graph,
    random_neighbors,
    reliability_weighted,
    update_multiplex_graph,
)
from personakit.graph.gate import MonotoneGate, MonotoneGateConfig

if TYPE_CHECKING:  # pragma: no cover
    from personakit.graph.facet_graph import FacetGraph, FacetGraphConfig

__getattr__, __dir__, _lazy_names = _attach(
    __name__,
    {"facet_graph": ("FacetGraph", "FacetGraphConfig")},
    requires={"facet_graph": "torch_geometric"},
)

__all__ = [
    "DEFAULT_OMEGA",
    "MultiplexGraph",
    "build_multiplex_graph",
    "update_multiplex_graph",
    "reliability_weighted",
    "random_neighbors",
    "MonotoneGate",
    "MonotoneGateConfig",
    *_lazy_names,
]
