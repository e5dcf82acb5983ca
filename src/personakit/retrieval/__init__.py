"""Retrievers over user profiles, fusion, and retriever selection."""
