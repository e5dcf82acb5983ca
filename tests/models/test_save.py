"""``models/_save.py``: wrapper key mapping (new ``wrapped_layer``, legacy ``base_layer``, nested wrappers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from personakit.models._save import (  # noqa: E402
    WrappedCheckpointMixin,
    add_wrapper_keys,
    load_state_dict_file,
    save_state_dict,
    strip_wrapper_keys,
)
from personakit.modules import LowRankSpecificEncoder, StyleInjectionLayer, wrap_style_decoder  # noqa: E402
from personakit.modules._wrapper import wrapper_chain  # noqa: E402


def test_strip_and_add_wrapper_keys_map_both_segment_names_and_nesting():
    wrappers = ["m.layers.0", "m.layers.0.wrapped_layer"]  # two nested wrappers (named_modules paths)
    clean = {"m.layers.0.attn.weight": 1, "m.layers.0.attn.q.base_layer.weight": 2, "m.norm.weight": 3}
    wrapped = {"m.layers.0.wrapped_layer.wrapped_layer.attn.weight": 1,
               "m.layers.0.wrapped_layer.wrapped_layer.attn.q.base_layer.weight": 2, "m.norm.weight": 3}
    legacy = {"m.layers.0.base_layer.base_layer.attn.weight": 1,
              "m.layers.0.base_layer.base_layer.attn.q.base_layer.weight": 2, "m.norm.weight": 3}
    for state in (clean, wrapped, legacy):
        assert strip_wrapper_keys(state, wrappers) == clean  # a peft `q.base_layer` deeper down is kept
        assert add_wrapper_keys(state, wrappers) == wrapped
    assert list(strip_wrapper_keys(legacy, wrappers)) == list(clean)  # order kept
    assert strip_wrapper_keys(wrapped, []) == wrapped


class Tiny(WrappedCheckpointMixin, nn.Module):
    WRAPPER_TYPE = StyleInjectionLayer

    def __init__(self, specific: bool = False):
        super().__init__()
        torch.manual_seed(0)
        cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, vocab_size=50)
        self.backbone = LlamaForCausalLM(cfg)
        self.head = nn.Linear(16, 2)
        object.__setattr__(self, "styled", wrap_style_decoder(self.backbone))
        self.specific = LowRankSpecificEncoder(self.backbone, num_questioners=2, rank=2) if specific else None


@pytest.mark.parametrize("specific", [False, True])
def test_mixin_round_trip_and_checkpoints_written_before_the_rename(specific, tmp_path):
    model = Tiny(specific)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    clean = model.clean_state_dict()
    assert not any("wrapped_layer" in k or ".base_layer." in k for k in clean)
    assert list(clean) == list(model.state_dict())  # the wrappers' state dict is already clean
    save_state_dict(clean, tmp_path / "model.safetensors")
    # the old format: `.base_layer.` after every wrapper (twice in a row for nested wrappers)
    depth = {path: len(wrapper_chain(model.get_submodule(path))) for path in model._wrapper_prefixes()}
    assert set(depth.values()) == {2 if specific else 1}
    legacy = {}
    for key, value in clean.items():
        path = next((p for p in depth if key.startswith(p + ".")), None)
        if path is not None:
            key = path + ".base_layer" * depth[path] + key[len(path):]
        legacy[key] = value
    assert any(".base_layer." in k for k in legacy)
    assert strip_wrapper_keys(legacy, list(depth)) == clean
    for state in (load_state_dict_file(tmp_path / "model.safetensors"), legacy):
        other = Tiny(specific)
        other.load_clean_state_dict(state)
        assert all(torch.equal(other.state_dict()[k], v) for k, v in clean.items())
        other = Tiny(specific)
        other.load_state_dict(state, strict=True)  # the wrappers map the keys themselves too
        assert all(torch.equal(other.state_dict()[k], v) for k, v in clean.items())


# ----------------------------------------------------------------- unreadable weight files (issue 23)
def _corrupt(path, how):
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbled": b"\x07" * 64,
                      "data_cut": data[:-3]}[how])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "data_cut"])
def test_load_state_dict_file_names_an_unreadable_file(how, tmp_path):
    path = save_state_dict({"w": torch.randn(64, 32), "b": torch.zeros(3)}, tmp_path / "model.safetensors")
    _corrupt(path, how)
    with pytest.raises(Exception) as info:  # noqa: B017 - the type is checked below (safetensors raised its own)
        load_state_dict_file(path)
    assert str(path) in str(info.value) and "cannot read" in str(info.value)
    assert type(info.value).__name__ == "WeightsFileError" and isinstance(info.value, RuntimeError)


def test_load_state_dict_file_names_a_bad_alias_table(tmp_path):
    from safetensors.torch import save_file

    from personakit.models._save import ALIAS_KEY, WeightsFileError

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={ALIAS_KEY: "{not json"})
    with pytest.raises(WeightsFileError, match=ALIAS_KEY) as info:
        load_state_dict_file(path)
    assert str(path) in str(info.value)
    save_file({"w": torch.zeros(2)}, str(path), metadata={ALIAS_KEY: '{"v": "missing"}'})
    with pytest.raises(WeightsFileError, match="missing"):
        load_state_dict_file(path)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "data_cut"])
def test_from_pretrained_and_load_weights_name_an_unreadable_file(how, tmp_path):
    from grag_testkit import build_backbone, tokenizer_for

    from personakit.models.grag import PreSFT

    class TinyModel(Tiny):  # the mixin's own load_weights reads `base_model`
        base_model = property(lambda self: self.backbone)

    PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama")).save_pretrained(tmp_path / "m")
    (tmp_path / "tiny").mkdir()
    save_state_dict(Tiny().clean_state_dict(), tmp_path / "tiny" / "model.safetensors")
    TinyModel().load_weights(tmp_path / "tiny")  # loads while the file is whole
    for folder in ("m", "tiny"):
        _corrupt(tmp_path / folder / "model.safetensors", how)
    for load, folder in ((lambda: PreSFT.from_pretrained(tmp_path / "m"), "m"),
                         (lambda: TinyModel().load_weights(tmp_path / "tiny"), "tiny")):  # the mixin's own path
        with pytest.raises(Exception) as info:  # noqa: B017 - the type is checked below
            load()
        assert str(tmp_path / folder / "model.safetensors") in str(info.value) and "cannot read" in str(info.value)
        assert type(info.value).__name__ == "WeightsFileError" and isinstance(info.value, RuntimeError)
