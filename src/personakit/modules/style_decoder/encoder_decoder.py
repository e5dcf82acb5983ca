r"""``EncoderDecoderModel`` glue of the style-enhanced decoder (e.g. a BERT / MiniLM warm start)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from personakit.modules.style_decoder.base import StyleEnhancedDecoder, _has_module_list

__all__ = ["EncoderDecoderStyleDecoder"]


class EncoderDecoderStyleDecoder(StyleEnhancedDecoder):
    r"""$h_i \leftarrow \mathcal{S} + h_i$ on every layer of an ``EncoderDecoderModel``'s decoder (GRAG §3.3.2).

    ``EncoderDecoderModel`` (Rothe et al., 2020) pairs any encoder with a causal-LM
    decoder that has cross-attention, e.g. two BERT / MiniLM stacks
    (``is_decoder=True, add_cross_attention=True`` on the decoder): the library's
    default encoder-decoder task model.  The decoder stack is
    ``model.decoder.base_model`` (a ``BertModel`` for BERT-family decoders, whose
    ``BertLayer``\ s sit at ``encoder.layer`` and return the hidden-state tensor in
    transformers 5); GPT-2-style (``h``) and Llama-style (``layers``) decoders are
    found too.

    Args:
        decoder: the decoder stack, e.g. ``model.decoder.bert``.
        layers_path: where its layers are; found among ``encoder.layer``, ``h``,
            ``layers`` when not given.

    Example:
        >>> from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel
        >>> enc = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                  intermediate_size=32, vocab_size=99)
        >>> dec = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        ...                  intermediate_size=32, vocab_size=99, is_decoder=True, add_cross_attention=True)
        >>> model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
        >>> EncoderDecoderStyleDecoder.from_model(model).layers_path
        'encoder.layer'
    """

    CANDIDATE_PATHS: ClassVar[tuple[str, ...]] = ("encoder.layer", "h", "layers", "block", "layer")
    ARCHITECTURE: ClassVar[str] = "encoder-decoder"
    MODEL_TYPES: ClassVar[frozenset[str]] = frozenset({"encoder-decoder"})

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return getattr(getattr(model, "config", None), "model_type", None) in cls.MODEL_TYPES

    @classmethod
    def locate_decoder(cls, model: nn.Module) -> nn.Module:
        decoder = getattr(model, "decoder", None)
        if decoder is None:
            raise TypeError(f"EncoderDecoderStyleDecoder: {type(model).__name__} has no `decoder`")
        stack = getattr(decoder, "base_model", decoder)
        if any(_has_module_list(stack, p) for p in cls.CANDIDATE_PATHS):
            return stack
        raise TypeError(
            f"EncoderDecoderStyleDecoder: cannot find the layer list of the decoder {type(decoder).__name__} "
            f"(looked for {', '.join(cls.CANDIDATE_PATHS)} in {type(stack).__name__})"
        )
