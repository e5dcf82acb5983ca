"""Losses; each takes embeddings, never a model."""
