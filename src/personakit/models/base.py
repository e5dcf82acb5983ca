r"""The one base of the backbone models: :class:`PersonaModel`, its config and its output.

Every trainable model of personakit (:class:`~personakit.models.grag.PreSFT`,
:class:`~personakit.models.grag.PreGRAG`, :class:`~personakit.models.grag.PostGRAG`,
:class:`~personakit.models.questioner.DualTowerResponder`,
:class:`~personakit.models.copersona.CoPersonaModel`) is a transformers backbone plus the
family's own modules.  What they share lives here, once (the pattern of peft's ``BaseTuner``:
the base owns the wrapped model, the family adds its layers):

* **backbone**: built from the config (``backbone`` dict + ``backbone_class``), given as a
  module, or loaded by name (:meth:`PersonaModel.from_backbone`); a user's own ``PeftModel``
  is accepted as it is and its LoRA settings recorded in the config;
* **LoRA** through peft (:func:`~personakit.backbones.peft.apply_lora`) from
  :class:`~personakit.backbones.peft.LoraSettings` (peft's field names), its dict or a
  ``peft.LoraConfig``;
* the **pad id** (:func:`find_pad_id`), ``make_collator``, the ``respond`` loop, and
  ``generate``'s merging of a batch with keyword inputs;
* **save / load** through safetensors (``save_pretrained`` / ``from_pretrained``, the format
  of :mod:`personakit.models._save`: ``config.json``, ``model.safetensors`` with the layer
  wrappers' segment removed and tied tensors stored once, ``generation_config.json``, the
  tokenizer).

The configs subclass :class:`PersonaModelConfig` (a transformers ``PreTrainedConfig`` with the
``backbone``, ``backbone_class`` and ``lora`` fields) and the outputs
:class:`PersonaModelOutput` (a transformers ``ModelOutput``, so ``transformers.Trainer`` and
anything else that indexes ``outputs["loss"]`` or ``outputs[0]`` works).

A family subclass sets :attr:`PersonaModel.config_class`, builds its modules in ``__init__``
after ``super().__init__``, and implements ``forward``, ``generate`` and
:meth:`PersonaModel.build_collator`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedConfig
from transformers.utils import ModelOutput

from personakit.backbones.peft import LoraSettings, apply_lora, is_peft_model, lora_settings_of, unwrap_peft
from personakit.backbones.text import decode_batch
from personakit.models._save import (WrappedCheckpointMixin, fill_tied_keys, load_saved_generation_config,
                                     load_saved_tokenizer, load_state_dict_file)

__all__ = ["PersonaModel", "PersonaModelConfig", "PersonaModelOutput", "find_pad_id", "backbone_dict",
           "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# ------------------------------------------------------------------------------ config
class PersonaModelConfig(PreTrainedConfig):
    """Base of the model configs: the backbone's config and class, and optional LoRA.

    Args:
        backbone: the backbone's config as a dict (``backbone_config.to_dict()``).
        backbone_class: the backbone's transformers class name
            (``"BartForConditionalGeneration"``, ``"EncoderDecoderModel"``, ``"LlamaForCausalLM"``...).
        lora: :class:`~personakit.backbones.peft.LoraSettings` (stored as its dict; a
            ``peft.LoraConfig`` or a dict with the old names ``alpha`` / ``dropout`` is read
            too) to train LoRA adapters; ``None`` for no adapters.
    """

    backbone: Optional[dict] = None
    backbone_class: Optional[str] = None
    lora: Optional[dict] = None

    def __post_init__(self, **kwargs: Any) -> None:
        try:
            settings = LoraSettings.coerce(self.lora)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{type(self).__name__}: field 'lora' is not valid LoRA settings: {err}") from None
        self.lora = None if settings is None else settings.model_dump()
        if isinstance(self.backbone, PreTrainedConfig):
            self.backbone = self.backbone.to_dict()
        super().__post_init__(**kwargs)
        self.validate_settings()

    def validate_settings(self) -> None:
        """Check the settings; the message names the field (extended by the families)."""

    @classmethod
    def setting_names(cls) -> list[str]:
        """The fields this config adds to transformers' ``PreTrainedConfig`` (``lora`` and the family's own)."""
        base = {f.name for f in dataclasses.fields(PreTrainedConfig)} | {"backbone", "backbone_class"}
        return [f.name for f in dataclasses.fields(cls) if f.name not in base]

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any], where: str = "settings",
                       reserved: Sequence[str] = (), fixed: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Validate a dict of this config's settings now, before anything is built or trained.

        ``PreTrainedConfig`` keeps any unknown keyword as an attribute, so a misspelled
        setting would otherwise be ignored silently.  Here an unknown key, a key the caller
        sets itself (``reserved``) or an invalid value is a ``ValueError`` naming ``where``
        and the field (with the closest known name).  ``fixed``: the values the caller
        will set (e.g. the method), checked together with ``settings`` so that a setting
        that does not apply to them fails now too.

        Example:
            >>> from personakit.models.grag import GRAGConfig
            >>> GRAGConfig.check_settings({"extractor_heads": 4})
            {'extractor_heads': 4}
            >>> GRAGConfig.check_settings({"extractor_hedas": 4})
            Traceback (most recent call last):
            ...
            ValueError: settings: unknown field 'extractor_hedas' of GRAGConfig (did you mean 'extractor_heads'?); ...
        """
        import difflib

        known = [n for n in cls.setting_names() if n not in reserved]
        for key in settings:
            if key in reserved:
                raise ValueError(f"{where}: field {key!r} is set by the caller; give it through its own option")
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{where}: unknown field {key!r} of {cls.__name__}{hint}; "
                                 f"known fields: {', '.join(known)}")
        try:
            cls(**{**dict(settings), **dict(fixed or {})})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
        return dict(settings)

    @property
    def backbone_config(self) -> PreTrainedConfig:
        """The backbone's transformers config (rebuilt from the stored dict)."""
        if self.backbone is None:
            raise ValueError(f"{type(self).__name__}: field 'backbone' is not set; build the model with "
                             "from_backbone(...)")
        data = dict(self.backbone)
        data.pop("transformers_version", None)
        return AutoConfig.for_model(**data)

    @property
    def lora_settings(self) -> Optional[LoraSettings]:
        """The LoRA settings, or ``None`` without adapters."""
        return None if self.lora is None else LoraSettings.model_validate(self.lora)

    @property
    def is_encoder_decoder_backbone(self) -> bool:
        """Whether the backbone is an encoder-decoder (BART, T5, ``EncoderDecoderModel``)."""
        data = self.backbone or {}
        return bool(data.get("is_encoder_decoder")) or data.get("model_type") == "encoder-decoder"


