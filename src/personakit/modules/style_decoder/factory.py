r"""Pick the style-decoder glue for a transformers model: :func:`wrap_style_decoder`."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from personakit.backbones.peft import unwrap_peft
from personakit.config import Registry
from personakit.modules.style_decoder.bart import BartStyleDecoder
from personakit.modules.style_decoder.base import StyleEnhancedDecoder
from personakit.modules.style_decoder.causal import CausalStyleDecoder
from personakit.modules.style_decoder.encoder_decoder import EncoderDecoderStyleDecoder
from personakit.modules.style_decoder.t5 import T5StyleDecoder

__all__ = ["STYLE_DECODERS", "register_style_decoder", "wrap_style_decoder"]

#: Architecture name -> glue class. Checked in registration order by :func:`wrap_style_decoder`.
STYLE_DECODERS: Registry[StyleEnhancedDecoder] = Registry("style decoder")
_ORDER: list[str] = []


def register_style_decoder(name: str, glue: type[StyleEnhancedDecoder]) -> type[StyleEnhancedDecoder]:
    """Register glue for another architecture (a :class:`StyleEnhancedDecoder` subclass).

    The subclass implements ``supports(model)`` and ``locate_decoder(model)`` and sets
    ``LAYERS_PATH`` (or ``CANDIDATE_PATHS``).  Duplicate names are rejected.
    """
    if not (isinstance(glue, type) and issubclass(glue, StyleEnhancedDecoder)):
        raise TypeError(f"register_style_decoder: {glue!r} is not a StyleEnhancedDecoder subclass")
    STYLE_DECODERS.register(name, glue)
    _ORDER.append(name)
    return glue


for _name, _glue in (
    ("bart", BartStyleDecoder),
    ("t5", T5StyleDecoder),
    ("encoder-decoder", EncoderDecoderStyleDecoder),
    ("causal", CausalStyleDecoder),
):
    register_style_decoder(_name, _glue)


def wrap_style_decoder(model: nn.Module, architecture: str | None = None,
                       active_layers: Sequence[int] | None = None) -> StyleEnhancedDecoder:
    r"""Wrap the decoder of a transformers model so a style is added at every layer ($h_i \leftarrow \mathcal{S} + h_i$).

    The layers are replaced in place (see :class:`StyleEnhancedDecoder`); call the
    full model (``model(...)``, ``model.generate(...)``) inside
    ``with styled.use_style(S):``, or call ``styled(..., style=S)`` for the decoder
    stack alone.  A peft ``PeftModel`` is unwrapped to its base model first.

    Args:
        model: a full model: BART / mBART, T5 / mT5, ``EncoderDecoderModel``, or a
            decoder-only LM (Llama family incl. SmolLM2, Qwen2, GPT-2, ...).
        architecture: force a registered glue (``"bart"``, ``"t5"``,
            ``"encoder-decoder"``, ``"causal"``) instead of detecting it.
        active_layers: the layer indices that get the style (``None``: every layer, the
            paper's form); see :attr:`StyleEnhancedDecoder.active_layers`.

    Returns:
        The architecture's :class:`StyleEnhancedDecoder` subclass instance.

    Raises:
        TypeError: for an architecture no glue supports (the message lists them).

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> cfg = GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=99, n_positions=64)
        >>> type(wrap_style_decoder(GPT2LMHeadModel(cfg))).__name__
        'CausalStyleDecoder'
    """
    base = unwrap_peft(model)
    if architecture is not None:
        return STYLE_DECODERS.get(architecture).from_model(base, active_layers=active_layers)
    for name in _ORDER:
        glue = STYLE_DECODERS.get(name)
        if glue.supports(base):
            return glue.from_model(base, active_layers=active_layers)
    model_type = getattr(getattr(base, "config", None), "model_type", None)
    raise TypeError(
        f"wrap_style_decoder: unsupported architecture {type(base).__name__} (model_type={model_type!r}). "
        f"Supported: BART/mBART, T5/mT5, EncoderDecoderModel, and decoder-only models whose layers are at "
        f"base_model.layers or base_model.h (Llama, SmolLM2, Qwen2, GPT-2, ...); registered glue: "
        f"{', '.join(_ORDER)}. Register another with register_style_decoder(name, glue) or wrap the decoder "
        f"stack directly with StyleEnhancedDecoder(decoder, layers_path=...)."
    )
