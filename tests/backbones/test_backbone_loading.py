"""Loading by local folder / hub id / embedded name, with tiny random local models."""

from __future__ import annotations

import pytest
import torch

from personakit.backbones import (
    BackboneNotFoundError,
    load_causal_lm,
    load_encoder,
    load_seq2seq_lm,
    resolve_model_path,
)
from personakit.backbones import loading


def test_local_causal_lm_loads_saved_weights(tiny_llama_dir):
    from safetensors.torch import load_file

    model, tokenizer = load_causal_lm(tiny_llama_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    saved = load_file(str(tiny_llama_dir / "model.safetensors"))
    state = model.state_dict()
    for name, tensor in saved.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)
    assert model.dtype == torch.float32
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"  # pad defaulted to eos for batching
    batch = tokenizer(["hello world", "persona"], return_tensors="pt", padding=True)
    assert model(**batch).logits.shape == (2, 2, 9)  # (B, T, V)


def test_local_causal_lm_as_string_with_dtype(tiny_llama_dir):
    model, _ = load_causal_lm(str(tiny_llama_dir), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16


def test_bad_dtype_name(tiny_llama_dir):
    with pytest.raises(ValueError, match="unknown dtype"):
        load_causal_lm(tiny_llama_dir, dtype="float33")


def test_local_seq2seq_and_encoder(tiny_bart_dir, tiny_bert_dir):
    model, tokenizer = load_seq2seq_lm(tiny_bart_dir)
    assert type(model).__name__ == "BartForConditionalGeneration"
    assert tokenizer.pad_token is None  # seq2seq tokenizers are left as they are
    encoder, tok = load_encoder(tiny_bert_dir)
    assert type(encoder).__name__ == "BertModel"
    out = encoder(**tok(["hello world kit"], return_tensors="pt"))
    assert out.last_hidden_state.shape == (1, 3, 16)  # (B, T, D)


def test_resolve_model_path(tiny_llama_dir, monkeypatch, tmp_path):
    assert resolve_model_path(tiny_llama_dir) == str(tiny_llama_dir)
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"
    monkeypatch.setattr(loading, "embedded_path", lambda model, install=True: tmp_path / model.name)
    assert resolve_model_path("SmolLM2") == str(tmp_path / "smollm2-135m-instruct")
    for missing in (str(tmp_path / "nope"), "./nope", "~/nope-personakit", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="no such model folder"):
            resolve_model_path(missing)


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loading, "_hub_offline", lambda: True)
    with pytest.raises(BackboneNotFoundError) as info:
        load_causal_lm("no-such-org/no-such-model-personakit")
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "offline mode" in message and "HF_HUB_OFFLINE" in message
    assert "smollm2-135m-instruct" in message and "no-such-org/no-such-model-personakit" in message


def test_known_hub_id_points_to_its_embedded_copy(monkeypatch):
    monkeypatch.setattr(loading, "_hub_offline", lambda: True)
    with pytest.raises(BackboneNotFoundError, match="embedded as 'all-minilm-l6-v2'"):
        load_encoder("sentence-transformers/all-MiniLM-L6-v2")


def test_embedded_name_of_the_wrong_kind(monkeypatch):
    monkeypatch.setattr(loading, "embedded_path", lambda *a, **k: pytest.fail("should not locate"))
    with pytest.raises(ValueError, match="load_encoder"):
        load_causal_lm("minilm")
    with pytest.raises(ValueError, match="load_causal_lm"):
        load_seq2seq_lm("smollm2")
