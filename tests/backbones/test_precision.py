"""bf16 detection, dtype resolution and the frozen-bf16-base + fp32-adapter cast, on tiny local models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from personakit.backbones import load_causal_lm, precision
from personakit.backbones.precision import (
    DTYPE_ENV_VAR,
    cast_frozen,
    cpu_bf16_support,
    describe_precision,
    has_fast_bf16,
    parse_cpuinfo,
    resolve_dtype,
)

INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AMD_ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16\n"
AMD_ZEN1 = "processor\t: 0\nmodel name\t: AMD EPYC 7601 32-Core Processor\nflags\t\t: fpu avx avx2 fma\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 i8mm\n"


@pytest.fixture()
def fake_cpu(monkeypatch):
    """Replace the ``/proc/cpuinfo`` reader: ``fake_cpu(text)``; ``None`` means no such file."""
    monkeypatch.delenv(DTYPE_ENV_VAR, raising=False)
    reads = []

    def install(text):
        def read():
            reads.append(1)
            return text

        monkeypatch.setattr(precision, "_read_cpuinfo", read)
        precision._cpu_support.cache_clear()
        return reads

    yield install
    precision._cpu_support.cache_clear()


@pytest.mark.parametrize("text, cpu, amx, avx", [
    (INTEL_AMX, "Intel(R) Xeon(R) Platinum 8480+", True, True),
    (AMD_ZEN4, "AMD EPYC 9654", False, True),
    (AMD_ZEN1, "AMD EPYC 7601 32-Core Processor", False, False),
    (ARM, None, False, False),
    ("", None, False, False),
])
def test_parse_cpuinfo(text, cpu, amx, avx):
    info = parse_cpuinfo(text)
    assert (info["cpu"], info["amx_bf16"], info["avx512_bf16"]) == (cpu, amx, avx)
    assert info["source"] == "/proc/cpuinfo"


def test_parse_cpuinfo_does_not_match_flag_prefixes():
    info = parse_cpuinfo("flags\t: avx512_bf16x amx_bf16_tile avx512bf16\n")
    assert not info["amx_bf16"] and not info["avx512_bf16"]


def test_cpu_support_is_read_once_and_copied(fake_cpu):
    reads = fake_cpu(AMD_ZEN4)
    first = cpu_bf16_support()
    first["avx512_bf16"] = False  # a caller's change does not leak into the cache
    assert cpu_bf16_support()["avx512_bf16"] is True
    assert len(reads) == 1


def test_missing_cpuinfo_means_no_fast_bf16(fake_cpu, monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "no-cpuinfo")  # the real reader, no such file (macOS)
    precision._cpu_support.cache_clear()
    info = cpu_bf16_support()
    assert info["amx_bf16"] is False and info["avx512_bf16"] is False and info["source"] is None
    assert has_fast_bf16() is False and resolve_dtype("auto") == torch.float32


@pytest.mark.parametrize("text, fast", [(INTEL_AMX, True), (AMD_ZEN4, True), (AMD_ZEN1, False), (None, False)])
def test_has_fast_bf16_on_cpu(fake_cpu, text, fast):
    fake_cpu(text)
    assert has_fast_bf16() is fast and has_fast_bf16("cpu") is fast and has_fast_bf16(torch.device("cpu")) is fast
    assert resolve_dtype("auto") == (torch.bfloat16 if fast else torch.float32)
    assert resolve_dtype("auto", "cpu") == resolve_dtype("AUTO")


def test_has_fast_bf16_on_other_devices(fake_cpu, monkeypatch):
    fake_cpu(INTEL_AMX)  # the CPU's flags do not speak for other devices
    assert has_fast_bf16("mps") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert has_fast_bf16("cuda") is False and resolve_dtype("auto", "cuda:0") == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_has_fast_bf16_on_cuda_ignores_emulation(fake_cpu, monkeypatch, native):
    import contextlib

    fake_cpu(AMD_ZEN1)  # the CPU's flags do not speak for the GPU
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return native or including_emulation  # an old GPU: bf16 only emulated

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert has_fast_bf16("cuda") is native and has_fast_bf16("cuda:1") is native
    assert resolve_dtype("auto", "cuda") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto") == torch.float32  # None is the CPU
    assert calls and not any(calls)


@pytest.mark.parametrize("given, expected", [
    (None, torch.float32), (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float16), ("float32", torch.float32), ("fp32", torch.float32),
    ("float", torch.float32), ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
    ("BFloat16", torch.bfloat16), ("torch.bfloat16", torch.bfloat16), ("float16", torch.float16),
    ("fp16", torch.float16), ("half", torch.float16),
])
def test_resolve_dtype_explicit(fake_cpu, monkeypatch, given, expected):
    fake_cpu(AMD_ZEN1)
    monkeypatch.setenv(DTYPE_ENV_VAR, "bfloat16")  # the override concerns "auto" only
    assert resolve_dtype(given) == expected


@pytest.mark.parametrize("env, text, expected", [
    ("float32", INTEL_AMX, torch.float32), ("fp32", AMD_ZEN4, torch.float32),
    ("bf16", AMD_ZEN1, torch.bfloat16), ("auto", AMD_ZEN4, torch.bfloat16),
    ("auto", AMD_ZEN1, torch.float32), ("", AMD_ZEN4, torch.bfloat16),
])
def test_env_override_of_auto(fake_cpu, monkeypatch, env, text, expected):
    fake_cpu(text)
    monkeypatch.setenv(DTYPE_ENV_VAR, env)
    assert resolve_dtype("auto") == expected
    assert describe_precision()["auto_dtype"] == str(expected).removeprefix("torch.")


def test_bad_dtypes_are_named(fake_cpu, monkeypatch):
    fake_cpu(AMD_ZEN4)
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        resolve_dtype("float33")
    with pytest.raises(ValueError, match="int8"):
        resolve_dtype(torch.int8)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")
    with pytest.raises(TypeError, match="int"):
        resolve_dtype(16)  # type: ignore[arg-type]
    monkeypatch.setenv(DTYPE_ENV_VAR, "bfloat61")
    assert resolve_dtype("float32") == torch.float32  # an explicit dtype does not read the variable
    with pytest.raises(ValueError, match=rf"unknown dtype 'bfloat61' in \${DTYPE_ENV_VAR}"):
        resolve_dtype("auto")


def test_describe_precision(fake_cpu):
    fake_cpu(INTEL_AMX)
    info = describe_precision()
    assert info == {"device": "cpu", "cpu": "Intel(R) Xeon(R) Platinum 8480+", "amx_bf16": True,
                    "avx512_bf16": True, "fast_bf16": True, "auto_dtype": "bfloat16", "env_override": None}


# ----------------------------------------------------------------------------- cast_frozen

def _tiny_lora_llama():
    peft = pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=40, max_position_embeddings=64, tie_word_embeddings=True)
    model = peft.get_peft_model(LlamaForCausalLM(config),
                                peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; make the adapters contribute
            nn.init.normal_(param, std=0.2)
    return model


def test_cast_frozen_lora_llama_dtypes_and_loss():
    fp32 = _tiny_lora_llama()
    bf16 = cast_frozen(copy.deepcopy(fp32), "bfloat16")
    for name, param in bf16.named_parameters():
        assert param.dtype == (torch.float32 if param.requires_grad else torch.bfloat16), name
    assert any(p.requires_grad for p in bf16.parameters())
    base = bf16.get_base_model()
    assert base.lm_head.weight is base.model.embed_tokens.weight  # tied weights stay tied
    assert base.model.rotary_emb.inv_freq.dtype == torch.float32
    torch.testing.assert_close(base.model.rotary_emb.inv_freq, fp32.get_base_model().model.rotary_emb.inv_freq)

    ids = torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(1))  # (B, T)
    loss32 = fp32(input_ids=ids, labels=ids).loss
    loss16 = bf16(input_ids=ids, labels=ids).loss
    loss32.backward()
    loss16.backward()
    assert loss16.dtype == torch.float32  # logits are upcast for the loss
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9); the loss of this model stays within 1 %
    assert abs(loss16.item() - loss32.item()) <= 1e-2 * loss32.item()
    grads = {n: p.grad for n, p in fp32.named_parameters() if p.requires_grad}
    for name, param in bf16.named_parameters():
        if param.requires_grad:
            assert param.grad.dtype == torch.float32 and torch.isfinite(param.grad).all(), name
            ref = grads[name]
            assert (param.grad - ref).norm() <= 0.1 * ref.norm() + 1e-6, name  # the same direction, within 10 %
        else:
            assert param.grad is None


class _Frozen(nn.Module):
    _keep_in_fp32_modules_strict = ["router"]
    _keep_in_fp32_modules = ["wo"]

    def __init__(self):
        super().__init__()
        self.body, self.router, self.wo = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))
        self.register_buffer("position_ids", torch.arange(4))
        self.requires_grad_(False)


class _WithHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.base, self.head = _Frozen(), nn.Linear(4, 2)
        self.head.register_buffer("centre", torch.zeros(2))


def test_cast_frozen_keeps_what_must_stay_fp32():
    model = cast_frozen(_WithHead(), torch.bfloat16)
    assert model.base.body.weight.dtype == torch.bfloat16 and model.base.scale.dtype == torch.bfloat16
    assert model.base.router.weight.dtype == torch.float32  # _keep_in_fp32_modules_strict
    assert model.base.wo.weight.dtype == torch.bfloat16  # _keep_in_fp32_modules: fp16 only, as in transformers
    assert model.base.position_ids.dtype == torch.long
    assert model.head.weight.dtype == torch.float32 and model.head.centre.dtype == torch.float32  # trainable module
    assert "scale" in model.base.state_dict()  # still a registered buffer

    half = cast_frozen(_WithHead(), torch.float16, keep_fp32=["body"])
    assert half.base.wo.weight.dtype == torch.float32 and half.base.body.weight.dtype == torch.float32

    model = _WithHead().to(torch.bfloat16)
    cast_frozen(model, "bf16", trainable_dtype=None)
    assert model.head.weight.dtype == torch.bfloat16
    cast_frozen(model, "bf16")
    assert model.head.weight.dtype == torch.float32  # trainable weights brought back to fp32


def test_cast_frozen_parameter_identity_is_kept():
    model = _WithHead()
    params = list(model.parameters())
    optimizer_view = [id(p) for p in params]
    cast_frozen(model)
    assert [id(p) for p in model.parameters()] == optimizer_view


# ----------------------------------------------------------------------------- loaders

def test_load_causal_lm_auto(tiny_llama_dir, fake_cpu, monkeypatch):
    fake_cpu(AMD_ZEN4)
    model, _ = load_causal_lm(tiny_llama_dir, dtype="auto")
    assert model.dtype == torch.bfloat16
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32  # transformers keeps it in fp32 too
    assert load_causal_lm(tiny_llama_dir)[0].dtype == torch.float32  # None stays fp32
    monkeypatch.setenv(DTYPE_ENV_VAR, "float32")
    assert load_causal_lm(tiny_llama_dir, dtype="auto")[0].dtype == torch.float32
    monkeypatch.delenv(DTYPE_ENV_VAR)
    fake_cpu(AMD_ZEN1)
    model, tokenizer = load_causal_lm(tiny_llama_dir, dtype="auto")
    assert model.dtype == torch.float32
    batch = tokenizer(["hello world"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 2, 9)  # (B, T, V)


def test_loader_rejects_a_bad_dtype_before_loading(monkeypatch):
    from personakit.backbones import loading

    monkeypatch.setattr(loading, "resolve_model_path", lambda *a, **k: pytest.fail("should not locate"))
    with pytest.raises(ValueError, match="unknown dtype 'bfloat'"):
        load_causal_lm("smollm2", dtype="bfloat")


def test_attention_implementation_switches_every_transformers_model_and_restores_on_error():
    from transformers import LlamaConfig, LlamaForCausalLM

    from personakit.backbones import attention_implementation

    def lm():
        return LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, vocab_size=32))

    pair = torch.nn.ModuleList([lm(), lm()])  # two backbones inside one module, as in a family model
    pair[1].set_attn_implementation("eager")
    with attention_implementation(pair, "eager") as before:
        assert [m.config._attn_implementation for m in pair] == ["eager", "eager"]
        assert "sdpa" in before and "eager" in before
    assert [m.config._attn_implementation for m in pair] == ["sdpa", "eager"]
    with pytest.raises(RuntimeError, match="boom"):
        with attention_implementation(pair, "eager"):
            raise RuntimeError("boom")
    assert [m.config._attn_implementation for m in pair] == ["sdpa", "eager"]
    with attention_implementation(pair, None) as before:
        assert before == [] and pair[0].config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="flash"):
        with attention_implementation(pair, "flash"):
            pass
