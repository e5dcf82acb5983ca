"""StyleEnhancedDecoder: h_i <- S + h_i at every decoder layer, on six tiny architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from personakit.modules import (  # noqa: E402
    BartStyleDecoder,
    CausalStyleDecoder,
    EncoderDecoderStyleDecoder,
    StyleEnhancedDecoder,
    StyleInjectionLayer,
    T5StyleDecoder,
    add_style,
    wrap_style_decoder,
)

D = 16
VOCAB = 99


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: thread start-up dominates on a shared machine (30x slower with many threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _bart():
    cfg = BartConfig(
        d_model=D, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=VOCAB, max_position_embeddings=64,
    )
    return BartForConditionalGeneration(cfg)


def _t5():
    cfg = T5Config(d_model=D, d_kv=8, d_ff=32, num_layers=2, num_heads=2, vocab_size=VOCAB, decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg)


def _encoder_decoder():
    common = dict(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=VOCAB,
                  max_position_embeddings=64)
    enc = BertConfig(**common)
    dec = BertConfig(**common, is_decoder=True, add_cross_attention=True)
    cfg = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = 2
    cfg.pad_token_id = 0
    cfg.eos_token_id = 3
    model = EncoderDecoderModel(config=cfg)
    model.generation_config.decoder_start_token_id = 2
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    return model


def _llama():
    cfg = LlamaConfig(hidden_size=D, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(n_embd=D, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=64))


def _qwen2():
    cfg = Qwen2Config(hidden_size=D, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=64)
    return Qwen2ForCausalLM(cfg)


# name -> (builder, expected glue, encoder-decoder?)
ARCHS = {
    "bart": (_bart, BartStyleDecoder, True),
    "t5": (_t5, T5StyleDecoder, True),
    "encoder-decoder": (_encoder_decoder, EncoderDecoderStyleDecoder, True),
    "llama": (_llama, CausalStyleDecoder, False),
    "gpt2": (_gpt2, CausalStyleDecoder, False),
    "qwen2": (_qwen2, CausalStyleDecoder, False),
}


def _build(name: str) -> tuple[nn.Module, dict, bool]:
    torch.manual_seed(0)
    builder, _, is_seq2seq = ARCHS[name]
    model = builder().eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (2, 6), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0 if not is_seq2seq else 1  # left padding for decoder-only
    mask[1, -2:] = 0 if is_seq2seq else 1  # right padding for encoders
    inputs = {"input_ids": ids, "attention_mask": mask}
    if is_seq2seq:
        inputs["decoder_input_ids"] = torch.randint(4, VOCAB, (2, 5), generator=gen)
    return model, inputs, is_seq2seq


def _style(batch: int = 2, scale: float = 1.0, seed: int = 3) -> torch.Tensor:
    return scale * torch.randn(batch, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(ARCHS))
def test_factory_picks_glue(name):
    model, _, _ = _build(name)
    styled = wrap_style_decoder(model)
    assert type(styled) is ARCHS[name][1]
    assert styled.num_layers == 2
    assert all(isinstance(layer, StyleInjectionLayer) for layer in styled.style_layers)
    assert styled.hidden_size == D
    assert "architecture=" in repr(styled)


@pytest.mark.parametrize("name", list(ARCHS))
def test_no_style_is_bit_for_bit(name):
    model, inputs, _ = _build(name)
    with torch.no_grad():
        before = model(**inputs).logits
        styled = wrap_style_decoder(model)
        plain = model(**inputs).logits
        with styled.use_style(None):
            explicit_none = model(**inputs).logits
        with styled.use_style(_style()):
            styled_logits = model(**inputs).logits
        after = model(**inputs).logits  # the style is removed when the block exits
    assert torch.equal(before, plain)
    assert torch.equal(before, explicit_none)
    assert torch.equal(before, after)
    assert not torch.allclose(before, styled_logits)


@pytest.mark.parametrize("name", list(ARCHS))
def test_style_added_at_every_layer_output(name):
    model, inputs, _ = _build(name)
    styled = wrap_style_decoder(model)
    style = _style()
    base_out: dict[int, torch.Tensor] = {}
    wrapped_out: dict[int, torch.Tensor] = {}
    plain_out: dict[int, torch.Tensor] = {}

    def first(output):
        return output[0] if isinstance(output, tuple) else output

    def record(store, i):
        return lambda module, args, output: store.__setitem__(i, first(output).detach().clone())

    handles = []
    for i, layer in enumerate(styled.style_layers):
        handles.append(layer.wrapped_layer.register_forward_hook(record(base_out, i)))
        handles.append(layer.register_forward_hook(record(wrapped_out, i)))
    with torch.no_grad():
        with styled.use_style(style):
            model(**inputs)
        for h in handles[1::2]:
            h.remove()
        handles = handles[::2]
        styled_base = dict(base_out)
        for i, layer in enumerate(styled.style_layers):
            handles.append(layer.register_forward_hook(record(plain_out, i)))
        model(**inputs)
    for h in handles:
        h.remove()

    assert len(wrapped_out) == styled.num_layers == 2
    for i in range(styled.num_layers):
        # Every layer: styled output = the layer's own output + S, broadcast over positions.
        diff = wrapped_out[i] - styled_base[i]  # (B, T, D)
        assert torch.allclose(diff, style[:, None, :].expand_as(diff), atol=1e-5), f"layer {i}"
    # Layer 0 sees the same input with and without a style, so its output moves by exactly S.
    diff0 = wrapped_out[0] - plain_out[0]
    assert torch.allclose(diff0, style[:, None, :].expand_as(diff0), atol=1e-5)
    # Deeper layers see the styled input: they differ from the unstyled run by more than S.
    assert not torch.allclose(wrapped_out[1] - plain_out[1], style[:, None, :].expand_as(diff0), atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHS))
def test_generate_with_style(name):
    model, inputs, is_seq2seq = _build(name)
    styled = wrap_style_decoder(model)
    gen_inputs = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
    kwargs = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6, pad_token_id=0)

    def run(style, **extra):
        with torch.no_grad(), styled.use_style(style):
            out = model.generate(**gen_inputs, **kwargs, output_scores=True, return_dict_in_generate=True, **extra)
        return out.sequences, torch.stack(out.scores)

    plain, plain_scores = run(None)
    strong = _style(scale=20.0)
    with_style, style_scores = run(strong)
    again, again_scores = run(strong)
    zero, zero_scores = run(torch.zeros(2, D))
    no_cache, no_cache_scores = run(strong, use_cache=False)

    assert not torch.equal(plain, with_style)  # the style changes what is generated
    assert not torch.allclose(plain_scores, style_scores)
    assert torch.equal(with_style, again) and torch.equal(style_scores, again_scores)  # deterministic
    assert torch.equal(plain, zero) and torch.equal(plain_scores, zero_scores)  # S = 0 is no style
    # KV cache: the style is applied at every step, so cached and uncached decoding agree.
    assert torch.equal(with_style, no_cache)
    assert torch.allclose(style_scores, no_cache_scores, atol=1e-4)
    assert styled.style is None


@pytest.mark.parametrize("name", ["bart", "llama"])
def test_beam_search_expands_style(name):
    model, inputs, _ = _build(name)
    styled = wrap_style_decoder(model)
    gen_inputs = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
    style = _style(scale=5.0)
    with torch.no_grad(), styled.use_style(style):
        out = model.generate(**gen_inputs, max_new_tokens=4, num_beams=2, num_return_sequences=2, do_sample=False,
                             pad_token_id=0)
    # Each example's style must follow its own beams: example 1 alone (with its own style) gives the same beams.
    with torch.no_grad(), styled.use_style(style[1:]):
        single = model.generate(**{k: v[1:] for k, v in gen_inputs.items()}, max_new_tokens=4, num_beams=2,
                                num_return_sequences=2, do_sample=False, pad_token_id=0)
    assert out.shape[0] == 4  # 2 examples x 2 returned beams
    assert torch.equal(out[2:, : single.shape[1]], single)
    assert bool((out[2:, single.shape[1]:] == 0).all())  # only padding after the shorter run


def test_decoder_stack_forward_with_style_argument():
    model, inputs, _ = _build("bart")
    styled = wrap_style_decoder(model)
    enc = model.model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    args = dict(input_ids=inputs["decoder_input_ids"], encoder_hidden_states=enc.last_hidden_state,
                encoder_attention_mask=inputs["attention_mask"])
    style = _style()
    with torch.no_grad():
        direct = styled(**args, style=style).last_hidden_state
        with styled.use_style(style):
            via_context = model.model.decoder(**args).last_hidden_state
        plain = styled(**args).last_hidden_state
    assert torch.equal(direct, via_context)
    assert not torch.allclose(direct, plain)
    assert styled.style is None


def test_gradient_reaches_style():
    model, inputs, _ = _build("t5")
    styled = wrap_style_decoder(model)
    style = _style().requires_grad_(True)
    with styled.use_style(style):
        loss = model(**inputs, labels=inputs["decoder_input_ids"]).loss
    loss.backward()
    assert style.grad is not None and style.grad.abs().sum() > 0


def test_style_for_one_vector_broadcasts_over_batch():
    hidden = torch.randn(3, 4, D)
    s = torch.randn(D)
    assert torch.equal(add_style(hidden, s), hidden + s)
    s2 = torch.randn(1, D)
    assert torch.equal(add_style(hidden, s2), hidden + s2[:, None, :])
    with pytest.raises(ValueError, match="batch size"):
        add_style(torch.randn(3, 4, D), torch.randn(2, D))
    with pytest.raises(ValueError, match="hidden size"):
        add_style(hidden, torch.randn(3, D + 1))


def test_set_style_rejects_wrong_size():
    styled = wrap_style_decoder(_build("gpt2")[0])
    with pytest.raises(ValueError, match="hidden size is 16"):
        styled.set_style(torch.randn(2, D + 2))


def test_unsupported_architecture_is_a_clear_error():
    bert = BertForMaskedLM(BertConfig(hidden_size=D, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, vocab_size=VOCAB))
    with pytest.raises(TypeError, match=r"unsupported architecture BertForMaskedLM \(model_type='bert'\)"):
        wrap_style_decoder(bert)
    with pytest.raises(TypeError, match="unsupported architecture Linear"):
        wrap_style_decoder(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="unknown style decoder"):
        wrap_style_decoder(_build("bart")[0], architecture="rnn")


def test_forced_architecture_and_direct_construction():
    model = _build("t5")[0]
    styled = wrap_style_decoder(model, architecture="t5")
    assert isinstance(styled, T5StyleDecoder) and styled.layers_path == "block"
    llama = _build("llama")[0]
    direct = StyleEnhancedDecoder(llama.model)  # base class finds `layers`
    assert direct.layers_path == "layers" and direct.num_layers == 2


def test_double_wrap_shares_the_wrappers_and_unwrap_restores():
    model, inputs, _ = _build("qwen2")
    with torch.no_grad():
        before = model(**inputs).logits
    original = list(model.model.layers)
    styled = wrap_style_decoder(model)
    second = wrap_style_decoder(model)  # e.g. a second GRAG model on the same backbone
    assert all(a is b for a, b in zip(second.style_layers, styled.style_layers))
    assert not any(isinstance(layer.wrapped_layer, StyleInjectionLayer) for layer in model.model.layers)
    style = _style()
    with torch.no_grad():
        with styled.use_style(style):
            first_logits = model(**inputs).logits
        with second.use_style(style):
            assert torch.equal(model(**inputs).logits, first_logits)
        assert torch.equal(model(**inputs).logits, before)  # each style only lasts for its own call
    # attribute access falls through to the original layer
    assert styled.style_layers[0].self_attn is original[0].self_attn
    decoder = styled.unwrap()
    assert decoder is model.model
    with pytest.raises(RuntimeError, match="unwrapped"):
        styled.set_style(torch.zeros(2, D))
    assert all(a is b for a, b in zip(model.model.layers, original))
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)
    wrap_style_decoder(model)  # wrapping again after unwrap works


def test_tuple_and_tensor_outputs():
    class TupleLayer(nn.Module):
        def forward(self, x):
            return x * 2, "extra"

    class TensorLayer(nn.Module):
        def forward(self, x):
            return x * 2

    x, s = torch.randn(2, 3, 4), torch.randn(2, 4)
    for base, get in ((TupleLayer(), lambda o: o[0]), (TensorLayer(), lambda o: o)):
        layer = StyleInjectionLayer(base)
        out = layer(x)
        assert torch.equal(get(out), x * 2)
        layer.style = s
        out = layer(x)
        assert torch.allclose(get(out), x * 2 + s[:, None, :])
        if isinstance(out, tuple):
            assert out[1] == "extra"

    class DictLayer(nn.Module):
        def forward(self, x):
            return {"h": x}

    layer = StyleInjectionLayer(DictLayer())
    layer.style = s
    with pytest.raises(TypeError, match="DictLayer returned dict"):
        layer(x)


@pytest.mark.parametrize("name", ["llama", "bart"])
def test_active_layers_add_the_style_only_there(name):
    """``active_layers=[0]``: layer 0's output moves by S, later layers get no style of their own."""
    model, inputs, _ = _build(name)
    styled = wrap_style_decoder(model, active_layers=[-2])  # = layer 0 of 2
    assert styled.active_layers == (0,)
    style = _style()
    own: dict[int, torch.Tensor] = {}
    out: dict[int, torch.Tensor] = {}

    def first(output):
        return output[0] if isinstance(output, tuple) else output

    handles = []
    for i, layer in enumerate(styled.style_layers):
        handles.append(layer.wrapped_layer.register_forward_hook(
            lambda m, a, o, i=i: own.__setitem__(i, first(o).detach().clone())))
        handles.append(layer.register_forward_hook(lambda m, a, o, i=i: out.__setitem__(i, first(o).detach().clone())))
    with torch.no_grad(), styled.use_style(style):
        assert styled.style is style
        assert [layer.style is style for layer in styled.style_layers] == [True, False]
        model(**inputs)
    for h in handles:
        h.remove()
    assert torch.allclose(out[0] - own[0], style[:, None, :].expand_as(own[0]), atol=1e-5)
    assert torch.equal(out[1], own[1])  # layer 1 adds nothing (its input is styled, its output is its own)
    assert styled.style is None and all(layer.style is None for layer in styled.style_layers)
    # changing the active layers while a style is set moves it
    styled.set_style(style)
    styled.active_layers = [1]
    assert [layer.style is style for layer in styled.style_layers] == [False, True]
    styled.active_layers = None  # every layer again: the paper's form
    assert all(layer.style is style for layer in styled.style_layers)
    assert "active_layers=all" in repr(styled)


def test_active_layers_are_checked():
    model, _, _ = _build("llama")
    for bad in ([], [2], [-3]):
        with pytest.raises(ValueError, match="active_layers must be non-empty indices in \\[-2, 2\\)"):
            wrap_style_decoder(model, active_layers=bad)
        wrap_style_decoder(model).unwrap()
    with pytest.raises(TypeError, match="active_layers"):
        wrap_style_decoder(model, active_layers=["0"])
