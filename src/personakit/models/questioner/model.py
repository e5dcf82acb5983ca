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

Checkpoint folder (``save_pretrained``, see :class:`~personakit.models.base.PersonaModel`):
``config.json`` (:class:`~personakit.models.questioner.DualTowerConfig`, the backbone's config
and the questioner vocabulary inside), ``model.safetensors`` (the whole state dict with the
layer wrappers' segment removed; tied tensors stored once and listed in the metadata),
``generation_config.json`` and the tokenizer files.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from personakit.backbones.peft import LoraSettings, is_peft_model, unwrap_peft
from personakit.functional.losses import token_cross_entropy
from personakit.losses.questioner import QuestionerContrastiveLoss
from personakit.models.base import PersonaModel
from personakit.models.padding import left_pad
from personakit.models.questioner.collator import QuestionerCollator
from personakit.models.questioner.config import DualTowerConfig
from personakit.models.questioner.outputs import DualTowerOutput
from personakit.modules.lowrank_specific import LowRankSpecificEncoder, SpecificStreamLayer
from personakit.modules.multiview import MultiViewProjector

__all__ = ["DualTowerResponder"]

QuestionerIds = Union[None, str, Sequence[Optional[str]], Tensor]


class DualTowerResponder(PersonaModel):
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
    Built with :meth:`~personakit.models.base.PersonaModel.from_backbone` (``questioners=``
    and the other :class:`~personakit.models.questioner.DualTowerConfig` fields); a
    ``PeftModel`` backbone needs ``general="lora"`` (the default).

    Args:
        config: the :class:`~personakit.models.questioner.DualTowerConfig`.
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

    config_class = DualTowerConfig
    WRAPPER_TYPE = SpecificStreamLayer
    GENERATE_INPUTS: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "prompt_ids", "prompt_mask",
                                                  "questioner_ids", "labels", "cluster_ids")

    def __init__(self, config: DualTowerConfig, backbone: Optional[nn.Module] = None, tokenizer: Any = None):
        super().__init__(config, backbone, tokenizer)
        base = self.base_model
        self.specific: Optional[LowRankSpecificEncoder] = None
        self.projector: Optional[MultiViewProjector] = None
        self.contrastive: Optional[QuestionerContrastiveLoss] = None
        if config.use_specific:
            self.specific = LowRankSpecificEncoder(self.backbone, num_questioners=len(config.questioners),
                                                   rank=config.rank,
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
    def lora_of(self, config: DualTowerConfig) -> Optional[LoraSettings]:  # type: ignore[override]
        """LoRA only for ``general="lora"``."""
        return config.lora_settings if config.general == "lora" else None

    def prepare_backbone(self, backbone: nn.Module, config: DualTowerConfig) -> nn.Module:  # type: ignore[override]
        """A decoder-only LM; LoRA for ``general="lora"``, every weight frozen for ``"frozen"``."""
        if getattr(unwrap_peft(backbone).config, "is_encoder_decoder", False):
            raise ValueError("DualTowerResponder: the backbone must be a decoder-only causal LM")
        if is_peft_model(backbone) and config.general != "lora":
            raise ValueError(f"DualTowerResponder: the backbone is a PeftModel, so field 'general' must be 'lora', "
                             f"got {config.general!r}")
        backbone = super().prepare_backbone(backbone, config)
        if config.general == "frozen":
            for p in backbone.parameters():
                p.requires_grad_(False)
        return backbone

    # ------------------------------------------------------------------ questioners
    @property
    def questioners(self) -> list[str]:
        return list(self.config.questioners)

    def questioner_ids_for(self, questioners: QuestionerIds, batch: int) -> Optional[Tensor]:
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
            input_ids: ``[B, T]`` prompt + response.
            attention_mask: ``[B, T]`` (all ones when ``None``).
            labels: ``[B, T]`` (``-100`` on the prompt and padding).
            questioner_ids: ``[B]`` indices (0 = unknown); ``None`` runs the backbone alone.
            cluster_ids: ``[B]`` question clusters (``None``: one cluster).
            prompt_ids: generation prompts; unused here.
            prompt_mask: their mask; unused here.
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
        pairs: dict[str, Tensor] = {}
        if self.contrastive is not None and specific is not None and qids is not None:
            keep = qids > 0
            if int(keep.sum()) > 1:
                views = self.projector(specific[keep]) if self.projector is not None else specific[keep].unsqueeze(1)
                clusters = cluster_ids[keep.to(cluster_ids.device)] if cluster_ids is not None else None
                out = self.contrastive.forward_with_parts(views, qids[keep], clusters)
                loss_qc, valid = out.loss, out.valid_fraction
                pairs = self.contrastive.pair_counts(qids[keep], clusters)
        loss = None
        if loss_lm is not None:
            loss = loss_lm
            if loss_qc is not None:
                loss = loss + float(self.config.contrastive_weight) * loss_qc
        return DualTowerOutput(loss=loss, loss_lm=loss_lm, loss_contrastive=loss_qc, contrastive_valid=valid,
                               contrastive_positive_pairs=pairs.get("positive_pairs"),
                               contrastive_negative_pairs=pairs.get("negative_pairs"), logits=logits, specific=specific)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, batch: Optional[Mapping[str, Tensor]] = None, *, questioner_id: QuestionerIds = None,
                 **kwargs: Any) -> Tensor:
        """Generate responses; returns only the new tokens ``[B, T_new]``.

        Args:
            batch: a collator batch (``prompt_ids``/``prompt_mask``, right-padded, and ``questioner_ids``), or
                give ``input_ids`` (and ``attention_mask``, left-padded) as keyword arguments.
            questioner_id: who asks: a questioner id for every row, a list of ids (``None`` or an
                unknown id falls back as ``config.unknown_questioner`` says), or indices; overrides
                the batch's ``questioner_ids``.
            **kwargs: ``generate`` options of transformers (``max_new_tokens``, ``num_beams``...).
        """
        inputs, kwargs = self.generate_inputs(batch, kwargs)
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
        if self.specific is not None and qids is not None:
            with self.specific.use_questioners(qids.to(ids.device)):
                out = self.backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
        else:
            out = self.backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
        return out[:, ids.size(1):]

    def build_collator(self, tokenizer: Any, **options: Any) -> QuestionerCollator:
        """A :class:`~personakit.models.questioner.QuestionerCollator` over this model's questioner vocabulary."""
        return QuestionerCollator(tokenizer, self.config.questioner_index(), **options)

    def chunk_generate_kwargs(self, generate_kwargs: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
        """A per-example ``questioner_id`` list is cut to the chunk (a single id or ``None`` is kept)."""
        q = generate_kwargs.get("questioner_id")
        if q is None or isinstance(q, str):
            return generate_kwargs
        return {**generate_kwargs, "questioner_id": q[start:stop] if isinstance(q, Tensor) else list(q)[start:stop]}

    def added_parameters_per_layer(self) -> int:
        """Parameters the specific stream adds per layer (0 without it)."""
        return 0 if self.specific is None else self.specific.parameters_per_layer()
