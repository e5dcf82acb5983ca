"""LowRankSpecificEncoder: the questioner-specific low-rank stream beside a causal LM."""

from __future__ import annotations

import pytest
import torch

from _questioner_kit import VOCAB, build_lm
from personakit.modules import LowRankFeedForward, LowRankSpecificEncoder, LowRankSpecificEncoderConfig, SpecificStreamLayer
from personakit.testing import assert_config_matches

KINDS = ("llama", "qwen2", "gpt2")


def _ids(b=3, t=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (b, t), generator=g)


def _randomise(enc: LowRankSpecificEncoder) -> None:
    torch.manual_seed(5)
    for block in enc.blocks:
        torch.nn.init.normal_(block.ffn.down_proj.weight, std=0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_zeroed_stream_equals_backbone_exactly(kind):
    lm = build_lm(kind)
    ids = _ids()
    with torch.no_grad():
        ref = lm(ids).logits
    enc = LowRankSpecificEncoder(lm, num_questioners=4, rank=4, init_scale=1.0)
    enc.zero_()
    with torch.no_grad(), enc.use_questioners(torch.tensor([1, 2, 3])):
        out = lm(ids).logits
    assert torch.equal(out, ref)
    with torch.no_grad():  # no questioners set: the wrapped layers return the backbone's output
        assert torch.equal(lm(ids).logits, ref)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_changes_logits_per_questioner(kind):
    lm = build_lm(kind)
    enc = LowRankSpecificEncoder(lm, num_questioners=4, rank=4)
    _randomise(enc)
    ids = _ids(b=1).expand(2, -1)
    with torch.no_grad(), enc.use_questioners(torch.tensor([1, 2])):
        out = lm(ids).logits
    assert not torch.allclose(out[0], out[1])


def test_stream_equals_hand_written_loop():
    """delta_{l+1} = delta_l + FFN_s(Norm_s(h_l + a_l + delta_l) + e_q); logits = head(norm(h_L) + delta_L)."""
    lm = build_lm("llama")
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4)
    _randomise(enc)
    with torch.no_grad():
        enc.questioner_embeddings.weight.normal_(std=1.0)
    ids = _ids(b=2)
    qids = torch.tensor([1, 3])
    inputs, attn, hooks = [], [], []
    for layer in enc._layers:
        hooks.append(layer.wrapped_layer.register_forward_pre_hook(
            lambda m, args, kwargs: inputs.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True))
        hooks.append(layer.wrapped_layer.self_attn.register_forward_hook(lambda m, a, out: attn.append(out[0])))
    with torch.no_grad():
        hidden_out = lm.model(ids).last_hidden_state  # general stream only (no questioners set): norm(h_L)
        inner = lm.model.norm
        lm.model.norm = torch.nn.Identity()
        h_last = lm.model(ids).last_hidden_state  # (B, T, D): h_L
        lm.model.norm = inner
    for h in hooks:
        h.remove()
    n = len(enc.blocks)
    assert len(inputs) == len(attn) == 2 * n
    e = enc.questioner_embeddings.weight[qids][:, None, :]  # (B, 1, D)
    delta = torch.zeros_like(h_last)
    with torch.no_grad():
        for l_, block in enumerate(enc.blocks):
            delta = delta + block.ffn(block.norm(inputs[l_] + attn[l_] + delta) + e)
        expected = lm.lm_head(inner(h_last) + delta)
        assert torch.allclose(lm.lm_head(hidden_out), lm(ids).logits, atol=1e-6)
        with enc.use_questioners(qids):
            got = lm(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got[0], got[1])


def test_default_init_scale_zero_starts_as_backbone():
    lm = build_lm()
    ids = _ids()
    with torch.no_grad():
        ref = lm(ids).logits
    enc = LowRankSpecificEncoder(lm, num_questioners=2, rank=4)  # init_scale=0
    with torch.no_grad(), enc.use_questioners(torch.tensor([1, 2, 1])):
        assert torch.equal(lm(ids).logits, ref)


@pytest.mark.parametrize("gated", [True, False])
def test_block_has_declared_rank(gated):
    torch.manual_seed(0)
    ffn = LowRankFeedForward(16, rank=3, gated=gated, init_scale=1.0)
    assert ffn.up_proj.weight.shape == (3, 16) and ffn.down_proj.weight.shape == (16, 3)
    if gated:
        assert ffn.gate_proj.weight.shape == (3, 16)
    ffn = ffn.double()
    outputs = ffn(torch.randn(200, 16, dtype=torch.float64)).detach()  # rows lie in the column space of W_down
    assert int(torch.linalg.matrix_rank(outputs)) == 3


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_encoder_blocks_have_declared_rank_and_parameter_count(kind):
    lm = build_lm(kind)
    enc = LowRankSpecificEncoder(lm, num_questioners=4, rank=5)
    for block in enc.blocks:
        assert block.ffn.rank == 5 and block.ffn.down_proj.weight.shape == (16, 5)
    gated = kind == "llama"
    norm = 16 if gated else 32  # RMSNorm weight, or LayerNorm weight + bias
    assert enc.parameters_per_layer() == (3 if gated else 2) * 16 * 5 + norm
    assert enc.num_added_parameters() == 2 * enc.parameters_per_layer() + 5 * 16


