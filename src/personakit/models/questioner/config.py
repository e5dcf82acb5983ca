r"""Config of the questioner-aware dual-tower responder: :class:`DualTowerConfig`."""

from __future__ import annotations

from typing import Any, Optional

from transformers import AutoConfig

from personakit.backbones.peft import LoraSettings
from personakit.models.base import PersonaModelConfig

__all__ = ["DualTowerConfig", "GENERAL_MODES"]

GENERAL_MODES = ("lora", "full", "frozen")
"""How the general tower (the backbone) is trained: LoRA adapters, every weight, or not at all."""


class DualTowerConfig(PersonaModelConfig):
    r"""Config of a :class:`~personakit.models.questioner.DualTowerResponder`: the backbone's config
    plus the dual-tower settings.

    Args:
        backbone: the backbone's config as a dict.
        backbone_class: the backbone's transformers class (``"LlamaForCausalLM"``, ``"GPT2LMHeadModel"``...).
        questioners: the known questioner ids; questioner ``questioners[i]`` has index ``i + 1``
            (index 0 is the unknown / default questioner).
        use_specific: run the questioner-specific stream (``False``: a plain fine-tune of the
            backbone on the same data and prompts, the LoRA baseline).
        rank: rank $r$ of the low-rank blocks (default 16).
        init_scale: factor on the default initialisation of the low-rank down projections
            (0: the model starts exactly as the backbone, but the pooled specific
            representation starts at zero; default 0.01).
        unknown_questioner: ``"general"`` (unknown questioners get the backbone's stream only)
            or ``"default"`` (they get the default embedding).
        questioner_dropout: during training, replace a known questioner by index 0 with this
            probability (teaches the default embedding, or the general stream alone).
        num_views: views of the multi-view augmentation (0: none, the pooled representation is the only view).
        view_dim: size of each view (default: the hidden size).
        contrastive_weight: $\lambda$ of $L = L_{LM} + \lambda L_{QC}$ (0: no contrastive loss).
        temperature: InfoNCE temperature $\tau$ (reference code 0.01).
        queue_size: queue of past negatives (reference code 512; 0: none).
        use_clusters: negatives only from the same question cluster.
        general: ``"lora"``, ``"full"`` or ``"frozen"`` training of the backbone.
        lora: :class:`~personakit.backbones.peft.LoraSettings` (as a dict) for ``general="lora"``
            (``None``: the defaults).
    """

    model_type = "personakit-dual-tower"

    questioners: Optional[list] = None
    use_specific: bool = True
    rank: int = 16
    init_scale: float = 0.01
    unknown_questioner: str = "general"
    questioner_dropout: float = 0.0
    num_views: int = 2
    view_dim: Optional[int] = None
    contrastive_weight: float = 0.5
    temperature: float = 0.01
    queue_size: int = 0
    use_clusters: bool = True
    general: str = "lora"

    def __post_init__(self, **kwargs: Any) -> None:
        self.questioners = [str(q) for q in (self.questioners or [])]
        super().__post_init__(**kwargs)  # LoRA and backbone normalised, then validate_settings()

    def validate_settings(self) -> None:
        """Check the settings; the message names the field."""
        def fail(field: str, msg: str) -> None:
            raise ValueError(f"DualTowerConfig: field {field!r} {msg}")

        if len(set(self.questioners)) != len(self.questioners):
            dup = sorted({q for q in self.questioners if self.questioners.count(q) > 1})
            fail("questioners", f"lists ids twice: {dup[:5]}")
        if not isinstance(self.rank, int) or self.rank < 1:
            fail("rank", f"must be an integer >= 1, got {self.rank!r}")
        if float(self.init_scale) < 0:
            fail("init_scale", f"must be >= 0, got {self.init_scale!r}")
        if self.unknown_questioner not in ("general", "default"):
            fail("unknown_questioner", f"must be 'general' or 'default', got {self.unknown_questioner!r}")
        if not 0.0 <= float(self.questioner_dropout) < 1.0:
            fail("questioner_dropout", f"must be in [0, 1), got {self.questioner_dropout!r}")
        if not isinstance(self.num_views, int) or self.num_views < 0:
            fail("num_views", f"must be an integer >= 0, got {self.num_views!r}")
        if self.view_dim is not None and (not isinstance(self.view_dim, int) or self.view_dim < 1):
            fail("view_dim", f"must be None or an integer >= 1, got {self.view_dim!r}")
        if float(self.contrastive_weight) < 0:
            fail("contrastive_weight", f"must be >= 0, got {self.contrastive_weight!r}")
        if float(self.temperature) <= 0:
            fail("temperature", f"must be > 0, got {self.temperature!r}")
        if not isinstance(self.queue_size, int) or self.queue_size < 0:
            fail("queue_size", f"must be an integer >= 0, got {self.queue_size!r}")
        if self.general not in GENERAL_MODES:
            fail("general", f"must be one of {GENERAL_MODES}, got {self.general!r}")

    @property
    def lora_settings(self) -> LoraSettings:  # type: ignore[override]
        """LoRA settings of the general tower (the defaults when ``lora`` is unset)."""
        return LoraSettings.model_validate(self.lora or {})

    def questioner_index(self) -> dict[str, int]:
        """``{questioner id: embedding index}`` (indices from 1; 0 is unknown)."""
        return {q: i + 1 for i, q in enumerate(self.questioners)}


AutoConfig.register(DualTowerConfig.model_type, DualTowerConfig, exist_ok=True)
