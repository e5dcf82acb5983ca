"""Load backbones by embedded name, local folder or Hugging Face Hub id.

Every loader accepts the same three kinds of reference, tried in this order:

1. an embedded model name or alias (``"smollm2"``, ``"minilm"``, ``"mpnet"``),
   resolved by :func:`~personakit.backbones.embedded_path` (prepared once);
2. an existing local folder;
3. anything else is passed to ``from_pretrained`` as a Hub id, so normal hub names
   keep working where a hub (or its local cache) is reachable.  When that fails the
   error says whether offline mode is on and lists the embedded names.

``dtype="auto"`` means the fastest safe dtype for the target device (bf16 where the
hardware has a native bf16 path, fp32 elsewhere; :mod:`personakit.backbones.precision`),
not the checkpoint's dtype as in transformers; ``dtype=None`` is fp32.

Example:
    >>> from personakit.backbones import load_causal_lm
    >>> model, tokenizer = load_causal_lm("smollm2")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personakit.backbones.embedded import embedded_path
from personakit.backbones.precision import resolve_dtype
from personakit.backbones.registry import EMBEDDED_MODELS, EmbeddedModel, find_embedded

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BackboneNotFoundError",
    "resolve_model_path",
    "load_causal_lm",
    "load_seq2seq_lm",
    "load_encoder",
    "load_embedded",
    "load_sentence_encoder",
]


class BackboneNotFoundError(OSError):
    """A model reference is neither embedded, nor a local folder, nor loadable from the hub."""


def _looks_like_path(ref: str) -> bool:
    return (
        os.path.isabs(ref) or ref.startswith((".", "~")) or "\\" in ref or ref.count("/") > 1
        or ref.endswith("/")
    )


def resolve_model_path(name_or_path: str | os.PathLike[str], *, install: bool = True) -> str:
    """Turn a model reference into what ``from_pretrained`` takes.

    Args:
        name_or_path: Embedded name/alias, local folder, or hub id.
        install: Prepare an embedded model if needed (see :func:`embedded_path`).

    Returns:
        A local folder (as ``str``) or the unchanged hub id.

    Raises:
        FileNotFoundError: the reference is clearly a path (absolute, ``./``, ``~``)
            but does not exist.
        EmbeddedModelNotInstalled: an embedded name whose package is missing.
    """
    if isinstance(name_or_path, os.PathLike):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such model folder")
        return str(path)
    ref = str(name_or_path)
    model = find_embedded(ref)
    if model is not None:
        return str(embedded_path(model, install=install))
    path = Path(ref).expanduser()
    if path.exists():
        return str(path)
    if _looks_like_path(ref):
        raise FileNotFoundError(f"{ref}: no such model folder")
    return ref


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover
        pass
    return any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _not_found(ref: str, kind: str, err: Exception) -> BackboneNotFoundError:
    names = ", ".join(f"{m.name!r} ({', '.join(repr(a) for a in m.aliases[:1])})" for m in EMBEDDED_MODELS)
    hint = ""
    for m in EMBEDDED_MODELS:
        if m.hub_id and m.hub_id.lower() == ref.lower():
            hint = f" An offline copy of {ref} is embedded as {m.name!r}; pass that name instead."
    reason = (
        "offline mode is on (HF_HUB_OFFLINE=1), so the hub was not contacted"
        if _hub_offline() else f"loading it from the Hugging Face Hub failed ({type(err).__name__}: {err})"
    )
    return BackboneNotFoundError(
        f"cannot load the {kind} {ref!r}: it is not an embedded model name, not an existing local folder, "
        f"and {reason}.{hint} Embedded models (no hub needed): {names}; or pass a local folder."
    )


def _from_pretrained(auto_cls: Any, ref: str, kind: str, **kwargs: Any) -> Any:
    from personakit.backbones.quiet import loading_progress_enabled, transformers_progress

    local = Path(ref).exists()
    try:
        with transformers_progress(loading_progress_enabled()):  # off under loading_progress(False)
            return auto_cls.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as err:
        if local:
            raise
        raise _not_found(ref, kind, err) from err


def _check_kind(ref: Any, allowed: tuple[str, ...], loader: str) -> EmbeddedModel | None:
    model = find_embedded(ref) if isinstance(ref, str) else None
    if model is not None and model.kind not in allowed:
        other = "load_causal_lm" if model.kind == "causal-lm" else "load_encoder or load_sentence_encoder"
        raise ValueError(f"{loader}: the embedded model {model.name!r} is a {model.kind}; use {other}")
    return model


def _load_tokenizer(ref: str, kind: str, pad_with_eos: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, ref, kind)
    if pad_with_eos and getattr(tokenizer, "pad_token", None) is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load(auto_name: str, name_or_path: Any, kind: str, allowed: tuple[str, ...], loader: str,
          dtype: Any, device: Any, pad_with_eos: bool, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    import transformers

    _check_kind(name_or_path, allowed, loader)
    torch_dtype = resolve_dtype(dtype, device)  # before loading anything: a bad name fails fast
    ref = resolve_model_path(name_or_path)
    tokenizer = _load_tokenizer(ref, kind, pad_with_eos)
    model = _from_pretrained(getattr(transformers, auto_name), ref, kind, dtype=torch_dtype, **kwargs)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def load_causal_lm(name_or_path: str | os.PathLike[str] = "smollm2-135m-instruct", *,
                   dtype: "torch.dtype | str | None" = None, device: "torch.device | str | None" = None,
                   **kwargs: Any) -> tuple[Any, Any]:
    """Load a decoder-only LM and its tokenizer (``AutoModelForCausalLM``).

    Args:
        name_or_path: Embedded name, local folder or hub id.
        dtype: ``None`` (fp32), a floating ``torch.dtype``, its name (``"bfloat16"``,
            ``"bf16"``) or ``"auto"``: bf16 where ``device`` has a fast bf16 path (a GPU
            with bf16, a CPU with AMX or AVX512-BF16), fp32 elsewhere, or what
            ``$PERSONAKIT_DTYPE`` says (see :func:`~personakit.backbones.resolve_dtype`).
            Unlike transformers' ``dtype="auto"`` this is **not** the checkpoint's dtype.
        device: Move the model there after loading (``None``: stay on CPU); ``dtype="auto"``
            is decided for this device.
        **kwargs: Passed to ``from_pretrained`` (e.g. ``attn_implementation``).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode.  A tokenizer without a
        pad token gets its eos token as pad token (needed for batching).

    Raises:
        BackboneNotFoundError: not embedded, not local, and not loadable from the hub.
        EmbeddedModelNotInstalled: an embedded name whose package is missing.
        ValueError: an embedded name of another kind (e.g. ``"minilm"``), or an unknown
            dtype name.
    """
    return _load("AutoModelForCausalLM", name_or_path, "causal LM", ("causal-lm",), "load_causal_lm",
                 dtype, device, True, kwargs)


def load_seq2seq_lm(name_or_path: str | os.PathLike[str], *, dtype: "torch.dtype | str | None" = None,
                    device: "torch.device | str | None" = None, **kwargs: Any) -> tuple[Any, Any]:
    """Load an encoder-decoder LM (BART, T5, ...) and its tokenizer (``AutoModelForSeq2SeqLM``).

    No embedded model is an encoder-decoder; build one from the embedded MiniLM with
    ``EncoderDecoderModel.from_encoder_decoder_pretrained(embedded_path("minilm"), ...)``.
    Arguments, return value and errors as in :func:`load_causal_lm` (the pad token is
    left as the tokenizer defines it).
    """
    return _load("AutoModelForSeq2SeqLM", name_or_path, "sequence-to-sequence LM", (), "load_seq2seq_lm",
                 dtype, device, False, kwargs)


def load_encoder(name_or_path: str | os.PathLike[str] = "all-minilm-l6-v2", *,
                 dtype: "torch.dtype | str | None" = None, device: "torch.device | str | None" = None,
                 **kwargs: Any) -> tuple[Any, Any]:
    """Load a bare transformer (``AutoModel``, no head) and its tokenizer.

    Works for the embedded sentence encoders (the transformer inside the
    sentence-transformers folder) and, for decoder-only backbones used as encoders,
    for the embedded causal LM too.  Arguments, return value and errors as in
    :func:`load_causal_lm`.
    """
    return _load("AutoModel", name_or_path, "encoder", ("causal-lm", "sentence-encoder"), "load_encoder",
                 dtype, device, False, kwargs)


def load_embedded(name: str = "smollm2-135m-instruct", *, dtype: "torch.dtype | str | None" = None,
                  device: "torch.device | str | None" = None) -> tuple[Any, Any]:
    """Load an embedded model (preparing it once if needed).

    Args:
        name: Embedded name or alias.
        dtype: ``None`` means fp32; ``"auto"``, a name or a dtype as in :func:`load_causal_lm`.
        device: Where to move the model.

    Returns:
        ``(AutoModelForCausalLM, tokenizer)`` for SmolLM2; ``(AutoModel, tokenizer)``
        for the sentence encoders.

    Example:
        >>> model, tok = load_embedded("smollm2")  # doctest: +SKIP
        >>> prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}],
        ...                                  add_generation_prompt=True, return_tensors="pt")  # doctest: +SKIP
    """
    from personakit.backbones.registry import get_embedded

    model = get_embedded(name)
    if model.kind == "causal-lm":
        return load_causal_lm(model.name, dtype=dtype, device=device)
    return load_encoder(model.name, dtype=dtype, device=device)


def load_sentence_encoder(name_or_path: str | os.PathLike[str] = "all-minilm-l6-v2", device: str | None = None,
                          **kwargs: Any) -> Any:
    """Load a ``sentence_transformers.SentenceTransformer``.

    Args:
        name_or_path: Embedded name (``"minilm"``, ``"mpnet"``), local folder or hub id.
        device: ``None`` lets sentence-transformers choose (CUDA when available).
        **kwargs: Passed to ``SentenceTransformer``.

    Returns:
        The sentence encoder; the embedded ones output L2-normalised embeddings
        (384-d MiniLM, 768-d mpnet).
    """
    from personakit._imports import require

    require("sentence_transformers", "load_sentence_encoder")
    from sentence_transformers import SentenceTransformer

    _check_kind(name_or_path, ("sentence-encoder",), "load_sentence_encoder")
    ref = resolve_model_path(name_or_path)
    local = Path(ref).exists()
    from personakit.backbones.quiet import loading_progress_enabled, transformers_progress

    try:
        with transformers_progress(loading_progress_enabled()):
            return SentenceTransformer(ref, device=device, **kwargs)
    except (OSError, ValueError) as err:
        if local:
            raise
        raise _not_found(ref, "sentence encoder", err) from err
