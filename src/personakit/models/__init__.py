"""Composed models and baselines."""
