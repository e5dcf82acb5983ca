r"""peft helpers shared by every family: one place that knows how a ``PeftModel`` wraps a backbone.

* :func:`is_peft_model`, :func:`unwrap_peft`: recognise and unwrap a ``PeftModel``;
* :class:`LoraSettings`: LoRA adapters as a config (peft's own field names ``r``,
  ``lora_alpha``, ``lora_dropout``, ``target_modules``, ``bias``; any other
  ``peft.LoraConfig`` field in ``peft_options``), convertible to and from a
  ``peft.LoraConfig``;
* :func:`apply_lora`: put adapters on a backbone from :class:`LoraSettings`, its dict, a
  ``peft.LoraConfig``, or keep a ``PeftModel`` the user built;
* :func:`lora_settings_of`: the :class:`LoraSettings` of an existing ``PeftModel`` (so a
  model built on it saves a config that rebuilds the same adapters).

LoRA (Hu et al., 2021) freezes a weight $W$ and learns $\Delta W = \frac{\alpha}{r} B A$ with
$A \in \mathbb R^{r \times k}$, $B \in \mathbb R^{d \times r}$ ($B = 0$ at the start).

Importing this module does not import peft.

Example:
    >>> import torch
    >>> unwrap_peft(torch.nn.Linear(2, 2)).__class__.__name__
    'Linear'
    >>> LoraSettings(r=8, alpha=16).lora_alpha  # the old name ``alpha`` is still read
    16
"""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator
from torch import nn

from personakit.config import BaseConfig

__all__ = ["unwrap_peft", "is_peft_model", "LoraSettings", "LoraLike", "apply_lora", "lora_settings_of",
           "lora_task_type"]

# peft.LoraConfig fields that describe the run, not the adapters (never stored in peft_options)
_BOOKKEEPING = frozenset({"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path",
                          "revision", "inference_mode"})
