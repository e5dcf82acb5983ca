r"""The questioner-aware dual-tower responder (Zeng et al., 2024): :class:`DualTowerResponder`.

One model answers the same question differently depending on who asks.  It composes

* the backbone causal LM: the *general* tower (trained fully, with LoRA, or frozen);
* :class:`~personakit.modules.LowRankSpecificEncoder`: the questioner-specific low-rank
  stream beside it, fed with a learned questioner embedding;
* :class:`~personakit.modules.MultiViewProjector`: $V$ views of the pooled specific
  representation;
* :class:`~personakit.losses.QuestionerContrastiveLoss`: InfoNCE among those views,
  positives sharing the questioner, negatives from other questioners of the same
  question cluster (:class:`~personakit.modules.QuestionClusterer`);

and is trained on $L = L_{LM} + \lambda L_{QC}$ (reference code: $\lambda = 0.5$).

Checkpoint folder (``save_pretrained``): ``config.json`` (:class:`DualTowerConfig`, the
backbone's config and the questioner vocabulary inside), ``model.safetensors`` (the whole
state dict with the layer wrappers' ``base_layer.`` segment removed; tied tensors stored
once and listed in the metadata), ``generation_config.json`` and the tokenizer files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from transformers import AutoConfig, PreTrainedConfig

from personakit.backbones.text import decode_batch
from personakit.functional.losses import token_cross_entropy
from personakit.losses.questioner import QuestionerContrastiveLoss
from personakit.models._save import WrappedCheckpointMixin, load_saved_tokenizer
from personakit.models.grag.config import LoraSettings
from personakit.modules.lowrank_specific import LowRankSpecificEncoder, SpecificStreamLayer
from personakit.modules.multiview import MultiViewProjector
from personakit.modules.question_clusterer import CLUSTER_KEY
from personakit.types import ResponseExample

__all__ = ["DualTowerConfig", "DualTowerOutput", "DualTowerResponder", "QuestionerCollator", "GENERAL_MODES"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

GENERAL_MODES = ("lora", "full", "frozen")
"""How the general tower (the backbone) is trained: LoRA adapters, every weight, or not at all."""


# ------------------------------------------------------------------------------ config
class DualTowerConfig(PreTrainedConfig):
    r"""Config of a :class:`DualTowerResponder`: the backbone's config plus the dual-tower settings.

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
        lora: :class:`~personakit.models.grag.LoraSettings` (as a dict) for ``general="lora"``.
    """

    model_type = "personakit-dual-tower"

    backbone: Optional[dict] = None
    backbone_class: Optional[str] = None
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
    lora: Optional[dict] = None

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.lora, LoraSettings):
            self.lora = self.lora.model_dump()
        if isinstance(self.backbone, PreTrainedConfig):
            self.backbone = self.backbone.to_dict()
        if self.questioners is None:
            self.questioners = []
        self.questioners = [str(q) for q in self.questioners]
        super().__post_init__(**kwargs)
        self.validate_settings()

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
        if self.lora is not None:
            LoraSettings.model_validate(self.lora)

    @property
    def backbone_config(self) -> PreTrainedConfig:
        """The backbone's transformers config (rebuilt from the stored dict)."""
        if self.backbone is None:
            raise ValueError("DualTowerConfig: field 'backbone' is not set; build the model with from_backbone(...)")
        data = dict(self.backbone)
        data.pop("transformers_version", None)
        return AutoConfig.for_model(**data)

    @property
    def lora_settings(self) -> LoraSettings:
        """LoRA settings of the general tower (defaults when ``lora`` is unset)."""
        return LoraSettings.model_validate(self.lora or {})

    def questioner_index(self) -> dict[str, int]:
        """``{questioner id: embedding index}`` (indices from 1; 0 is unknown)."""
        return {q: i + 1 for i, q in enumerate(self.questioners)}


AutoConfig.register(DualTowerConfig.model_type, DualTowerConfig, exist_ok=True)


