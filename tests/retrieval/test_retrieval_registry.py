"""Retriever registry and configs: names, duplicates, config/constructor agreement, round trips."""

from __future__ import annotations

import pytest

from personakit.config import ConfigError
from personakit.retrieval import (
    BM25Config,
    BM25Retriever,
    DenseConfig,
    DenseRetriever,
    NoRetrieval,
    NoRetrievalConfig,
    RecencyConfig,
    RecencyRetriever,
    RRFConfig,
    RRFRetriever,
    get_retriever,
    register_retriever,
    retriever_names,
)
from personakit.testing import assert_config_matches

CONFIGS = [BM25Config, RecencyConfig, DenseConfig, NoRetrievalConfig, RRFConfig]


@pytest.mark.parametrize("config", CONFIGS)
def test_config_fields_match_constructor(config):
    assert_config_matches(config)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_yaml_round_trip(config):
    cfg = config()
    assert config.from_yaml(cfg.to_yaml()) == cfg
    assert config.from_json(cfg.to_json()) == cfg


def test_builtin_names_resolve():
    assert set(retriever_names()) >= {"bm25", "recency", "dense", "none", "rrf"}
    assert isinstance(get_retriever("BM25", k1=1.2), BM25Retriever)
    assert get_retriever("bm25", k1=1.2).k1 == 1.2
    assert isinstance(get_retriever("recency"), RecencyRetriever)
    assert isinstance(get_retriever("none"), NoRetrieval)
    dense = get_retriever("dense", encoder=lambda texts: __import__("torch").ones(len(texts), 3), batch_size=4)
    assert isinstance(dense, DenseRetriever) and dense.batch_size == 4
    rrf = get_retriever("rrf", retrievers=["bm25", {"name": "recency"}], k=30)
    assert isinstance(rrf, RRFRetriever) and rrf.k == 30 and len(rrf.retrievers) == 2
    inst = BM25Retriever()
    assert get_retriever(inst) is inst
    assert get_retriever(BM25Config(b=0.3)).b == 0.3
    assert get_retriever({"name": "bm25", "tokenizer": "whitespace"}).tokenize("A,b") == ["A,b"]
    tok = get_retriever("bm25", tokenizer=str.split)  # a callable goes straight to the constructor
    assert tok.tokenize("X y") == ["X", "y"]


def test_config_build_of_rrf_from_yaml():
    cfg = RRFConfig.from_yaml("retrievers: [bm25, {name: recency, chronological: false}]\nk: 60\n")
    rrf = cfg.build()
    assert isinstance(rrf.retrievers[0], BM25Retriever) and rrf.retrievers[1].chronological is False


def test_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_retriever("BM-25", BM25Retriever, BM25Config)  # normalised duplicate of "bm25"
    with pytest.raises(TypeError, match="not a Retriever"):
        register_retriever("not-a-retriever", dict)
    with pytest.raises(KeyError, match="registered: "):
        get_retriever("nope")
    with pytest.raises(ConfigError, match="k1"):
        get_retriever("bm25", k1=-2)
    with pytest.raises(ConfigError, match="unknown_option"):
        get_retriever("bm25", unknown_option=1)
    with pytest.raises(ConfigError, match="retrievers"):
        RRFConfig.from_dict({"retrievers": [{"k1": 1}]})
    with pytest.raises(ValueError, match="'name'"):
        get_retriever({"k1": 1.0})
    with pytest.raises(TypeError, match="existing"):
        get_retriever(BM25Retriever(), k1=2)


def test_custom_registration():
    class Echo(NoRetrieval):
        pass

    name = "test-echo-retriever"
    register_retriever(name, Echo)
    try:
        assert isinstance(get_retriever(name), Echo)
        with pytest.raises(ValueError, match="already registered"):
            register_retriever(name, Echo)
    finally:
        from personakit.config import normalize_name
        from personakit.retrieval import RETRIEVERS

        RETRIEVERS._entries.pop(normalize_name(name), None)
