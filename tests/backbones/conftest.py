"""Fixtures for the backbones tests: a private cache folder and tiny local models."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """Point the personakit cache at an empty temporary folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PERSONAKIT_CACHE_DIR", str(cache))
    return cache


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "hello", "world", "persona", "kit", "a", "b"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama (hidden 16) and a word-level tokenizer, saved locally."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=9, max_position_embeddings=32,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny BART encoder-decoder, saved locally."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bart")
    config = BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=9,
                        max_position_embeddings=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=2, forced_eos_token_id=2)
    BartForConditionalGeneration(config).save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny BERT encoder, saved locally."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        vocab_size=9, max_position_embeddings=32)
    BertModel(config).save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path
