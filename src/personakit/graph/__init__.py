"""Graph components (PyG): multiplex user graphs, FacetGraph, MonotoneGate."""
