"""SoftPromptProjector, prepend_soft_prompt and SoftPromptCache."""

from __future__ import annotations

import pytest
import torch

from personakit.modules import (
    SoftPromptCache,
    SoftPromptProjector,
    SoftPromptProjectorConfig,
    embedding_version,
    prepend_soft_prompt,
)
from personakit.testing import assert_config_matches


def test_projector_is_the_paper_mlp():
    torch.manual_seed(0)
    proj = SoftPromptProjector(in_dim=12, hidden_size=8, num_virtual_tokens=3, bottleneck=5)
    h = torch.randn(2, 12)
    out = proj(h)
    assert out.shape == (2, 3, 8)
    expected = (torch.tanh(h @ proj.down.weight.T + proj.down.bias) @ proj.up.weight.T + proj.up.bias).view(2, 3, 8)
    torch.testing.assert_close(out, expected)
    assert proj(h[0]).shape == (3, 8)
    assert proj.down.out_features == 5 and proj.up.out_features == 24
    with pytest.raises(ValueError, match="in_dim=12"):
        proj(torch.randn(2, 11))


def test_prepend_extends_mask_and_labels():
    embeds = torch.randn(2, 4, 6)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # left padding in row 0
    labels = torch.tensor([[-100, 5, 6, 7], [1, 2, 3, 4]])
    soft = torch.randn(2, 3, 6, dtype=torch.float64)
    e, m, y = prepend_soft_prompt(embeds, mask, labels, soft)
    assert e.shape == (2, 7, 6) and e.dtype == embeds.dtype
    torch.testing.assert_close(e[:, :3], soft.float())
    assert torch.equal(e[:, 3:], embeds)
    assert m.tolist() == [[1, 1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    assert y.tolist() == [[-100, -100, -100, -100, 5, 6, 7], [-100, -100, -100, 1, 2, 3, 4]]
    e2, m2, y2 = prepend_soft_prompt(embeds, None, None, soft[0])  # shared prompt, no mask / labels
    assert e2.shape == (2, 7, 6) and m2.shape == (2, 7) and bool((m2 == 1).all()) and y2 is None
    with pytest.raises(ValueError, match="soft_prompt"):
        prepend_soft_prompt(embeds, mask, labels, torch.randn(3, 3, 6))


def test_prepend_loss_only_on_real_tokens():
    """With a tiny causal LM the loss with the prompt prepended ignores the virtual tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=32, vocab_size=50)
    lm = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 50, (2, 5))
    proj = SoftPromptProjector(in_dim=4, hidden_size=16, num_virtual_tokens=3, bottleneck=8)
    e, m, y = prepend_soft_prompt(lm.get_input_embeddings()(ids), torch.ones(2, 5), ids.clone(), proj(torch.randn(2, 4)))
    out = lm(inputs_embeds=e, attention_mask=m, labels=y)
    # the virtual tokens are never targets; the last one predicts the first real token
    logits = out.logits[:, 2:-1]  # (B, 5, V): predictions of real tokens 0..4
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), ids.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert proj.up.weight.grad is not None and bool(proj.up.weight.grad.abs().sum() > 0)


def test_cache_invalidation_and_round_trip(tmp_path):
    cache = SoftPromptCache()
    calls = []

    def compute(v):
        calls.append(1)
        return v.view(2, 3) * 2

    v1 = torch.arange(6.0)
    p1 = cache.get_or_compute("alice", v1, compute)
    assert torch.equal(cache.get_or_compute("alice", v1, compute), p1) and len(calls) == 1
    v2 = v1 + 1  # the user's graph embedding changed
    p2 = cache.get_or_compute("alice", v2, compute)
    assert len(calls) == 2 and torch.equal(p2, v2.view(2, 3) * 2)
    assert cache.get("alice", embedding_version(v1)) is None  # stale version dropped
    assert "alice" not in cache
    cache.put("bob", torch.ones(2, 3, dtype=torch.bfloat16), "v7")
    cache.put(42, torch.zeros(1, 3), "x")
    assert embedding_version(v1) != embedding_version(v2) == embedding_version(v1 + 1)

    path = cache.save(tmp_path / "prompts.safetensors")
    loaded = SoftPromptCache.load(path)
    assert loaded.user_ids() == cache.user_ids() == ["bob", "42"]
    assert loaded.version("bob") == "v7" and loaded.get("bob").dtype == torch.bfloat16
    assert torch.equal(loaded.get("42", "x"), torch.zeros(1, 3))
    loaded.invalidate("bob")
    assert len(loaded) == 1
    loaded.invalidate()
    assert len(loaded) == 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_cache_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a SoftPromptCache file"):
        SoftPromptCache.load(tmp_path / "other.safetensors")


def test_config_matches_constructor():
    assert_config_matches(SoftPromptProjectorConfig)
    proj = SoftPromptProjectorConfig(in_dim=4, hidden_size=8).build()
    assert proj.num_virtual_tokens == 20 and proj.bottleneck == 512
    assert "num_virtual_tokens=20" in repr(proj)
