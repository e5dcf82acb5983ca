"""The retriever registry: names in config files → retriever classes and their configs.

Built-in names: ``"bm25"``, ``"recency"``, ``"dense"``, ``"none"``, ``"rrf"``.  Names are
normalised (case, ``-``, ``_``, ``.`` and spaces ignored) and registering a name twice is
an error.

Example:
    >>> from personakit.retrieval import get_retriever
    >>> get_retriever("bm25", k1=1.2)
    BM25Retriever(k1=1.2, b=0.75, epsilon=0.25, tokenizer=None)
    >>> get_retriever({"name": "recency", "chronological": False})
    RecencyRetriever(chronological=False)
"""

from __future__ import annotations

from typing import Any, Mapping

from personakit.config import BaseConfig, Registry
from personakit.retrieval.base import Retriever
from personakit.retrieval.bm25 import BM25Config, BM25Retriever
from personakit.retrieval.dense import DenseConfig, DenseRetriever
from personakit.retrieval.none import NoRetrieval, NoRetrievalConfig
from personakit.retrieval.recency import RecencyConfig, RecencyRetriever
from personakit.retrieval.rrf import RRFConfig, RRFRetriever

__all__ = ["RETRIEVERS", "register_retriever", "get_retriever", "retriever_names"]

#: The registry of retriever classes (with their configs).
RETRIEVERS: Registry[Retriever] = Registry("retriever")


def register_retriever(name: str, cls: type[Retriever], config: type[BaseConfig] | None = None) -> type[Retriever]:
    """Register ``cls`` (and the config that mirrors it) under ``name``; duplicates raise ``ValueError``."""
    if not (isinstance(cls, type) and issubclass(cls, Retriever)):
        raise TypeError(f"{cls!r} is not a Retriever subclass")
    return RETRIEVERS.register(name, cls, config)


def retriever_names() -> list[str]:
    """The registered names."""
    return RETRIEVERS.names()


def _is_plain(value: Any) -> bool:
    """Whether ``value`` can live in a config file (and so is validated by the config)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def get_retriever(spec: str | Mapping[str, Any] | BaseConfig | Retriever, **kwargs: Any) -> Retriever:
    """Build a retriever from a name, a mapping with a ``name`` key, a config, or return an instance.

    Plain keyword values (numbers, strings, lists, mappings) are validated by the
    registered config; objects (an encoder, a tokenizer function, retriever instances)
    go straight to the constructor.

    Raises:
        KeyError: for an unknown name (listing the registered ones).
        personakit.config.ConfigError: for an invalid option.
    """
    if isinstance(spec, Retriever):
        if kwargs:
            raise TypeError(f"cannot apply options {sorted(kwargs)} to an existing {type(spec).__name__}")
        return spec
    if isinstance(spec, BaseConfig):
        return spec.build(**kwargs)
    if isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"a retriever mapping needs a string 'name' key; got keys {sorted(spec)}")
        options.update(kwargs)
        return get_retriever(name, **options)
    if not isinstance(spec, str):
        raise TypeError(f"cannot make a retriever from {type(spec).__name__}")
    cls = RETRIEVERS.get(spec)
    config = RETRIEVERS.get_config(spec)
    if config is None:
        return cls(**kwargs)
    plain = {k: v for k, v in kwargs.items() if _is_plain(v)}
    objects = {k: v for k, v in kwargs.items() if not _is_plain(v)}
    return config.from_dict(plain, source=f"retriever {spec!r}").build(**objects)


register_retriever("bm25", BM25Retriever, BM25Config)
register_retriever("recency", RecencyRetriever, RecencyConfig)
register_retriever("dense", DenseRetriever, DenseConfig)
register_retriever("none", NoRetrieval, NoRetrievalConfig)
register_retriever("rrf", RRFRetriever, RRFConfig)
