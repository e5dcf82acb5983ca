r"""Tokenisers for lexical retrieval (BM25).

The default, :func:`default_tokenize`, lower-cases the text (Unicode-aware
``str.lower``) and keeps the maximal runs of word characters (``\w+``: letters, digits
and ``_`` in any script); punctuation and whitespace separate tokens and are dropped.
There is no stemming and no stop-word list, so results do not depend on downloaded
resources.

``"whitespace"`` (:func:`whitespace_tokenize`, ``str.split()``) reproduces the
tokenisation of the original LaMP code (Salemi et al. 2023), which the ROPG/RSPG paper
follows; ``"default"`` usually retrieves better because ``"cats,"`` and ``"Cats"``
become the same term.

A tokenizer is any callable ``str -> list[str]``; retriever configs name one of the
registered tokenizers (:func:`get_tokenizer`).

Example:
    >>> default_tokenize("Cats, dogs & the CAT's toys!")
    ['cats', 'dogs', 'the', 'cat', 's', 'toys']
    >>> whitespace_tokenize("Cats, dogs")
    ['Cats,', 'dogs']
"""

from __future__ import annotations

import re
from typing import Callable

from personakit.config import normalize_name

__all__ = ["Tokenizer", "TOKEN_PATTERN", "default_tokenize", "whitespace_tokenize", "get_tokenizer", "tokenizer_names"]

Tokenizer = Callable[[str], list[str]]

#: Maximal runs of Unicode word characters.
TOKEN_PATTERN = re.compile(r"\w+", re.UNICODE)


def default_tokenize(text: str) -> list[str]:
    r"""Lower-case ``text`` and return its ``\w+`` runs (the default BM25 tokenisation)."""
    return TOKEN_PATTERN.findall(text.lower())


def whitespace_tokenize(text: str) -> list[str]:
    """``text.split()``: the tokenisation of the original LaMP BM25 baseline (case and punctuation kept)."""
    return text.split()


_TOKENIZERS: dict[str, Tokenizer] = {
    "default": default_tokenize,
    "whitespace": whitespace_tokenize,
}


def tokenizer_names() -> list[str]:
    """Names accepted by :func:`get_tokenizer`."""
    return sorted(_TOKENIZERS)


def get_tokenizer(spec: str | Tokenizer | None) -> Tokenizer:
    """Resolve a tokenizer: ``None`` → :func:`default_tokenize`, a name, or a callable (returned as is).

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
        TypeError: for something that is neither a name nor callable.
    """
    if spec is None:
        return default_tokenize
    if isinstance(spec, str):
        key = normalize_name(spec)
        for name, fn in _TOKENIZERS.items():
            if normalize_name(name) == key:
                return fn
        raise KeyError(f"unknown tokenizer {spec!r}; known: {', '.join(tokenizer_names())}")
    if callable(spec):
        return spec
    raise TypeError(f"tokenizer must be a name, a callable str -> list[str], or None; got {type(spec).__name__}")