# the old personakit names of peft's fields (config.json files and YAML written before they were renamed)
_OLD_NAMES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` is a peft ``PeftModel`` (it has ``get_base_model``)."""
    return callable(getattr(type(model), "get_base_model", None))


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft ``PeftModel`` (any other module unchanged)."""
    if is_peft_model(model):
        return model.get_base_model()  # type: ignore[operator]
    return model


class LoraSettings(BaseConfig):
    r"""LoRA adapters (through peft) on a backbone; everything else of the backbone is frozen.

    The fields carry peft's ``LoraConfig`` names; the old names ``alpha`` and ``dropout``
    are still accepted when reading (configs and ``config.json`` files written before).
    The GRAG paper uses (Q)LoRA for T5, Llama 3.2 and Qwen3 (GRAG §4.3.2), CoPersona
    $r = 16$, $\alpha = 32$, dropout 0.05 (the defaults here).

    Example:
        >>> LoraSettings(r=8, target_modules=["q_proj", "v_proj"]).lora_alpha
        32
        >>> LoraSettings.model_validate({"alpha": 8, "dropout": 0.0}).model_dump()["lora_alpha"]
        8
    """

    r: int = Field(16, ge=1, description="Rank $r$ of the low-rank update $\\Delta W = BA$.")
    lora_alpha: int = Field(32, ge=1, description=(
        "Scaling numerator: the update is multiplied by ``lora_alpha / r`` (old name ``alpha``)."))
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description=(
        "Dropout on the adapter input, training only (old name ``dropout``)."))
    target_modules: Optional[Union[list[str], str]] = Field(
        None, description=(
        "Module-name suffixes that get adapters (e.g. ``[\"q_proj\", \"v_proj\"]``), ``\"all-linear\"``, or "
        "``None`` for peft's default for the architecture.")
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description=(
        "Which biases are trained (peft's ``bias``)."))
    adapter_name: str = Field("default", min_length=1, description=(
        "The adapter's name in the ``PeftModel`` (peft's ``adapter_name``; part of the weight names)."))
    _renamed_: ClassVar[dict[str, str]] = _OLD_NAMES  # BaseConfig reads the old names, with a FutureWarning

    peft_options: dict[str, Any] = Field(default_factory=dict, description=(
        "Any other ``peft.LoraConfig`` field (``use_rslora``, ``modules_to_save``, ``use_dora``...), passed "
        "to it as given; JSON values only, since they are saved in ``config.json``."))

    @model_validator(mode="after")
    def _check_options(self) -> "LoraSettings":
        clash = sorted((set(self.peft_options) & (set(type(self).model_fields) | set(_OLD_NAMES))) | (
            set(self.peft_options) & _BOOKKEEPING))
        if clash:
            raise ValueError(f"LoraSettings: field 'peft_options' may not set {clash} (use the fields themselves)")
        try:
            json.dumps(self.peft_options)
        except TypeError as err:
            raise ValueError(f"LoraSettings: field 'peft_options' must hold JSON values only ({err})") from None
        if self.peft_options:  # a typo fails now, not when the model is built (only here is peft imported)
            from personakit._imports import is_available

            if is_available("peft"):
                import dataclasses
                import difflib

                from peft import LoraConfig

                known = [f.name for f in dataclasses.fields(LoraConfig)]
                for key in self.peft_options:
                    if key not in known:
                        close = difflib.get_close_matches(key, known, n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        raise ValueError(f"LoraSettings: field 'peft_options' has {key!r}, which is not a "
                                         f"peft.LoraConfig field{hint}")
        return self

    # ------------------------------------------------------------------ old names (read-only)
    @property
    def alpha(self) -> int:
        """Old name of :attr:`lora_alpha`."""
        return self.lora_alpha

    @property
    def dropout(self) -> float:
        """Old name of :attr:`lora_dropout`."""
        return self.lora_dropout

    # ------------------------------------------------------------------ peft
    @classmethod
    def coerce(cls, value: Any) -> Optional["LoraSettings"]:
        """``value`` as :class:`LoraSettings`: ``None``, a :class:`LoraSettings`, its dict, or a ``peft.LoraConfig``."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        if type(value).__name__ == "LoraConfig" or hasattr(value, "lora_alpha"):
            return cls.from_peft(value)
        raise TypeError(f"LoraSettings: cannot read LoRA settings from a {type(value).__name__} "
                        "(give LoraSettings, a dict or a peft.LoraConfig)")

    @classmethod
    def from_peft(cls, config: Any, adapter_name: str = "default") -> "LoraSettings":
        """The settings of a ``peft.LoraConfig`` (fields left at peft's defaults are not copied).

        Raises:
            ValueError: ``config`` is not a LoRA config, or sets a field whose value is not JSON.
        """
        from peft import LoraConfig

        if not isinstance(config, LoraConfig):
            raise ValueError(f"LoraSettings.from_peft: expected a peft.LoraConfig, got {type(config).__name__}")
        values, defaults = _plain(config.to_dict()), _plain(LoraConfig().to_dict())
        own = {name: values[name] for name in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")}
        options = {k: v for k, v in values.items()
                   if k not in own and k not in _BOOKKEEPING and v != defaults.get(k)}
        return cls(**own, adapter_name=adapter_name, peft_options=options)

    def to_peft(self, task_type: Optional[str] = None) -> Any:
        """The ``peft.LoraConfig`` (imports peft lazily); ``task_type`` e.g. ``"CAUSAL_LM"``, ``"SEQ_2_SEQ_LM"``."""
        from personakit._imports import require

        require("peft", "LoRA adapters")
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.target_modules, bias=self.bias, task_type=task_type,
                          **self.peft_options)


LoraLike = Union[LoraSettings, dict, Any]
"""What :func:`apply_lora` reads: :class:`LoraSettings`, its dict, or a ``peft.LoraConfig``."""


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """A ``LoraConfig.to_dict()`` as JSON-like values (sets sorted into lists, enums to their value)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        elif hasattr(value, "value") and type(value).__module__.startswith("peft"):
            value = value.value
        out[key] = value
    return out


def lora_task_type(backbone: nn.Module) -> str:
    """peft's task type of a transformers model: ``"SEQ_2_SEQ_LM"`` for an encoder-decoder, else ``"CAUSAL_LM"``."""
    config = unwrap_peft(backbone).config
    encdec = bool(getattr(config, "is_encoder_decoder", False)) or (
        getattr(config, "model_type", None) == "encoder-decoder")
    return "SEQ_2_SEQ_LM" if encdec else "CAUSAL_LM"


def lora_settings_of(model: nn.Module) -> LoraSettings:
    """The :class:`LoraSettings` of a ``PeftModel``'s active LoRA adapter.

    Raises:
        ValueError: ``model`` is not a ``PeftModel``, or its active adapter is not LoRA.
    """
    if not is_peft_model(model):
        raise ValueError(f"lora_settings_of: {type(model).__name__} is not a peft PeftModel")
    name = model.active_adapter  # type: ignore[attr-defined]
    config = model.peft_config[name]  # type: ignore[attr-defined,index]
    if type(config).__name__ != "LoraConfig":
        raise ValueError(f"lora_settings_of: adapter {name!r} is a {type(config).__name__}; only LoRA is supported")
    return LoraSettings.from_peft(config, adapter_name=name)


def apply_lora(backbone: nn.Module, lora: LoraLike) -> nn.Module:
    """``backbone`` with LoRA adapters (a ``PeftModel``); everything but the adapters is frozen.

    Args:
        backbone: a transformers model, or a ``PeftModel`` already (returned unchanged).
        lora: :class:`LoraSettings`, its dict (old names ``alpha`` / ``dropout`` accepted) or a
            ``peft.LoraConfig`` (a copy gets the backbone's ``task_type`` when it has none).

    Returns:
        The ``PeftModel``.
    """
    if is_peft_model(backbone):
        return backbone
    from personakit._imports import require

    require("peft", "LoRA adapters")
    from peft import LoraConfig, get_peft_model

    task_type = lora_task_type(backbone)
    if isinstance(lora, LoraConfig):
        config, name = lora, "default"
        if config.task_type is None:  # the user's object is left as it is
            config = copy.deepcopy(config)
            config.task_type = task_type
    else:
        settings = LoraSettings.coerce(lora)
        if settings is None:
            raise ValueError("apply_lora: no LoRA settings given")
        config, name = settings.to_peft(task_type), settings.adapter_name
    with warnings.catch_warnings():
        # peft's PeftModel.__init__ reads ``model.is_gradient_checkpointing``, which transformers 5.x
        # deprecates in favour of ``is_activation_checkpointing`` (a FutureWarning at every LoRA model
        # built). The call is peft's, not ours: silence exactly that message, here only.
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated",
                                category=FutureWarning)
        return get_peft_model(backbone, config, adapter_name=name)