def test_unknown_questioner_general_fallback_is_backbone_row():
    lm = build_lm()
    ids = _ids(b=2)
    with torch.no_grad():
        ref = lm(ids).logits
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4, unknown_questioner="general")
    _randomise(enc)
    with torch.no_grad(), enc.use_questioners(torch.tensor([0, 2])):
        out = lm(ids).logits
    assert torch.equal(out[0], ref[0])
    assert not torch.allclose(out[1], ref[1])


def test_unknown_questioner_default_embedding():
    lm = build_lm()
    ids = _ids(b=1)
    with torch.no_grad():
        ref = lm(ids).logits
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4, unknown_questioner="default")
    _randomise(enc)
    with torch.no_grad(), enc.use_questioners(torch.tensor([0])):
        default = lm(ids).logits
    with torch.no_grad():
        enc.questioner_embeddings.weight[0].add_(1.0)
    with torch.no_grad(), enc.use_questioners(torch.tensor([0])):
        moved = lm(ids).logits
    assert not torch.allclose(default, ref)  # the default embedding drives a specific stream
    assert not torch.allclose(moved, default)  # ... through embedding row 0


def test_questioner_ids_checked():
    enc = LowRankSpecificEncoder(build_lm(), num_questioners=2, rank=2)
    with pytest.raises(ValueError, match=r"in \[0, 2\]"):
        enc.resolve(torch.tensor([3]))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_kv_cache_generation_matches_full_forward(kind):
    lm = build_lm(kind)
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4)
    _randomise(enc)
    ids = _ids(b=2, t=5)
    with torch.no_grad(), enc.use_questioners(torch.tensor([1, 3])):
        gen = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                          pad_token_id=0, eos_token_id=None)
        full = lm(gen).logits  # no cache: logits of every position at once
    greedy = full[:, ids.size(1) - 1:-1].argmax(-1)
    assert torch.equal(greedy, gen[:, ids.size(1):])


def test_beam_expansion_repeats_questioners():
    lm = build_lm()
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4)
    _randomise(enc)
    ids = _ids(b=2, t=4)
    with torch.no_grad(), enc.use_questioners(torch.tensor([1, 2])):
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, num_beams=2, do_sample=False,
                          pad_token_id=0)
    assert out.shape[0] == 2


def test_pooled_representation_and_gradient():
    lm = build_lm()
    enc = LowRankSpecificEncoder(lm, num_questioners=3, rank=4, init_scale=0.1)
    ids = _ids(b=2)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    with enc.use_questioners(torch.tensor([1, 2])):
        lm(ids, attention_mask=mask)
        pooled = enc.pooled(mask)
    assert pooled.shape == (2, 16)
    pooled.sum().backward()
    assert enc.blocks[0].ffn.down_proj.weight.grad is not None
    assert enc.questioner_embeddings.weight.grad[1:3].abs().sum() > 0


def test_unwrap_restores_layers_and_rejects_double_wrap():
    lm = build_lm()
    enc = LowRankSpecificEncoder(lm, num_questioners=2, rank=2)
    assert all(isinstance(layer, SpecificStreamLayer) for layer in lm.model.layers)
    assert lm.model.layers[0].self_attn is lm.model.layers[0].wrapped_layer.self_attn  # attributes pass through
    with pytest.raises(ValueError, match="already wrapped"):
        LowRankSpecificEncoder(lm, num_questioners=2, rank=2)
    enc.unwrap()
    assert not any(isinstance(layer, SpecificStreamLayer) for layer in lm.model.layers)
    assert not lm.model.norm._forward_hooks  # the hook adding delta_L after the final norm is gone too


def test_unsupported_layout():
    with pytest.raises(TypeError, match="unsupported layer layout"):
        LowRankSpecificEncoder(torch.nn.Linear(3, 3), num_questioners=1)


def test_config_matches_constructor():
    assert_config_matches(LowRankSpecificEncoderConfig, exclude=("model", "num_questioners"))
    enc = LowRankSpecificEncoderConfig(rank=3).build(model=build_lm(), num_questioners=2)
    assert enc.rank == 3