# ------------------------------------------------------------------------------ output
class PersonaModelOutput(ModelOutput):
    """Base of the model outputs: a transformers ``ModelOutput`` (indexable by name and position,
    ``to_tuple()``) with :meth:`losses` for a logger.

    Subclasses are ``@dataclass`` es whose first field is ``loss`` and list their loss terms in
    ``LOSS_FIELDS``; every family's output has ``loss``, ``logits`` and ``labels`` (the targets
    aligned with ``logits`` when they are not the batch's own ``labels``, else ``None``).  As with every ``ModelOutput``, a field left ``None`` is not a key and has
    no position: ``output[0]`` is the loss when there is one.
    """

    LOSS_FIELDS: ClassVar[tuple[str, ...]] = ("loss",)

    def losses(self) -> dict[str, float]:
        """The computed loss terms as Python floats (``None`` terms left out), e.g. for a logger."""
        return {name: float(getattr(self, name).detach()) for name in self.LOSS_FIELDS
                if getattr(self, name, None) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``None`` ones included (tensors as they are)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ helpers
def find_pad_id(base_config: Any, tokenizer: Any = None) -> int:
    """The pad id of a backbone: its config's (or its decoder's), the tokenizer's, else EOS, else 0."""
    for source in (base_config, getattr(base_config, "decoder", None), tokenizer):
        pad = getattr(source, "pad_token_id", None)
        if isinstance(pad, int):
            return pad
    eos = getattr(base_config, "eos_token_id", None)
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    return eos if isinstance(eos, int) else 0


def backbone_dict(backbone: nn.Module) -> dict:
    """The config of a transformers model (under a peft wrapper or not) as a JSON-normalised dict."""
    data = json.loads(unwrap_peft(backbone).config.to_json_string(use_diff=False))  # str keys
    data.pop("transformers_version", None)
    return data


class _NoWrapper:
    """Matches no module: the default ``WRAPPER_TYPE`` of a model without layer wrappers."""


# ------------------------------------------------------------------------------ model
class PersonaModel(WrappedCheckpointMixin, nn.Module):
    """Base of the backbone models (see the module docstring).

    Args:
        config: an instance of the family's :attr:`config_class`.
        backbone: the transformers model (or a ``PeftModel`` of it); built (randomly
            initialised) from ``config.backbone`` when ``None``.
        tokenizer: optional tokenizer, kept for :meth:`respond` and :meth:`make_collator`
            and saved with the model.
    """

    config_class: ClassVar[type[PersonaModelConfig]] = PersonaModelConfig
    """The family's config class (read by :meth:`from_backbone` and :meth:`from_pretrained`)."""
    WRAPPER_TYPE: ClassVar[type] = _NoWrapper
    """The class of the layer wrappers the family puts in the backbone (none by default)."""
    GENERATE_INPUTS: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "prompt_ids", "prompt_mask",
                                                  "labels")
    """Batch fields that :meth:`generate` takes from its keyword arguments (the rest go to the backbone)."""

    def __init__(self, config: PersonaModelConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(config, self.config_class):
            raise TypeError(f"{name}: config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.check_config(config)
        if backbone is None:
            backbone = self.build_backbone(config)
        elif is_peft_model(backbone) and config.lora is None:  # a user's PeftModel: record its adapters
            config.lora = lora_settings_of(backbone).model_dump()
        backbone = self.prepare_backbone(backbone, config)
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        base_config = unwrap_peft(backbone).config
        self.is_encoder_decoder = bool(getattr(base_config, "is_encoder_decoder", False)) or (
            getattr(base_config, "model_type", None) == "encoder-decoder")
        self.pad_token_id = find_pad_id(base_config, tokenizer)

    # ------------------------------------------------------------------ construction hooks
    def check_config(self, config: PersonaModelConfig) -> None:
        """Check that ``config`` suits this class (e.g. GRAG's ``method``); nothing by default."""

    def lora_of(self, config: PersonaModelConfig) -> Optional[LoraSettings]:
        """The LoRA settings the backbone gets (``config.lora_settings`` by default)."""
        return config.lora_settings

    def prepare_backbone(self, backbone: nn.Module, config: PersonaModelConfig) -> nn.Module:
        """The backbone as the model holds it: with LoRA adapters when :meth:`lora_of` gives settings."""
        lora = self.lora_of(config)
        return backbone if lora is None else apply_lora(backbone, lora)

    @staticmethod
    def build_backbone(config: PersonaModelConfig) -> nn.Module:
        """A randomly initialised backbone from ``config.backbone`` / ``config.backbone_class``."""
        import transformers

        name = config.backbone_class
        cls = getattr(transformers, name, None) if name else None
        if cls is None:
            raise ValueError(f"{type(config).__name__}: field 'backbone_class' {name!r} is not a transformers "
                             "model class")
        bconf = config.backbone_config
        return cls(config=bconf) if name == "EncoderDecoderModel" else cls(bconf)

    @classmethod
    def load_backbone(cls, name_or_path: Union[str, os.PathLike]) -> tuple[nn.Module, Any]:
        """``(model, tokenizer)`` for a name or folder (a causal LM by default)."""
        from personakit.backbones import load_causal_lm

        return load_causal_lm(name_or_path)

    @classmethod
    def default_settings(cls, **settings: Any) -> dict[str, Any]:
        """The family's default config fields, updated with ``settings``."""
        return dict(settings)

    @classmethod
    def split_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Remove and return the :meth:`from_backbone` keywords that go to ``__init__``, not the config."""
        return {}

    @classmethod
    def from_backbone(cls, backbone: Union[nn.Module, str, os.PathLike], tokenizer: Any = None,
                      **settings: Any) -> "PersonaModel":
        """Build the model around a transformers backbone (its pretrained weights kept).

        Args:
            backbone: a transformers model, a peft ``PeftModel`` of one (its LoRA settings are
                recorded in ``config.lora``, so the saved model loads back), or a name /
                folder (see the family's :meth:`load_backbone`).
            tokenizer: its tokenizer (loaded with the backbone when a name is given).
            **settings: fields of the family's config (``lora`` may be
                :class:`~personakit.backbones.peft.LoraSettings`, its dict or a ``peft.LoraConfig``).

        Returns:
            The model (in training mode only if the backbone was).
        """
        if isinstance(backbone, (str, os.PathLike)):
            backbone, loaded = cls.load_backbone(backbone)
            tokenizer = tokenizer if tokenizer is not None else loaded
        init_kwargs = cls.split_settings(settings)
        if is_peft_model(backbone):
            own = lora_settings_of(backbone)
            given = LoraSettings.coerce(settings.get("lora"))
            if given is not None and given != own:
                raise ValueError(f"{cls.__name__}.from_backbone: the backbone is a PeftModel with other LoRA "
                                 f"settings than the 'lora' given ({own} != {given}); give one of them")
            settings["lora"] = own
        config = cls.config_class(backbone=backbone_dict(backbone), backbone_class=type(unwrap_peft(backbone)).__name__,
                                  **cls.default_settings(**settings))
        return cls(config, backbone=backbone, tokenizer=tokenizer, **init_kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def base_model(self) -> nn.Module:
        """The transformers model (under a peft wrapper when LoRA is used)."""
        return unwrap_peft(self.backbone)

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter."""
        return next(self.parameters()).device

    def trainable_parameter_names(self) -> list[str]:
        """Names of the parameters with ``requires_grad`` (LoRA: the adapters and the family's modules)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    # ------------------------------------------------------------------ generation
    def generate_inputs(self, batch: Optional[Mapping[str, Tensor]], kwargs: dict[str, Any]
                        ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(inputs, options)``: the batch updated with the :attr:`GENERATE_INPUTS` found in ``kwargs``,
        and the remaining generation options (``pad_token_id`` defaulting to the model's)."""
        inputs = dict(batch or {})
        options = dict(kwargs)
        for name in list(options):
            if name in self.GENERATE_INPUTS:
                inputs[name] = options.pop(name)
        options.setdefault("pad_token_id", self.pad_token_id)
        return inputs, options

    def require(self, inputs: Mapping[str, Tensor], *names: str) -> list[Tensor]:
        """The batch fields ``names``; the error names the missing ones."""
        missing = [n for n in names if inputs.get(n) is None]
        if missing:
            raise ValueError(f"{type(self).__name__}: the batch lacks {missing}; build it with model.make_collator()")
        return [inputs[n] for n in names]

    def generate(self, batch: Optional[Mapping[str, Tensor]] = None, **kwargs: Any) -> Tensor:
        """Generate responses for a :meth:`make_collator` batch; returns the new tokens ``[B, T_new]``
        (implemented by the family)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ text level
    def build_collator(self, tokenizer: Any, **options: Any) -> Any:
        """The family's collator for ``tokenizer`` (implemented by the family)."""
        raise NotImplementedError

    def make_collator(self, tokenizer: Any = None, **options: Any) -> Any:
        """The collator that matches this model (``tokenizer`` defaults to the model's own).

        Args:
            tokenizer: the tokenizer; the model's when ``None``.
            **options: the collator's options (``with_targets``, token budgets...).
        """
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError(f"{type(self).__name__}.make_collator: give a tokenizer (the model holds none)")
        return self.build_collator(tokenizer, **options)

    def chunk_generate_kwargs(self, generate_kwargs: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
        """The ``generate`` options of the examples ``start:stop`` in :meth:`respond` (all of them by default)."""
        return generate_kwargs

    def clean_response(self, text: str) -> str:
        """A decoded response as :meth:`respond` returns it (unchanged by default)."""
        return text

    def respond(self, examples: Sequence[Any], batch_size: int = 8, collator: Any = None,
                **generate_kwargs: Any) -> list[str]:
        """Generate a response text for each :class:`~personakit.types.ResponseExample`.

        Args:
            examples: the examples (their responses are not read).
            batch_size: examples per ``generate`` call.
            collator: the collator (default: ``make_collator(with_targets=False)``).
            **generate_kwargs: options of :meth:`generate` (``max_new_tokens``, ``do_sample``...).
        """
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__}.respond needs a tokenizer (from_backbone(..., tokenizer))")
        collator = collator or self.make_collator(with_targets=False)
        device = self.device
        texts: list[str] = []
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start:start + batch_size])
            batch = {k: v.to(device) for k, v in collator(chunk).items()}
            ids = self.generate(batch, **self.chunk_generate_kwargs(generate_kwargs, start, start + len(chunk)))
            texts += [self.clean_response(t) for t in decode_batch(self.tokenizer, ids)]
        return texts

    # ------------------------------------------------------------------ save / load
    def save_extra(self, directory: Path) -> None:
        """Write the family's files beyond config, weights and tokenizer (none by default)."""

    @classmethod
    def load_extra(cls, directory: Path) -> dict[str, Any]:
        """``__init__`` keywords read from the family's extra files (none by default)."""
        return {}

    @classmethod
    def class_for_config(cls, config: PersonaModelConfig, path: Path) -> type["PersonaModel"]:
        """The class that loads ``config`` (``cls`` by default; GRAG picks by ``method``)."""
        return cls

    def save_pretrained(self, directory: Union[str, os.PathLike], save_tokenizer: bool = True) -> Path:
        """Write ``config.json``, ``model.safetensors`` (atomically), ``generation_config.json``, the
        tokenizer and the family's extra files (:meth:`save_extra`)."""
        directory = Path(super().save_pretrained(directory, save_tokenizer=save_tokenizer))
        self.save_extra(directory)
        return directory

    def load_weights(self, directory: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> None:
        """Load ``directory``'s generation config (if any) and ``model.safetensors`` (strict key check).

        A tied tensor missing from the file (a checkpoint written by ``safetensors.save_model``,
        which keeps one name of each shared tensor) is filled from the name it is tied to.

        Raises:
            FileNotFoundError: no ``model.safetensors``.
            WeightsFileError: ``model.safetensors`` is truncated, empty or not a safetensors file
                (a :class:`RuntimeError`; the message names the file).
            RuntimeError: its keys or shapes do not match the model (the message names the file).
        """
        path = Path(directory) / self.WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no weights (was the model saved with save_pretrained?)")
        load_saved_generation_config(directory, self.base_model)
        state = fill_tied_keys(load_state_dict_file(path, map_location), self.clean_state_dict())
        try:
            self.load_clean_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f"{path}: the weights do not match {type(self).__name__} ({self.config_class.__name__} "
                               f"in {Path(directory) / CONFIG_NAME}): {err}") from None

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike], tokenizer: Any = None,
                        map_location: Union[str, torch.device] = "cpu") -> "PersonaModel":
        """Load a model written by :meth:`save_pretrained`.

        Args:
            directory: the checkpoint folder.
            tokenizer: use this tokenizer instead of the saved one.
            map_location: where the weights are loaded.

        Raises:
            FileNotFoundError: the folder has no ``config.json`` or no ``model.safetensors``.
            WeightsFileError: ``model.safetensors`` is truncated, empty or not a safetensors file
                (a :class:`RuntimeError`; the message names the file).
            RuntimeError: the weights do not match the model (the message names the file).
        """
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no {cls.config_class.__name__} (was the model saved with "
                                    "save_pretrained?)")
        config = cls.config_class.from_pretrained(str(directory))
        target = cls.class_for_config(config, config_path)
        model = target(config, tokenizer=load_saved_tokenizer(directory, tokenizer), **target.load_extra(directory))
        model.load_weights(directory, map_location)
        return model
