r"""Precision: bf16 where the hardware has a fast path for it, fp32 elsewhere.

A bf16 matrix product is much faster than an fp32 one only on hardware with a native
bf16 path: a GPU of compute capability 8.0 or newer (Ampere, Hopper), an Intel Xeon with
AMX (``amx_bf16`` in ``/proc/cpuinfo``: about 8x at SmolLM2's shapes), or a CPU with
AVX512-BF16 (``avx512_bf16``: AMD Zen 4 and later, Intel Cooper Lake; about 2.3x on one
AMD EPYC core for a 1024x576 by 576x1536 product).  A CPU with neither (AMD Zen 1-3,
most laptops) emulates bf16 and is *slower* than in fp32, so the choice is detected,
never assumed:

* :func:`cpu_bf16_support` reads the CPU flags from ``/proc/cpuinfo`` once;
* :func:`has_fast_bf16` answers for a device (CUDA, MPS, CPU);
* :func:`resolve_dtype` turns ``"auto"`` into bf16 where :func:`has_fast_bf16` holds
  and fp32 elsewhere.  The loaders (:func:`~personakit.backbones.load_causal_lm` and
  the others) use it for their ``dtype`` argument.

``"auto"`` here means *the fastest safe dtype for this hardware*, not what
transformers' ``from_pretrained(dtype="auto")`` means (the dtype the checkpoint was
saved in).  The environment variable ``PERSONAKIT_DTYPE`` (``float32``, ``bfloat16``,
``float16`` or ``auto``) decides what ``"auto"`` resolves to, e.g.
``PERSONAKIT_DTYPE=float32`` for a CI job or a benchmark that must stay in fp32; an
explicit dtype is never overridden.

Training with a frozen bf16 backbone and trainable fp32 adapters (LoRA, extra heads):
:func:`cast_frozen` casts the parameters that do not require gradients (and the
buffers of the frozen modules) to bf16 and leaves the trainable ones in fp32, so the
optimiser updates full-precision weights while the bulk of the arithmetic runs in bf16.

Example:
    >>> import torch
    >>> from personakit.backbones.precision import resolve_dtype
    >>> resolve_dtype(None), resolve_dtype("bf16")
    (torch.float32, torch.bfloat16)
    >>> resolve_dtype("auto") in (torch.float32, torch.bfloat16)
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "DTYPE_ENV_VAR",
    "cast_frozen",
    "cpu_bf16_support",
    "describe_precision",
    "has_fast_bf16",
    "parse_cpuinfo",
    "resolve_dtype",
]

DTYPE_ENV_VAR = "PERSONAKIT_DTYPE"
"""Environment variable that decides what ``dtype="auto"`` resolves to."""

CPUINFO = Path("/proc/cpuinfo")

_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
# buffers that must stay fp32 whatever the dtype of the model (rotary frequencies: bf16
# keeps 8 bits of mantissa, which shifts the angles of far positions)
_KEEP_FP32_BUFFERS = ("inv_freq", "original_inv_freq")


def _read_cpuinfo() -> Optional[str]:
    """The text of ``/proc/cpuinfo``, or ``None`` where there is none (macOS, Windows)."""
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: Optional[str]) -> dict[str, Any]:
    r"""The bf16-related facts in a ``/proc/cpuinfo`` text (the first processor's entry).

    Args:
        text: the file's text; ``None`` (no such file) gives all flags ``False``.

    Returns:
        ``{"cpu": model name or None, "amx_bf16": bool, "avx512_bf16": bool,
        "source": "/proc/cpuinfo" or None}``.

    Example:
        >>> parse_cpuinfo("model name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16\n")["avx512_bf16"]
        True
    """
    cpu, flags = None, set()
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and cpu is None:
            cpu = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"cpu": cpu, "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "source": str(CPUINFO) if text is not None else None}


@functools.lru_cache(maxsize=1)
def _cpu_support() -> tuple[tuple[str, Any], ...]:
    return tuple(parse_cpuinfo(_read_cpuinfo()).items())


def cpu_bf16_support() -> dict[str, Any]:
    """Whether this CPU has a native bf16 path, read from ``/proc/cpuinfo`` once per process.

    Returns:
        ``{"cpu": model name, "amx_bf16": bool, "avx512_bf16": bool, "source": ...}``
        (a fresh dict each call).  Where ``/proc/cpuinfo`` is missing (macOS,
        Windows) both flags are ``False``, ``source`` is ``None`` and ``cpu`` is
        :func:`platform.processor` (or ``None``).
    """
    info = dict(_cpu_support())
    if info["cpu"] is None:
        info["cpu"] = platform.processor() or None
    return info


def has_fast_bf16(device: "torch.device | str | None" = None) -> bool:
    """Whether bf16 arithmetic is natively fast on ``device`` (``None``: the CPU).

    * CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` on that GPU
      (compute capability 8.0 or newer; emulated bf16 on older GPUs does not count);
      ``False`` when CUDA is unavailable.
    * CPU: the ``amx_bf16`` or ``avx512_bf16`` flag (:func:`cpu_bf16_support`).
    * MPS and anything else: ``False``; Apple GPUs run bf16 only on recent macOS and
      without a clear speed-up, so fp32 stays the safe choice there.
    """
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        support = cpu_bf16_support()
        return bool(support["amx_bf16"] or support["avx512_bf16"])
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(dev.index if dev.index is not None else torch.cuda.current_device()):
            try:
                return bool(torch.cuda.is_bf16_supported(including_emulation=False))
            except TypeError:  # torch < 2.3
                return bool(torch.cuda.is_bf16_supported())
    return False


def _dtype_by_name(name: str, what: str) -> "torch.dtype":
    import torch

    key = name.strip().lower().removeprefix("torch.")
    if key not in _DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}{what}; use 'auto', 'float32', 'bfloat16' or 'float16' "
                         "(or a torch floating dtype)")
    return getattr(torch, _DTYPE_NAMES[key])


def resolve_dtype(dtype: "torch.dtype | str | None", device: "torch.device | str | None" = None) -> "torch.dtype":
    """The ``torch.dtype`` a model should be loaded in.

    Args:
        dtype: ``None`` (fp32, the loaders' default), a floating ``torch.dtype``, a name
            (``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``,
            optionally ``"torch."``-prefixed, any case), or ``"auto"``: bf16 when
            :func:`has_fast_bf16` holds for ``device``, else fp32.  ``"auto"`` is
            replaced by ``$PERSONAKIT_DTYPE`` when that is set (itself a name or ``"auto"``).
        device: the device the model will run on (``None``: the CPU).

    Returns:
        The dtype.

    Raises:
        ValueError: an unknown name (the message names it, and the environment
            variable when the name came from there), or a non-floating ``torch.dtype``.
        TypeError: anything else.
    """
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype {dtype} is not a floating dtype; use torch.float32, torch.bfloat16 or torch.float16")
        return dtype
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be None, a torch.dtype or a name such as 'auto', got {type(dtype).__name__}")
    if dtype.strip().lower() != "auto":
        return _dtype_by_name(dtype, "")
    override = os.environ.get(DTYPE_ENV_VAR, "").strip()
    if override and override.lower() != "auto":
        return _dtype_by_name(override, f" in ${DTYPE_ENV_VAR}")
    return torch.bfloat16 if has_fast_bf16(device) else torch.float32


def describe_precision(device: "torch.device | str | None" = None) -> dict[str, Any]:
    """What :func:`resolve_dtype` sees and picks, for a benchmark header or a log line.

    Returns:
        ``{"device", "cpu", "amx_bf16", "avx512_bf16", "fast_bf16", "auto_dtype",
        "env_override"}`` (plus ``"gpu"``, its name, on CUDA); ``auto_dtype`` is the
        name of ``resolve_dtype("auto", device)`` and ``env_override`` the value of
        ``$PERSONAKIT_DTYPE`` (``None`` when unset).
    """
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    support = cpu_bf16_support()
    info: dict[str, Any] = {
        "device": str(dev), "cpu": support["cpu"], "amx_bf16": support["amx_bf16"],
        "avx512_bf16": support["avx512_bf16"], "fast_bf16": has_fast_bf16(dev),
        "auto_dtype": str(resolve_dtype("auto", dev)).removeprefix("torch."),
        "env_override": os.environ.get(DTYPE_ENV_VAR) or None,
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def _keep_fp32_names(model: "nn.Module", dtype: "torch.dtype") -> set[str]:
    """The module names transformers keeps in fp32 when loading in ``dtype``.

    ``_keep_in_fp32_modules_strict`` for fp16 and bf16, ``_keep_in_fp32_modules`` for fp16
    only (as ``PreTrainedModel.from_pretrained`` does), gathered over every sub-model
    (a peft wrapper or an encoder-decoder holds the transformers models inside).
    """
    import torch

    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_keep_in_fp32_modules_strict", None) or ())
        if dtype == torch.float16:
            names.update(getattr(module, "_keep_in_fp32_modules", None) or ())
    return names


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(rf"(^|\.){re.escape(p)}(\.|$)", name) for p in patterns)


def cast_frozen(model: "nn.Module", dtype: "torch.dtype | str" = "bfloat16", *,
                trainable_dtype: "torch.dtype | str | None" = "float32",
                keep_fp32: Iterable[str] = ()) -> "nn.Module":
    """Cast the frozen part of ``model`` to ``dtype`` and its trainable parameters to ``trainable_dtype``, in place.

    The recipe for training adapters (LoRA, extra heads) on a frozen backbone on bf16
    hardware: the frozen weights, where nearly all the arithmetic happens, in bf16; the
    trainable weights, their gradients and the optimiser state in fp32.  peft's LoRA
    layers cast their input to the adapter's dtype and their output back to the base
    layer's, so a LoRA model runs as is; other trainable modules fed bf16 states must
    cast their input themselves.

    What is cast:

    * floating parameters with ``requires_grad=False`` → ``dtype`` (tied parameters,
      e.g. SmolLM2's embedding and LM head, stay tied: ``param.data`` is replaced);
    * floating parameters with ``requires_grad=True`` → ``trainable_dtype``
      (``None``: left as they are);
    * floating buffers of modules without a trainable parameter → ``dtype``;
    * **kept in fp32**: the rotary frequencies (``inv_freq``, ``original_inv_freq``,
      which transformers also keeps in fp32 when loading in bf16), the modules a
      transformers model lists in ``_keep_in_fp32_modules_strict`` (and, for fp16,
      ``_keep_in_fp32_modules``), and names listed in ``keep_fp32``.

    Call it after adding the adapters and freezing (``peft.get_peft_model``) and before
    creating the optimiser (whose state would otherwise hold the old tensors).

    Args:
        model: any ``nn.Module`` (a peft model, a GRAG model, a transformers model).
        dtype: dtype of the frozen part (a dtype or a name, see :func:`resolve_dtype`).
        trainable_dtype: dtype of the trainable parameters, or ``None``.
        keep_fp32: more module or buffer names (dotted name components, e.g.
            ``"lm_head"`` or ``"layers.0"``) to leave untouched.

    Returns:
        ``model``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> _ = net[0].requires_grad_(False)
        >>> _ = cast_frozen(net, "bfloat16")
        >>> net[0].weight.dtype, net[1].weight.dtype
        (torch.bfloat16, torch.float32)
    """
    frozen = resolve_dtype(dtype)
    trainable = resolve_dtype(trainable_dtype) if trainable_dtype is not None else None
    keep = set(keep_fp32) | _keep_fp32_names(model, frozen)
    # prefixes of modules that hold a trainable parameter somewhere below them
    active: set[str] = set()
    for name, param in model.named_parameters():
        if param.requires_grad:
            parts = name.split(".")
            active.update(".".join(parts[:i]) for i in range(len(parts)))  # "" (the root) included
    for name, param in model.named_parameters():
        target = trainable if param.requires_grad else frozen
        if target is None or not param.is_floating_point() or _matches(name, keep):
            continue
        if param.dtype != target:
            param.data = param.data.to(target)
    for module_name, module in model.named_modules():
        if module_name in active:
            continue
        for buffer_name, buffer in module.named_buffers(recurse=False):
            full = f"{module_name}.{buffer_name}" if module_name else buffer_name
            if (buffer.is_floating_point() and buffer.dtype != frozen and buffer_name not in _KEEP_FP32_BUFFERS
                    and not _matches(full, keep)):
                setattr(module, buffer_name, buffer.to(frozen))
    return model


ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
"""The transformers attention kernels :func:`attention_implementation` switches between."""


@contextlib.contextmanager
def attention_implementation(model: "nn.Module", implementation: Optional[str]) -> "Iterator[list[str]]":
    """Run the transformers models inside ``model`` with another attention kernel, and switch them back after.

    Every ``transformers.PreTrainedModel`` among ``model.modules()`` (a bare model, one wrapped
    by peft, or the backbones of a personakit model) is switched with transformers'
    ``set_attn_implementation(implementation)``; on leaving, each gets its former kernel back,
    also when the block raises.  ``None`` changes nothing.

    Why: on a CPU with AMX, bf16 training steps of a SmolLM2 + LoRA PostGRAG take 0.70x the
    time with ``"eager"`` attention (two batched matrix products and a softmax) as with the
    default fused ``"sdpa"`` kernel, whose backward pass gains nothing from bf16 there, and
    PreSFT(Hist) steps 0.93x, losses within 0.1% (``benchmarks/bf16_step_profile.py``);
    generation is faster with ``"sdpa"``, so switch for training only
    (:attr:`~personakit.training.TrainingConfig.attn_implementation` does).

    Args:
        model: any ``nn.Module``.
        implementation: ``"eager"``, ``"sdpa"`` or ``None``.

    Yields:
        The former kernel of each switched model, in ``model.modules()`` order.

    Raises:
        ValueError: an unknown ``implementation``.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> lm = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                                   intermediate_size=32, vocab_size=32))
        >>> with attention_implementation(lm, "eager"):
        ...     lm.config._attn_implementation
        'eager'
        >>> lm.config._attn_implementation
        'sdpa'
    """
    if implementation is None:
        yield []
        return
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention_implementation: {implementation!r} is not one of {ATTENTION_IMPLEMENTATIONS}")
    switched: list[tuple[Any, str]] = []
    try:
        for module in model.modules():
            config = getattr(module, "config", None)
            current = getattr(config, "_attn_implementation", None)
            if current is None or not callable(getattr(module, "set_attn_implementation", None)):
                continue
            module.set_attn_implementation(implementation)
            switched.append((module, current))
        yield [current for _, current in switched]
    finally:
        for module, current in reversed(switched):
            module.set_attn_implementation(current)
