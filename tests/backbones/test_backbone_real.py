"""The embedded registry models, loaded for real from their packages (marker ``real_model``).

SmolLM2 is converted once into the default cache (shared with the ``smollm2``
fixture of ``tests/conftest.py``); later runs load the converted folder offline.
"""

from __future__ import annotations

import pytest
import torch

from personakit.backbones import (
    embedded_path,
    embedded_status,
    load_embedded,
    load_sentence_encoder,
)
from personakit.backbones.cache import read_marker

pytestmark = pytest.mark.real_model


def test_smollm2_converted_cache(smollm2):
    model, tokenizer = smollm2
    path = embedded_path("smollm2", install=False)
    status = embedded_status("smollm2")
    assert status.prepared and status.path == path and status.size_bytes > 500e6  # fp32 safetensors
    marker = read_marker(path)
    assert marker["recipe"] == "gguf-to-safetensors/1"
    assert marker["sources"][0]["name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert not hasattr(model.config, "quantization_config")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert model.dtype == torch.float32
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    assert tokenizer.pad_token_id == tokenizer.eos_token_id


def test_smollm2_chat_generation(smollm2):
    model, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>") and prompt.rstrip().endswith("<|im_start|>assistant")
    batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply


def _check_encoder(name: str, dim: int) -> None:
    encoder = load_sentence_encoder(name, device="cpu")
    sentences = [
        "I love walking my dog in the park.",
        "Taking my puppy for a stroll in the park is my favourite thing.",
        "The central bank raised interest rates by half a point.",
    ]
    emb = encoder.encode(sentences, convert_to_tensor=True)  # (3, D)
    assert emb.shape == (3, dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-4, rtol=0)
    sims = emb @ emb.T  # (3, 3) cosine similarities
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2


def test_minilm_sentence_embeddings():
    _check_encoder("minilm", 384)


def test_mpnet_sentence_embeddings():
    _check_encoder("mpnet", 768)


def test_minilm_as_plain_encoder(minilm_path):
    model, tokenizer = load_embedded("minilm")
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 384
    assert embedded_path("minilm") == minilm_path
    out = model(**tokenizer(["hello there"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 384  # (B, T, 384)
