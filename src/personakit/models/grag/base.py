r"""Shared machinery of the GRAG models: encoding, decoding and generation over the backbone.

:class:`GRAGModel` is a :class:`~personakit.models.base.PersonaModel` (backbone, LoRA, pad
id, ``respond``, ``save_pretrained`` / ``from_pretrained``); the three model families
subclass it (:class:`~personakit.models.grag.PreSFT`,
:class:`~personakit.models.grag.PreGRAG`, :class:`~personakit.models.grag.PostGRAG`).
It is not a ``PreTrainedModel``: the backbone is an ordinary transformers model held
as ``self.backbone`` and the checkpoint format is the base's, so that tied
embeddings, peft LoRA layers and the style-decoder wrappers all round-trip exactly.

Checkpoint folder (``save_pretrained``)
    * ``config.json``: the :class:`~personakit.models.grag.GRAGConfig` (backbone config inside);
    * ``model.safetensors``: the full state dict.  Keys are the module paths of the
      model with the style wrappers removed (``backbone.model.decoder.layers.0.fc1.weight``,
      not ``....layers.0.wrapped_layer.fc1.weight``), so the backbone's part is the
      backbone's own state dict under ``backbone.``; tied tensors are stored once and
      listed in the file's metadata (``personakit_aliases``);
    * ``generation_config.json``: the backbone's generation defaults;
    * the tokenizer files when the model holds a tokenizer.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from personakit.backbones.compat import output_cache
from personakit.functional.losses import token_cross_entropy
from personakit.models.base import CONFIG_NAME, WEIGHTS_NAME, PersonaModel
from personakit.models.grag.config import GRAGConfig
from personakit.models.grag.encoding import (KeyValues, Segment, embed_together, encode_segments,
                                             encode_segments_with_cache, left_pad)
from personakit.models.grag.outputs import GRAGOutput
from personakit.modules.style_decoder.base import StyleInjectionLayer

__all__ = ["GRAGModel", "CONFIG_NAME", "WEIGHTS_NAME", "load_backbone"]

# batch fields a model's generate() reads (the rest of a batch, e.g. labels, is ignored there)
_INPUT_FIELDS = (
    "input_ids", "attention_mask", "prompt_ids", "prompt_mask", "persona_ids", "persona_mask",
    "history_ids", "history_mask", "generic_ids", "generic_mask", "response_ids", "response_mask",
    "labels", "generic_labels", "generic_input_ids", "generic_attention_mask",
)

def _hidden_size(config: Any) -> int:
    for name in ("d_model", "hidden_size", "n_embd"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot find the hidden size of {type(config).__name__}")


class GRAGModel(PersonaModel):
    """Base class of the GRAG models (see the module docstring).

    Subclasses set ``METHOD`` and implement :meth:`_setup` (extra modules) and
    :meth:`forward`; PostGRAG also :meth:`_generate`.  Built with
    :meth:`~personakit.models.base.PersonaModel.from_backbone` (settings: the
    :class:`GRAGConfig` fields ``alpha``, ``beta``, ``mode``, ``extractor_heads``,
    ``extractor_dropout``, ``lora``, ``encoder_passes``, ``compute_unweighted_losses``...),
    whose backbone name or folder is loaded by :func:`load_backbone` (an encoder-only
    checkpoint such as MiniLM becomes a BERT2BERT ``EncoderDecoderModel``).

    Args:
        config: the :class:`GRAGConfig`.
        backbone: the transformers model; built (randomly initialised) from
            ``config.backbone`` when ``None``.
        tokenizer: optional tokenizer, kept for :meth:`respond`, :meth:`make_collator`
            and saved with the model.
    """

    config_class = GRAGConfig
    WRAPPER_TYPE = StyleInjectionLayer
    GENERATE_INPUTS = _INPUT_FIELDS

    METHOD: ClassVar[str] = ""

    def __init__(self, config: GRAGConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None):
        super().__init__(config, backbone, tokenizer)
        self._setup()

    # ------------------------------------------------------------------ construction
    def check_config(self, config: GRAGConfig) -> None:  # type: ignore[override]
        if config.method != self.METHOD:
            raise ValueError(f"{type(self).__name__}: config.method is {config.method!r}, expected {self.METHOD!r}")

    def _setup(self) -> None:
        """Build the modules beyond the backbone (overridden by subclasses)."""

    @classmethod
    def load_backbone(cls, name_or_path: Union[str, os.PathLike]) -> tuple[nn.Module, Any]:
        """:func:`load_backbone`: any seq2seq or causal LM; an encoder-only checkpoint as BERT2BERT."""
        return load_backbone(name_or_path)

    @classmethod
    def default_settings(cls, **settings: Any) -> dict[str, Any]:
        return {"method": cls.METHOD, **settings}

    @classmethod
    def class_for_config(cls, config: GRAGConfig, path: Any) -> type["GRAGModel"]:  # type: ignore[override]
        """The class of ``config.method`` (``GRAGModel.from_pretrained`` loads any GRAG model)."""
        if cls.METHOD and config.method != cls.METHOD:
            raise ValueError(f"{path}: field 'method' is {config.method!r}; load it with the matching class")
        return cls if cls.METHOD else _class_for(config.method)

    # ------------------------------------------------------------------ properties
    @property
    def encoder_hidden_size(self) -> int:
        """Size of the encodings $E_X$ (encoder states, or the LM's last hidden states)."""
        base = self.base_model
        if self.is_encoder_decoder:
            return _hidden_size(base.get_encoder().config)
        return _hidden_size(base.config)

    @property
    def decoder_hidden_size(self) -> int:
        """Size of the decoder hidden states (where a style is added)."""
        base = self.base_model
        if getattr(base.config, "model_type", None) == "encoder-decoder":
            return _hidden_size(base.config.decoder)
        return _hidden_size(base.config)

    # ------------------------------------------------------------------ encoding / decoding
    def encode(self, input_ids: Tensor, attention_mask: Tensor, inputs_embeds: Optional[Tensor] = None) -> Tensor:
        r"""$E_X = \text{Encode}(X)$: encoder last hidden states, or the causal LM's last hidden
        states (after its final norm) for decoder-only backbones (GRAG §4.3.2).

        Shapes: ``[B, T]`` → ``[B, T, D]``.  ``inputs_embeds`` ``[B, T, D]``, when given, are
        the tokens' input embeddings (:meth:`input_embeddings` of ``input_ids``), used instead.
        """
        base = self.base_model
        inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        if self.is_encoder_decoder:
            return base.get_encoder()(attention_mask=attention_mask, **inputs).last_hidden_state
        stack = base.base_model  # LlamaModel / GPT2Model: no LM head needed for an encoding
        return stack(attention_mask=attention_mask, use_cache=False, **inputs).last_hidden_state

    def input_embeddings(self) -> nn.Module:
        """The embedding layer of the encoder's input tokens (the decoder-only LM's own)."""
        base = self.base_model
        return (base.get_encoder() if self.is_encoder_decoder else base.base_model).get_input_embeddings()

    def encode_segments(self, segments: Sequence[Segment]) -> list[Segment]:
        """Encode segments separately in at most ``config.encoder_passes`` batched passes, embedding
        the tokens of all passes in one lookup (one dense embedding gradient in training)."""
        return encode_segments(self.encode, segments, self.pad_token_id, self.config.encoder_passes,
                               embed=self.input_embeddings())

    def encode_with_cache(self, input_ids: Tensor, attention_mask: Tensor, inputs_embeds: Optional[Tensor] = None
                          ) -> tuple[Tensor, KeyValues]:
        """Decoder-only :meth:`encode` that also returns the key/value cache of the pass (right padding).

        Shapes: ``[B, T]`` → states ``[B, T, D]`` and per layer ``(keys, values)`` ``[B, H_kv, T, d]``.
        """
        if self.is_encoder_decoder:
            raise ValueError(f"{type(self).__name__}.encode_with_cache is for decoder-only backbones")
        stack = self.base_model.base_model
        inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        out = stack(attention_mask=attention_mask, use_cache=True, **inputs)
        return out.last_hidden_state, [(layer.keys, layer.values) for layer in output_cache(out).layers]

    def encode_segments_with_cache(self, segments: Sequence[Segment], cache_for: Sequence[int]
                                   ) -> tuple[list[Segment], dict[int, KeyValues]]:
        """:meth:`encode_segments` plus the caches of the segments ``cache_for`` (decoder-only)."""
        return encode_segments_with_cache(self.encode_with_cache, segments, self.pad_token_id,
                                          self.config.encoder_passes, cache_for, embed=self.input_embeddings())

    def decode_encoder_decoder(self, encoder_states: Tensor, encoder_mask: Tensor, labels: Tensor,
                               decoder_inputs_embeds: Optional[Tensor] = None) -> Tensor:
        """Teacher-forced decoder logits of an encoder-decoder backbone over given encoder states.

        The decoder inputs are the labels shifted right (the backbone's own
        ``prepare_decoder_input_ids_from_labels``), or their embeddings when
        ``decoder_inputs_embeds`` ``[B, T, D]`` is given (see :meth:`decoder_input_embeds`).
        Shapes: states ``[B, S, D]``, mask ``[B, S]``, labels ``[B, T]`` → logits ``[B, T, V]``.
        """
        from transformers.modeling_outputs import BaseModelOutput

        base = self.base_model
        inputs = ({"decoder_inputs_embeds": decoder_inputs_embeds} if decoder_inputs_embeds is not None
                  else {"decoder_input_ids": base.prepare_decoder_input_ids_from_labels(labels=labels)})  # (B, T)
        out = base(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states), attention_mask=encoder_mask,
            use_cache=False, **inputs,
        )
        return out.logits  # (B, T, V)

    def decoder_input_embeds(self, *labels: Tensor) -> list[Tensor]:
        """Encoder-decoder: the decoder's input embeddings ``[B_i, T_i, D]`` for each of several
        targets ``labels`` ``[B_i, T_i]``, looked up in one call (in training, one dense
        embedding gradient instead of one per decoder pass)."""
        base = self.base_model
        ids = [base.prepare_decoder_input_ids_from_labels(labels=target) for target in labels]
        return embed_together(base.get_decoder().get_input_embeddings(), ids)

    def causal_lm_forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Optional[Tensor] = None
                          ) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """Decoder-only teacher forcing with the output layer only where a target is predicted.

        The LM's stack runs over the whole sequence (prompt + target); the output layer and
        its ``[., V]`` logits, a fifth of SmolLM2's arithmetic per position, are computed only
        from the position before the batch's earliest target token on (the positions whose
        predictions the loss and the bits per character read).  Without ``labels`` (or for a
        model that post-processes its logits, such as Gemma 2's soft-capping) every position
        gets logits.

        Shapes: ``[B, S]`` → logits ``[B, W, V]`` with the labels aligned to them ``[B, W]``
        (``None`` without labels) and the last hidden states ``[B, S, D]``.
        """
        base = self.base_model
        hidden = base.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        start = 0
        if labels is not None and getattr(base.config, "final_logit_softcapping", None) is None:
            supervised = (labels != -100).any(dim=0)  # (S,)
            if bool(supervised.any()):
                start = max(int(supervised.int().argmax()) - 1, 0)
        logits = base.get_output_embeddings()(hidden[:, start:])  # (B, W, V)
        return logits, (None if labels is None else labels[:, start:]), hidden

    def token_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean token cross-entropy (shifted for decoder-only backbones), as transformers computes it."""
        return token_cross_entropy(logits, labels, shift=not self.is_encoder_decoder)

    def _combine(self, loss_p: Optional[Tensor], loss_g: Optional[Tensor], loss_cjepa: Optional[Tensor]) -> Optional[Tensor]:
        """$L = L_P + \\alpha L_G + \\beta L_{CJEPA}$ over the computed, weighted terms."""
        if loss_p is None:
            return None
        total = loss_p
        if loss_g is not None and self.config.alpha > 0:
            total = total + self.config.alpha * loss_g
        if loss_cjepa is not None and self.config.beta > 0:
            total = total + self.config.beta * loss_cjepa
        return total

    def _wants(self, weight: float) -> bool:
        return weight > 0 or self.config.compute_unweighted_losses

    # ------------------------------------------------------------------ generation
    def _generate_from_prompt(self, ids: Tensor, mask: Tensor, **kwargs: Any) -> Tensor:
        """Decoder-only: left-pad the (right-padded) prompts, generate, return the new tokens only."""
        ids, mask = left_pad(ids, mask, self.pad_token_id)
        out = self.base_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        return out[:, ids.size(1):]

    def _generate_encoder_decoder(self, states: Tensor, mask: Tensor, **kwargs: Any) -> Tensor:
        """Encoder-decoder: generate from given encoder states; drop the decoder start token."""
        from transformers.modeling_outputs import BaseModelOutput

        out = self.base_model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=mask, **kwargs
        )
        return out[:, 1:]

    @torch.no_grad()
    def generate(self, batch: Optional[Mapping[str, Tensor]] = None, **kwargs: Any) -> Tensor:
        """Generate responses (no $R_P$ needed).

        Args:
            batch: a batch from :meth:`make_collator` (fields beyond the inputs, such
                as labels, are ignored); input fields may also be passed as keywords.
            **kwargs: generation options for the backbone's ``generate``
                (``max_new_tokens``, ``num_beams``, ``do_sample``, ...).

        Returns:
            ``[B, T_new]`` generated token ids, without the prompt (decoder-only) or the
            decoder start token (encoder-decoder); finished rows are padded.
        """
        inputs, kwargs = self.generate_inputs(batch, kwargs)
        if "eos_token_id" not in kwargs:
            stop = self.stop_token_ids()
            if stop:
                kwargs["eos_token_id"] = stop
        return self._generate(inputs, **kwargs)

    def _generate(self, inputs: Mapping[str, Tensor], **kwargs: Any) -> Tensor:
        """PreSFT / PreGRAG: from the pre-fused input (encoder-decoder) or the prompt (decoder-only)."""
        if self.is_encoder_decoder:
            ids, mask = self.require(inputs, "input_ids", "attention_mask")
            return self.base_model.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, 1:]
        ids, mask = self.require(inputs, "prompt_ids", "prompt_mask")
        return self._generate_from_prompt(ids, mask, **kwargs)

    # ------------------------------------------------------------------ text-level helpers
    def build_collator(self, tokenizer: Any, **options: Any) -> Any:
        """A :class:`~personakit.models.grag.GRAGCollator` matching this model (method, mode, architecture)."""
        from personakit.models.grag.collator import GRAGCollator

        base = self.base_model
        start = getattr(base.config, "decoder_start_token_id", None)
        options.setdefault("prompt_format", self.prompt_format(tokenizer))
        if self.METHOD == "postgrag":
            options.setdefault("persona_in_history", bool(getattr(self.config, "persona_in_history", False)))
        return GRAGCollator(
            tokenizer, method=self.METHOD, mode=self.config.mode, decoder_start_token_id=start,
            architecture="encoder-decoder" if self.is_encoder_decoder else "decoder-only", **options,
        )

    def prompt_format(self, tokenizer: Any = None) -> str:
        """The decoder-only prompt layout in use: ``config.prompt_format``, with ``"auto"`` resolved
        (``"chat"`` when the tokenizer has a chat template); ``"plain"`` for encoder-decoder backbones."""
        from personakit.models.grag.chat import has_chat_template

        if self.is_encoder_decoder:
            return "plain"
        fmt = self.config.prompt_format
        if fmt == "auto":
            tokenizer = tokenizer if tokenizer is not None else self.tokenizer
            fmt = "chat" if tokenizer is not None and has_chat_template(tokenizer) else "plain"
        return fmt

    def stop_token_ids(self) -> Optional[list[int]]:
        """Decoder-only: the ids at which :meth:`generate` stops by default (the chat template's
        end-of-turn token and EOS; see :func:`~personakit.models.grag.chat.stop_token_ids`);
        ``None`` (the backbone's own generation config) otherwise or without a tokenizer."""
        from personakit.models.grag.chat import stop_token_ids

        if self.is_encoder_decoder or self.tokenizer is None:
            return None
        return stop_token_ids(self.tokenizer, getattr(self.base_model, "generation_config", None)) or None


def _class_for(method: str) -> type[GRAGModel]:
    from personakit.models.grag.factory import GRAG_MODELS

    return GRAG_MODELS[method]


# Weights that a BERT2BERT warm start creates (the decoder's cross-attention and LM head) or leaves unused
# (the encoder checkpoint's pooler, in the decoder): transformers reports them in a load-report table.
_WARM_START_NEW = (r"crossattention", r"^(cls|lm_head|generator_lm_head|generator_predictions)\.")
_WARM_START_UNUSED = (r"^pooler\.", r"^(roberta|bert|electra|mpnet)\.pooler\.")


def _warm_start_encoder_decoder(encoder_decoder_cls: Any, ref: str, label: str) -> nn.Module:
    """``EncoderDecoderModel.from_encoder_decoder_pretrained(ref, ref)`` with transformers' expected load report
    (new cross-attention and LM head, unused pooler) summarised in one line; an unexpected one is shown as is."""
    from personakit.backbones.quiet import (capture_load_reports, loading_progress_enabled,
                                            summarise_load_reports, transformers_progress)

    with capture_load_reports() as reports, transformers_progress(loading_progress_enabled()):
        model = encoder_decoder_cls.from_encoder_decoder_pretrained(ref, ref)
    summarise_load_reports(reports, f"{label} warm-started as a BERT2BERT encoder-decoder",
                           expected_missing=_WARM_START_NEW, expected_unexpected=_WARM_START_UNUSED)
    return model


def load_backbone(name_or_path: Union[str, os.PathLike]) -> tuple[nn.Module, Any]:
    """Load a backbone by embedded name / folder / hub id; encoder-only checkpoints become BERT2BERT."""
    from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

    from personakit.backbones import load_causal_lm, load_seq2seq_lm, resolve_model_path

    ref = resolve_model_path(name_or_path)
    bconf = AutoConfig.from_pretrained(ref)
    if getattr(bconf, "is_encoder_decoder", False) or bconf.model_type == "encoder-decoder":
        return load_seq2seq_lm(ref)
    if bconf.model_type in ("bert", "roberta", "electra", "xlm-roberta", "mpnet"):
        model = _warm_start_encoder_decoder(EncoderDecoderModel, ref, f"{name_or_path} ({bconf.model_type})")
        tokenizer = AutoTokenizer.from_pretrained(ref)
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        model.config.decoder_start_token_id = start
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        model.generation_config.decoder_start_token_id = start
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = model.config.eos_token_id
        return model, tokenizer
    return load_causal_lm(ref)
