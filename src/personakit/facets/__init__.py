"""Facet schema induction, summarisation and embeddings."""
