"""Retrievers over user profiles (ROPG/RSPG family, SPEC §7), with one interface.

``index → score → retrieve`` (:class:`Retriever`); built-ins ``"bm25"``, ``"recency"``,
``"dense"``, ``"none"`` and ``"rrf"`` in the registry (:func:`get_retriever`).
"""

from personakit.retrieval.base import IndexedProfile, RetrievedItem, Retriever, as_profile_items
from personakit.retrieval.bm25 import BM25Config, BM25Retriever
from personakit.retrieval.dense import DenseConfig, DenseRetriever
from personakit.retrieval.encoders import (
    CallableEncoder,
    MeanPoolingEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    as_text_encoder,
    mean_pool,
)
from personakit.retrieval.none import NoRetrieval, NoRetrievalConfig
from personakit.retrieval.recency import RecencyConfig, RecencyRetriever
from personakit.retrieval.registry import RETRIEVERS, get_retriever, register_retriever, retriever_names
from personakit.retrieval.rrf import RRFConfig, RRFRetriever
from personakit.retrieval.selector import RetrieverSelector, RetrieverSelectorConfig, SelectionResult
from personakit.retrieval.selector_diagnostics import SelectorDiagnostics, selector_diagnostics
from personakit.retrieval.tokenize import default_tokenize, get_tokenizer, whitespace_tokenize

from personakit.retrieval.lamp_prompts import (
    LAMP_TEMPLATES,
    LaMPPromptBuilder,
    LaMPPromptConfig,
    LaMPTemplate,
    count_tokens,
    get_lamp_template,
    lamp_query,
    register_lamp_template,
)

__all__ = [
    "LAMP_TEMPLATES",
    "LaMPPromptBuilder",
    "LaMPPromptConfig",
    "LaMPTemplate",
    "count_tokens",
    "get_lamp_template",
    "lamp_query",
    "register_lamp_template",
    "RetrieverSelector",
    "RetrieverSelectorConfig",
    "SelectionResult",
    "SelectorDiagnostics",
    "selector_diagnostics",
    "Retriever",
    "IndexedProfile",
    "RetrievedItem",
    "as_profile_items",
    "BM25Retriever",
    "BM25Config",
    "RecencyRetriever",
    "RecencyConfig",
    "DenseRetriever",
    "DenseConfig",
    "NoRetrieval",
    "NoRetrievalConfig",
    "RRFRetriever",
    "RRFConfig",
    "TextEncoder",
    "CallableEncoder",
    "SentenceTransformerEncoder",
    "MeanPoolingEncoder",
    "as_text_encoder",
    "mean_pool",
    "RETRIEVERS",
    "register_retriever",
    "get_retriever",
    "retriever_names",
    "default_tokenize",
    "whitespace_tokenize",
    "get_tokenizer",
]