# ------------------------------------------------------------------------------ output
@dataclass
class DualTowerOutput:
    r"""What :meth:`DualTowerResponder.forward` returns.

    Attributes:
        loss: $L = L_{LM} + \lambda L_{QC}$ (``None`` without labels).
        loss_lm: token cross-entropy of the response (mean over its tokens).
        loss_contrastive: $L_{QC}$ (``None`` when not computed: no specific stream,
            $\lambda = 0$, or no questioners given).
        contrastive_valid: fraction of views that had a positive and a negative.
        logits: ``[B, T, V]``.
        specific: ``[B, D]`` pooled questioner-specific representation (``None`` without the stream).
    """

    loss: Optional[Tensor] = None
    loss_lm: Optional[Tensor] = None
    loss_contrastive: Optional[Tensor] = None
    contrastive_valid: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    specific: Optional[Tensor] = None

    LOSS_FIELDS = ("loss", "loss_lm", "loss_contrastive", "contrastive_valid")

    def losses(self) -> dict[str, float]:
        """The computed loss terms as floats (``None`` terms left out), e.g. for a logger."""
        return {n: float(getattr(self, n).detach()) for n in self.LOSS_FIELDS if getattr(self, n) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# ---------------------------------------------------------------------------- collator
class QuestionerCollator:
    r"""Tokenise :class:`~personakit.types.ResponseExample` s for a :class:`DualTowerResponder`.

    Prompt (decoder-only): optional ``"persona: P"`` line (``include_persona``; ``P`` is
    ``example.persona``), then the last ``max_history_turns`` turns, one line each,
    ``"{user_label}: text"`` for the questioner's turns and ``"{agent_label}: text"`` for
    the responder's, then the cue ``"{agent_label}:"``; tokenised without special tokens,
    cut to its last ``max_prompt_tokens`` tokens, and preceded by the tokenizer's leading
    special tokens (BOS where it has one).  Target: ``" " + response`` cut to
    ``max_response_tokens``, then EOS.

    Fields (``LongTensor``, right-padded): ``input_ids``, ``attention_mask``, ``labels``
    (prompt + target, ``-100`` on the prompt) when ``with_targets``; ``prompt_ids``,
    ``prompt_mask`` (the prompt alone, for ``generate``); ``questioner_ids`` ``[B]`` (the
    example's ``questioner_id`` through ``questioner_index``; 0 when unknown or missing);
    ``cluster_ids`` ``[B]`` (``metadata["question_cluster"]``, 0 when missing).

    Args:
        tokenizer: the backbone's tokenizer (pad falls back to EOS).
        questioner_index: ``{questioner id: index}`` (``DualTowerConfig.questioner_index()``).
        max_prompt_tokens, max_response_tokens: token budgets.
        max_history_turns: keep the last this many turns (``None``: all).
        include_persona: put ``example.persona`` in the prompt.
        user_label, agent_label: role names in the prompt.
        with_targets: include the target fields.
    """

    def __init__(self, tokenizer: Any, questioner_index: Mapping[str, int], max_prompt_tokens: int = 256,
                 max_response_tokens: int = 64, max_history_turns: Optional[int] = None,
                 include_persona: bool = False, user_label: str = "user", agent_label: str = "agent",
                 with_targets: bool = True):
        from personakit.models.grag.collator import GRAGCollator

        if max_prompt_tokens < 1 or max_response_tokens < 1:
            raise ValueError("QuestionerCollator: max_prompt_tokens and max_response_tokens must be >= 1")
        if max_history_turns is not None and max_history_turns < 1:
            raise ValueError(f"QuestionerCollator: max_history_turns must be >= 1 or None, got {max_history_turns}")
        self.tokenizer = tokenizer
        self.questioner_index = dict(questioner_index)
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.max_history_turns = max_history_turns
        self.include_persona = include_persona
        self.user_label = user_label
        self.agent_label = agent_label
        self.with_targets = with_targets
        eos = getattr(tokenizer, "eos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = eos
        if pad is None or eos is None:
            raise ValueError("QuestionerCollator: the tokenizer needs an eos token (and a pad token, or eos as pad)")
        self.pad_token_id, self.eos_token_id = int(pad), int(eos)
        self.special_prefix, _ = GRAGCollator._probe_special_tokens(tokenizer)

    def prompt_text(self, example: ResponseExample) -> str:
        """The prompt of an example (see the class docstring)."""
        history = example.history if self.max_history_turns is None else example.history[-self.max_history_turns:]
        lines = []
        if self.include_persona:
            lines.append(f"persona: {example.persona.to_text() or '(none)'}")
        lines += [f"{self.agent_label if t.speaker == example.agent else self.user_label}: {' '.join(t.text.split())}"
                  for t in history]
        lines.append(f"{self.agent_label}:")
        return "\n".join(lines)

    def _tok(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _pad(self, rows: Sequence[Sequence[int]], value: int) -> Tensor:
        width = max(1, max(len(r) for r in rows))
        out = torch.full((len(rows), width), value, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        return out

    def __call__(self, examples: Sequence[ResponseExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("QuestionerCollator: got an empty list of examples")
        prompts, targets, qids, cids = [], [], [], []
        for ex in examples:
            prompts.append(self.special_prefix + self._tok(self.prompt_text(ex))[-self.max_prompt_tokens:])
            if self.with_targets:
                targets.append(self._tok(" " + ex.response.strip())[: self.max_response_tokens] + [self.eos_token_id])
            qids.append(self.questioner_index.get(ex.questioner_id, 0) if ex.questioner_id is not None else 0)
            cids.append(int(ex.metadata.get(CLUSTER_KEY, 0)))
        batch: dict[str, Tensor] = {
            "prompt_ids": self._pad(prompts, self.pad_token_id),
            "prompt_mask": self._pad([[1] * len(p) for p in prompts], 0),
            "questioner_ids": torch.tensor(qids, dtype=torch.long),
            "cluster_ids": torch.tensor(cids, dtype=torch.long),
        }
        if self.with_targets:
            rows = [p + t for p, t in zip(prompts, targets)]
            batch["input_ids"] = self._pad(rows, self.pad_token_id)
            batch["attention_mask"] = self._pad([[1] * len(r) for r in rows], 0)
            batch["labels"] = self._pad([[-100] * len(p) + t for p, t in zip(prompts, targets)], -100)
        return batch


# ------------------------------------------------------------------------------- model
class DualTowerResponder(WrappedCheckpointMixin, nn.Module):
    r"""Questioner-aware responder (Zeng et al., 2024): a general tower and a low-rank questioner-specific tower.

    For a dialogue with question context $x$, questioner $q$ and target response $y$,

    $$L = \underbrace{-\tfrac{1}{|y|}\textstyle\sum_t \log p_\theta(y_t \mid y_{<t}, x, q)}_{L_{LM}}
      \; + \; \lambda\, L_{QC},$$

    where $p_\theta$ is the backbone with the questioner-specific stream added before its
    LM head (:class:`~personakit.modules.LowRankSpecificEncoder`), and $L_{QC}$ the
    questioner-contrastive loss (:class:`~personakit.losses.QuestionerContrastiveLoss`)
    over $V$ views (:class:`~personakit.modules.MultiViewProjector`) of the pooled
    specific representation $\bar s = \operatorname{mean}_t \delta_{L,t}$ (the specific stream's output, over the non-padding
    tokens of prompt and response), positives sharing the questioner, negatives from
    other questioners in the same question cluster (``cluster_ids`` from
    :class:`~personakit.modules.QuestionClusterer`).  Rows with an unknown questioner
    (index 0) take no part in $L_{QC}$.

    ``use_specific=False`` in the config gives the plain fine-tune of the same backbone on
    the same prompts (LoRA by default): the baseline the dual tower is compared with.

    Args:
        config: the :class:`DualTowerConfig`.
        backbone: the transformers causal LM (built randomly from ``config.backbone`` when ``None``).
        tokenizer: kept for :meth:`respond`, :meth:`make_collator` and saved with the model.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1, vocab_size=60)
        >>> model = DualTowerResponder.from_backbone(LlamaForCausalLM(cfg), questioners=["ann", "bob"],
        ...                                          rank=4, general="full")
        >>> ids = torch.tensor([[1, 5, 7, 9]])
        >>> out = model(ids, torch.ones_like(ids), labels=ids, questioner_ids=torch.tensor([1]))
        >>> sorted(out.losses())
        ['loss', 'loss_lm']
        >>> model.generate(input_ids=ids, questioner_id="bob", max_new_tokens=2, do_sample=False).shape
        torch.Size([1, 2])

    Citation:
        Zeng, Niu, Wu, Lv and Chen (2024). *Personalized LLM for Generating Customized
        Responses to the Same Query from Different Users.* arXiv:2412.11736.
    """

    WRAPPER_TYPE = SpecificStreamLayer

    def __init__(self, config: DualTowerConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None):
        super().__init__()
        if not isinstance(config, DualTowerConfig):
            raise TypeError(f"DualTowerResponder: config must be a DualTowerConfig, got {type(config).__name__}")
        if backbone is None:
            backbone = self._build_backbone(config)
        if getattr(backbone.config, "is_encoder_decoder", False):
            raise ValueError("DualTowerResponder: the backbone must be a decoder-only causal LM")
        if config.general == "lora" and not callable(getattr(type(backbone), "get_base_model", None)):
            from personakit._imports import require

            require("peft", "LoRA on the general tower")
            from peft import get_peft_model

            backbone = get_peft_model(backbone, config.lora_settings.to_peft("CAUSAL_LM"))
        elif config.general == "frozen":
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        base = self.base_model
        self.pad_token_id = self._find_pad_id(base.config, tokenizer)
        self.specific: Optional[LowRankSpecificEncoder] = None
        self.projector: Optional[MultiViewProjector] = None
        self.contrastive: Optional[QuestionerContrastiveLoss] = None
        if config.use_specific:
            self.specific = LowRankSpecificEncoder(backbone, num_questioners=len(config.questioners), rank=config.rank,
                                                   unknown_questioner=config.unknown_questioner,  # type: ignore[arg-type]
                                                   init_scale=float(config.init_scale))  # type: ignore[arg-type]
            dim = self.specific.hidden_size
            out_dim = config.view_dim or dim
            if config.num_views > 0:
                self.projector = MultiViewProjector(config.num_views, dim, out_dim)
                self.projector.to(next(base.parameters()).dtype)
            if config.contrastive_weight > 0:
                self.contrastive = QuestionerContrastiveLoss(
                    temperature=config.temperature, queue_size=config.queue_size,
                    dim=out_dim if config.num_views > 0 else dim, use_clusters=config.use_clusters)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _build_backbone(config: DualTowerConfig) -> nn.Module:
        import transformers

        cls = getattr(transformers, config.backbone_class or "", None)
        if cls is None:
            raise ValueError(f"DualTowerConfig: field 'backbone_class' {config.backbone_class!r} is not a "
                             "transformers model class")
        return cls(config.backbone_config)

    @staticmethod
    def _find_pad_id(base_config: Any, tokenizer: Any) -> int:
        for source in (base_config, tokenizer):
            pad = getattr(source, "pad_token_id", None)
            if isinstance(pad, int):
                return pad
        eos = getattr(base_config, "eos_token_id", None)
        eos = eos[0] if isinstance(eos, list) and eos else eos
        return eos if isinstance(eos, int) else 0

    @classmethod
    def from_backbone(cls, backbone: Union[nn.Module, str, os.PathLike], tokenizer: Any = None, *,
                      questioners: Sequence[str] = (), **settings: Any) -> "DualTowerResponder":
        """Build the model around a causal LM (its pretrained weights kept).

        Args:
            backbone: a transformers causal LM, or a name / folder (``"smollm2"``, a local folder).
            tokenizer: its tokenizer (loaded with the backbone when a name is given).
            questioners: the known questioner ids (their order fixes the embedding rows).
            **settings: other :class:`DualTowerConfig` fields (``rank``, ``num_views``, ``general``, ``lora``...).
        """
        if isinstance(backbone, (str, os.PathLike)):
            from personakit.backbones import load_causal_lm

            backbone, loaded = load_causal_lm(backbone)
            tokenizer = tokenizer if tokenizer is not None else loaded
        get_base = getattr(type(backbone), "get_base_model", None)
        base = backbone.get_base_model() if callable(get_base) else backbone  # type: ignore[operator]
        if isinstance(settings.get("lora"), LoraSettings):
            settings["lora"] = settings["lora"].model_dump()
        backbone_dict = json.loads(base.config.to_json_string(use_diff=False))
        backbone_dict.pop("transformers_version", None)
        config = DualTowerConfig(backbone=backbone_dict, backbone_class=type(base).__name__,
                                 questioners=list(questioners), **settings)
        return cls(config, backbone=backbone, tokenizer=tokenizer)

    # ------------------------------------------------------------------ properties
    @property
    def base_model(self) -> nn.Module:
        """The transformers model (under the peft wrapper when LoRA is used)."""
        get_base = getattr(type(self.backbone), "get_base_model", None)
        return self.backbone.get_base_model() if callable(get_base) else self.backbone  # type: ignore[operator]

    @property
    def questioners(self) -> list[str]:
        return list(self.config.questioners)

    def questioner_ids_for(self, questioners: Union[None, str, Sequence[Optional[str]], Tensor], batch: int
                           ) -> Optional[Tensor]:
        """Indices ``[B]`` for questioner ids (a string for the whole batch, a list, or indices); unknown → 0."""
        if questioners is None:
            return None
        if isinstance(questioners, Tensor):
            return questioners.long()
        index = self.config.questioner_index()
        names = [questioners] * batch if isinstance(questioners, str) else list(questioners)
        if len(names) != batch:
            raise ValueError(f"DualTowerResponder: {len(names)} questioner ids for a batch of {batch}")
        return torch.tensor([index.get(q, 0) if q is not None else 0 for q in names], dtype=torch.long)

    # ------------------------------------------------------------------ forward
    def _drop_questioners(self, ids: Tensor) -> Tensor:
        p = float(self.config.questioner_dropout)
        if not self.training or p <= 0:
            return ids
        drop = torch.rand(ids.shape, device=ids.device) < p
        return torch.where(drop, torch.zeros_like(ids), ids)

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None, labels: Optional[Tensor] = None,
                questioner_ids: Optional[Tensor] = None, cluster_ids: Optional[Tensor] = None,
                prompt_ids: Optional[Tensor] = None, prompt_mask: Optional[Tensor] = None) -> DualTowerOutput:
        """Teacher-forced logits, $L_{LM}$ and $L_{QC}$.

        Args:
            input_ids, attention_mask: ``[B, T]`` prompt + response.
            labels: ``[B, T]`` (``-100`` on the prompt and padding).
            questioner_ids: ``[B]`` indices (0 = unknown); ``None`` runs the backbone alone.
            cluster_ids: ``[B]`` question clusters (``None``: one cluster).
            prompt_ids, prompt_mask: generation prompts; unused here.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        specific = None
        if self.specific is not None and questioner_ids is not None:
            qids = self._drop_questioners(questioner_ids.to(input_ids.device))
            with self.specific.use_questioners(qids):
                logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                specific = self.specific.pooled(attention_mask)  # (B, D)
        else:
            qids = None
            logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        loss_lm = None if labels is None else token_cross_entropy(logits, labels, shift=True)
        loss_qc = valid = None
        if self.contrastive is not None and specific is not None and qids is not None:
            keep = qids > 0
            if int(keep.sum()) > 1:
                views = self.projector(specific[keep]) if self.projector is not None else specific[keep].unsqueeze(1)
                clusters = cluster_ids[keep.to(cluster_ids.device)] if cluster_ids is not None else None
                out = self.contrastive.forward_with_parts(views, qids[keep], clusters)
                loss_qc, valid = out.loss, out.valid_fraction
        loss = None
        if loss_lm is not None:
            loss = loss_lm
            if loss_qc is not None:
                loss = loss + float(self.config.contrastive_weight) * loss_qc
        return DualTowerOutput(loss=loss, loss_lm=loss_lm, loss_contrastive=loss_qc, contrastive_valid=valid,
                               logits=logits, specific=specific)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, batch: Optional[Mapping[str, Tensor]] = None, *,
                 questioner_id: Union[None, str, Sequence[Optional[str]], Tensor] = None, **kwargs: Any) -> Tensor:
        """Generate responses; returns only the new tokens ``[B, T_new]``.

        Args:
            batch: a collator batch (``prompt_ids``/``prompt_mask``, right-padded, and ``questioner_ids``), or
                give ``input_ids`` (and ``attention_mask``, left-padded) as keyword arguments.
            questioner_id: who asks: a questioner id for every row, a list of ids (``None`` or an
                unknown id falls back as ``config.unknown_questioner`` says), or indices; overrides
                the batch's ``questioner_ids``.
            **kwargs: ``generate`` options of transformers (``max_new_tokens``, ``num_beams``...).
        """
        from personakit.models.grag.encoding import left_pad

        inputs = dict(batch or {})
        for name in ("input_ids", "attention_mask", "prompt_ids", "prompt_mask", "questioner_ids"):
            if name in kwargs:
                inputs[name] = kwargs.pop(name)
        for name in ("labels", "cluster_ids"):
            kwargs.pop(name, None)
        if inputs.get("prompt_ids") is not None:
            ids, mask = inputs["prompt_ids"], inputs.get("prompt_mask")
            mask = torch.ones_like(ids) if mask is None else mask
            ids, mask = left_pad(ids, mask, self.pad_token_id)
        elif inputs.get("input_ids") is not None:
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else mask
        else:
            raise ValueError("DualTowerResponder.generate: give a batch with prompt_ids or input_ids")
        qids = self.questioner_ids_for(questioner_id, ids.size(0)) if questioner_id is not None \
            else inputs.get("questioner_ids")
        kwargs.setdefault("pad_token_id", self.pad_token_id)
        if self.specific is not None and qids is not None:
            with self.specific.use_questioners(qids.to(ids.device)):
                out = self.backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
        else:
            out = self.backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
        return out[:, ids.size(1):]

    def make_collator(self, tokenizer: Any = None, **options: Any) -> QuestionerCollator:
        """A :class:`QuestionerCollator` over this model's questioner vocabulary."""
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is None:
            raise ValueError("DualTowerResponder.make_collator: give a tokenizer (the model holds none)")
        return QuestionerCollator(tokenizer, self.config.questioner_index(), **options)

    def respond(self, examples: Sequence[ResponseExample], batch_size: int = 8, collator: Any = None,
                questioner_id: Union[None, str, Sequence[Optional[str]]] = None, **generate_kwargs: Any) -> list[str]:
        """Generate a response text per example (its own ``questioner_id`` unless ``questioner_id`` overrides it)."""
        if self.tokenizer is None:
            raise ValueError("DualTowerResponder.respond needs a tokenizer (from_backbone(..., tokenizer))")
        collator = collator or self.make_collator(with_targets=False)
        device = next(self.parameters()).device
        texts: list[str] = []
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start:start + batch_size])
            batch = {k: v.to(device) for k, v in collator(chunk).items()}
            q = questioner_id if questioner_id is None or isinstance(questioner_id, str) \
                else list(questioner_id)[start:start + batch_size]
            ids = self.generate(batch, questioner_id=q, **generate_kwargs)
            texts += decode_batch(self.tokenizer, ids)
        return texts

    def trainable_parameter_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def added_parameters_per_layer(self) -> int:
        """Parameters the specific stream adds per layer (0 without it)."""
        return 0 if self.specific is None else self.specific.parameters_per_layer()

    # ------------------------------------------------------------------ save / load
    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike], tokenizer: Any = None,
                        map_location: Union[str, torch.device] = "cpu") -> "DualTowerResponder":
        """Load a model written by :meth:`save_pretrained`."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no DualTowerConfig (was the model saved with save_pretrained?)")
        config = DualTowerConfig.from_pretrained(str(directory))
        model = cls(config, tokenizer=load_saved_tokenizer(directory, tokenizer))
        model.load_weights(directory, map_location)
        return model
