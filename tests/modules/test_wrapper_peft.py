"""Layer wrappers (style injection, specific stream) cooperate with peft and transformers saving.

The wrappers are transparent: ``state_dict()``, ``named_parameters()`` and ``named_modules()``
of a wrapped model use the unwrapped model's names, so transformers' ``save_pretrained``,
peft's adapter files and ``merge_and_unload()`` work on a wrapped model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open
from torch import nn

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from personakit.modules import (  # noqa: E402
    LowRankSpecificEncoder,
    SpecificStreamLayer,
    StyleInjectionLayer,
    wrap_style_decoder,
)
from personakit.modules._wrapper import LayerWrapper, wrapper_chain  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:fan_in_fan_out:UserWarning"),
]

D = 16
TARGETS = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"]}


def build_lm(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "gpt2":
        cfg = GPT2Config(n_embd=D, n_layer=2, n_head=2, vocab_size=50, n_positions=32, bos_token_id=0,
                         eos_token_id=0)
        return GPT2LMHeadModel(cfg).eval()
    cfg = LlamaConfig(hidden_size=D, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=50)
    return LlamaForCausalLM(cfg).eval()


def layers_of(lm: nn.Module) -> nn.ModuleList:
    stack = lm.base_model
    return stack.h if hasattr(stack, "h") else stack.layers


def wrap(lm: nn.Module, what: str):
    """Wrap ``lm`` and return a context factory that turns the wrapper on (style / questioners)."""
    if what == "style":
        styled = wrap_style_decoder(lm)
        style = torch.randn(2, D, generator=torch.Generator().manual_seed(5))
        return lambda: styled.use_style(style)
    enc = LowRankSpecificEncoder(lm, num_questioners=2, rank=2, init_scale=1.0)
    return lambda: enc.use_questioners(torch.tensor([1, 2]))


def lora(model: nn.Module, kind: str) -> nn.Module:
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=TARGETS[kind]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(generator=torch.Generator().manual_seed(len(name)))  # non-zero adapters
    return model.eval()


IDS = torch.tensor([[1, 5, 7, 9], [3, 4, 2, 8]])
CASES = [(kind, what) for kind in ("gpt2", "llama") for what in ("style", "specific")]


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def no_wrapper_segment(keys) -> bool:
    return not any(".wrapped_layer." in k or ".base_layer." in k for k in keys)


# ---------------------------------------------------------------------------- names
@pytest.mark.parametrize("kind,what", CASES)
def test_state_dict_and_parameter_names_are_the_unwrapped_models(kind, what):
    lm = build_lm(kind)
    state = lm.state_dict()
    names = [n for n, _ in lm.named_parameters()]
    modules = [n for n, _ in lm.named_modules()]
    wrap(lm, what)
    assert all(isinstance(layer, LayerWrapper) for layer in layers_of(lm))
    wrapped = lm.state_dict()
    assert list(wrapped) == list(state)  # same keys, same order
    assert all(torch.equal(wrapped[k], state[k]) for k in state)
    assert [n for n, _ in lm.named_parameters()] == names
    assert set(n for n, _ in lm.named_modules()) == set(modules)
    # every name resolves through the wrappers
    for name in names:
        assert lm.get_parameter(name) is dict(lm.named_parameters())[name]


@pytest.mark.parametrize("kind,what", CASES)
def test_load_state_dict_accepts_clean_wrapped_and_legacy_keys(kind, what):
    source = build_lm(kind, seed=1)
    lm = build_lm(kind, seed=2)
    wrap(lm, what)
    clean = source.state_dict()
    layer_path = "transformer.h." if kind == "gpt2" else "model.layers."
    for segment in ("", "wrapped_layer.", "base_layer."):  # "base_layer." : checkpoints written before the rename
        state = {}
        for key, value in clean.items():
            if key.startswith(layer_path):
                index, rest = key[len(layer_path):].split(".", 1)
                key = f"{layer_path}{index}.{segment}{rest}"
            state[key] = value
        with torch.no_grad():
            for p in lm.parameters():
                p.zero_()
        lm.load_state_dict(state, strict=True)
        assert all(torch.equal(lm.state_dict()[k], clean[k]) for k in clean)


def test_legacy_training_checkpoint_loads_with_safetensors_load_model(tmp_path):
    from safetensors.torch import load_model, save_file

    source = build_lm("llama", seed=1)
    clean = source.state_dict()
    legacy = {k.replace("model.layers.0.", "model.layers.0.base_layer.").replace(
        "model.layers.1.", "model.layers.1.base_layer."): v.contiguous() for k, v in clean.items()
        if k != "lm_head.weight" or not source.config.tie_word_embeddings}
    save_file(legacy, str(tmp_path / "old.safetensors"))
    lm = build_lm("llama", seed=2)
    wrap_style_decoder(lm)
    load_model(lm, str(tmp_path / "old.safetensors"), strict=True)
    assert all(torch.equal(lm.state_dict()[k], clean[k]) for k in clean)


def test_a_wrapped_module_with_its_own_base_layer_child_keeps_it():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.base_layer = nn.Linear(3, 3)  # e.g. a peft tuner layer

        def forward(self, x):
            return self.base_layer(x)

    layers = nn.ModuleList([Holder()])
    layers[0] = StyleInjectionLayer(layers[0])
    state = layers.state_dict()
    assert list(state) == ["0.base_layer.weight", "0.base_layer.bias"]
    fresh = nn.ModuleList([StyleInjectionLayer(Holder())])
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh[0].wrapped_layer.base_layer.weight, layers[0].wrapped_layer.base_layer.weight)


# ---------------------------------------------------------------------------- transformers save_pretrained
@pytest.mark.parametrize("kind,what", CASES)
def test_hf_save_pretrained_of_a_wrapped_backbone_reloads_its_weights(kind, what, tmp_path):
    lm = build_lm(kind)
    plain = logits(lm)
    wrap(lm, what)
    original = {k: v.clone() for k, v in lm.state_dict().items()}
    lm.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and no_wrapper_segment(keys)
    reloaded, info = type(lm).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert all(torch.equal(reloaded.state_dict()[k], original[k]) for k in original)
    assert torch.equal(logits(reloaded.eval()), plain)


# ---------------------------------------------------------------------------- peft
@pytest.mark.parametrize("order", ["peft-then-wrap", "wrap-then-peft"])
@pytest.mark.parametrize("kind,what", CASES)
def test_merge_and_unload_of_a_wrapped_peft_model(kind, what, order):
    lm = build_lm(kind)
    if order == "wrap-then-peft":
        active = wrap(lm, what)
        model = lora(lm, kind)
    else:
        model = lora(lm, kind)
        active = wrap(model, what)
    before = logits(model)
    with active():
        before_on = logits(model)
    assert not torch.allclose(before, before_on)
    merged = model.merge_and_unload()
    assert merged is lm
    assert all(isinstance(layer, LayerWrapper) for layer in layers_of(merged))  # the wrappers stay
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), before, rtol=1e-5, atol=1e-5)
    with active():
        torch.testing.assert_close(logits(merged), before_on, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,what", CASES)
def test_adapters_saved_while_wrapped_load_on_the_unwrapped_model(kind, what, tmp_path):
    lm = build_lm(kind)
    model = lora(lm, kind)
    wrap(model, what)
    expected = logits(model)  # wrapper off: backbone + adapters
    model.save_pretrained(tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys) and no_wrapper_segment(keys)
    with _no_missing_adapter_warning():
        loaded = PeftModel.from_pretrained(build_lm(kind), tmp_path / "adapter").eval()
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=0)
    # and adapters saved unwrapped load on a wrapped model
    loaded.save_pretrained(tmp_path / "plain")
    target = build_lm(kind)
    wrap(target, what)
    with _no_missing_adapter_warning():
        again = PeftModel.from_pretrained(target, tmp_path / "plain").eval()
    torch.testing.assert_close(logits(again), expected, rtol=0, atol=0)


class _no_missing_adapter_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        messages = [str(r.message) for r in self._records]
        assert not any("missing adapter keys" in m for m in messages), messages
        return False


def test_lora_on_a_direct_child_of_a_wrapped_layer_reaches_the_layer():
    torch.manual_seed(0)
    cfg = BartConfig(d_model=D, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=50,
                     max_position_embeddings=32)
    model = BartForConditionalGeneration(cfg).eval()
    styled = wrap_style_decoder(model)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["fc1"]))
    layer = styled.style_layers[0]
    assert isinstance(layer.wrapped_layer.fc1, peft.tuners.lora.LoraLayer)  # replaced inside the wrapped layer
    assert "fc1" not in layer._modules
    ids = torch.tensor([[5, 6, 7, 2]])
    with torch.no_grad():
        before = peft_model(input_ids=ids, decoder_input_ids=ids).logits
        layer.wrapped_layer.fc1.lora_B["default"].weight.normal_()
        after = peft_model(input_ids=ids, decoder_input_ids=ids).logits
    assert not torch.allclose(before, after)  # the adapter is in the forward path


# ---------------------------------------------------------------------------- wrapping twice
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("outer", ["style", "specific"])
def test_specific_stream_and_style_wrappers_compose(kind, outer):
    lm = build_lm(kind)
    plain = logits(lm)
    if outer == "specific":
        styled = wrap_style_decoder(lm)
        style_only = _styled_logits(lm, styled)
        enc = LowRankSpecificEncoder(lm, num_questioners=2, rank=2, init_scale=1.0)
        assert [type(w) for w in wrapper_chain(layers_of(lm)[0])] == [SpecificStreamLayer, StyleInjectionLayer]
    else:
        enc = LowRankSpecificEncoder(lm, num_questioners=2, rank=2, init_scale=1.0)
        styled = wrap_style_decoder(lm)
        style_only = _styled_logits(lm, styled)
        assert [type(w) for w in wrapper_chain(layers_of(lm)[0])] == [StyleInjectionLayer, SpecificStreamLayer]
    assert torch.equal(logits(lm), plain)
    with enc.use_questioners(torch.tensor([1, 2])):
        specific_only = logits(lm)
    assert not torch.allclose(specific_only, plain)
    with enc.use_questioners(torch.tensor([0, 0])):  # unknown questioners: the backbone's rows
        torch.testing.assert_close(logits(lm), plain, rtol=0, atol=0)
    # unwrapping one keeps the other
    enc.unwrap()
    assert all(isinstance(layer, StyleInjectionLayer) and not isinstance(layer.wrapped_layer, LayerWrapper)
               for layer in layers_of(lm))
    assert torch.equal(_styled_logits(lm, styled), style_only)
    styled.unwrap()
    assert not any(isinstance(layer, LayerWrapper) for layer in layers_of(lm))
    assert torch.equal(logits(lm), plain)


def _styled_logits(lm, styled):
    with styled.use_style(torch.full((D,), 0.5)):
        return logits(lm)


def test_second_specific_encoder_on_one_backbone_is_a_clear_error():
    lm = build_lm("llama")
    LowRankSpecificEncoder(lm, num_questioners=2, rank=2)
    with pytest.raises(ValueError, match=r"already wrapped by another LowRankSpecificEncoder.*copy\.deepcopy"):
        LowRankSpecificEncoder(lm, num_questioners=2, rank=2)
    styled = wrap_style_decoder(lm)  # a style wrapper around the specific stream is fine
    assert styled.num_layers == 2


def test_two_postgrag_models_on_one_backbone():
    from personakit.models.grag import build_grag_model

    torch.manual_seed(0)
    cfg = BartConfig(d_model=D, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=50,
                     max_position_embeddings=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                     decoder_start_token_id=2, forced_eos_token_id=None)
    backbone = BartForConditionalGeneration(cfg).eval()
    first = build_grag_model("postgrag", backbone, extractor_heads=2, extractor_dropout=0.0).eval()
    second = build_grag_model("postgrag", backbone, extractor_heads=2, extractor_dropout=0.0).eval()
    assert first.style_decoder.style_layers == second.style_decoder.style_layers  # shared wrappers
    assert not any(isinstance(layer.wrapped_layer, LayerWrapper) for layer in second.style_decoder.style_layers)
    styles = torch.randn(2, 1, D)
    ids = torch.tensor([[5, 6, 7, 2]])
    with torch.no_grad():
        with first.style_decoder.use_style(styles[0]):
            a = backbone(input_ids=ids, decoder_input_ids=ids).logits
        with second.style_decoder.use_style(styles[1]):
            b = backbone(input_ids=ids, decoder_input_ids=ids).logits
        with first.style_decoder.use_style(styles[0]):
            assert torch.equal(backbone(input_ids=ids, decoder_input_ids=ids).logits, a)
    assert not torch.allclose(a, b)
    assert first.style_decoder.style is None and second.style_decoder.style is None
    # a copy of the (wrapped) backbone gives an independent model
    third = build_grag_model("postgrag", copy.deepcopy(backbone), extractor_heads=2, extractor_dropout=0.0)
    assert not set(map(id, third.style_decoder.style_layers)) & set(map(id, first.style_decoder.style_layers))
    third.style_decoder.set_style(styles[1])
    assert first.style_decoder.style is None
