r"""Decoder-only glue of the style-enhanced decoder: Llama family (SmolLM2, Qwen2, Mistral, ...) and GPT-2."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from personakit.modules.style_decoder.base import StyleEnhancedDecoder, _has_module_list

__all__ = ["CausalStyleDecoder"]


class CausalStyleDecoder(StyleEnhancedDecoder):
    r"""$h_i \leftarrow \mathcal{S} + h_i$ on every layer of a decoder-only LM (GRAG §3.3.2 and §4.3.2).

    "For decoder-only GRAG models, the decoder is repurposed to execute the encoding
    steps": the same stack encodes the persona, history and responses (call it with
    no style) and generates the response (call it under :meth:`use_style`).  While a
    style is set it is added at every position, the prompt included.

    Layer lists: ``model.model.layers`` for the Llama family (``LlamaDecoderLayer``,
    SmolLM2 is a Llama; ``Qwen2DecoderLayer``; Mistral, Qwen3, ...) and
    ``model.transformer.h`` for GPT-2 (``GPT2Block``).  In transformers 5 these layers
    return the hidden-state tensor; a tuple (older releases) is handled too.  The
    final norm (``norm`` / ``ln_f``) acts on the styled last state.

    Args:
        decoder: the decoder stack (``model.model`` / ``model.transformer``, i.e.
            ``model.base_model``).
        layers_path: ``"layers"`` or ``"h"``; found when not given.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1, vocab_size=99)
        >>> CausalStyleDecoder.from_model(LlamaForCausalLM(cfg)).layers_path
        'layers'
    """

    CANDIDATE_PATHS: ClassVar[tuple[str, ...]] = ("layers", "h")
    ARCHITECTURE: ClassVar[str] = "causal"

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        config = getattr(model, "config", None)
        if config is None or getattr(config, "is_encoder_decoder", False):
            return False
        if getattr(config, "model_type", None) == "encoder-decoder":
            return False
        stack = getattr(model, "base_model", model)
        return any(_has_module_list(stack, p) for p in cls.CANDIDATE_PATHS)

    @classmethod
    def locate_decoder(cls, model: nn.Module) -> nn.Module:
        stack = getattr(model, "base_model", model)
        if any(_has_module_list(stack, p) for p in cls.CANDIDATE_PATHS):
            return stack
        raise TypeError(
            f"CausalStyleDecoder: cannot find the layer list of {type(model).__name__} "
            f"(looked for {', '.join(cls.CANDIDATE_PATHS)} in {type(stack).__name__})"
        )
