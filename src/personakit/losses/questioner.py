r"""Questioner-contrastive loss of the questioner-aware responder (Zeng et al., 2024, §4.3–4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import Tensor

from personakit.config import BaseConfig
from personakit.functional.contrastive import info_nce, questioner_masks
from personakit.functional.losses import Reduction
from personakit.losses.base import BaseLoss, LossOutput

__all__ = ["QuestionerContrastiveLoss", "QuestionerContrastiveLossOutput", "QuestionerContrastiveLossConfig"]


@dataclass
class QuestionerContrastiveLossOutput(LossOutput):
    """Terms of :class:`QuestionerContrastiveLoss`.

    Attributes:
        loss: the InfoNCE loss over the valid anchors.
        valid_fraction: fraction of anchors (views) with at least one positive and one negative.
    """

    valid_fraction: Tensor


class QuestionerContrastiveLoss(BaseLoss):
    r"""Questioner-contrastive InfoNCE inside question clusters (Zeng et al., 2024, "Personalized LLM for
    Generating Customized Responses to the Same Query from Different Users", §4.3–4.4).

    Every dialogue $b$ gives $V$ views $z_{b,1}, \dots, z_{b,V}$ of its pooled
    questioner-specific representation (:class:`~personakit.modules.MultiViewProjector`;
    $V = 1$ without multi-view augmentation).  For the anchor $i = (b, v)$:

    * **positives** $P(i)$: every other view whose dialogue has the same questioner
      (the other views of $b$ itself, and all views of other dialogues of $q_b$);
    * **negatives** $N(i)$: every view whose dialogue has another questioner **and the
      same question cluster** $k_b$ (any other questioner when ``use_clusters=False``),
      plus, with a queue, the queued representations of other questioners of that
      cluster;

    $$\mathcal{L}_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)} \log
      \frac{\exp(\cos(z_i, z_p)/\tau)}{\exp(\cos(z_i, z_p)/\tau) + \sum_{n \in N(i)} \exp(\cos(z_i, z_n)/\tau)},$$

    averaged over the anchors that have at least one positive and one negative (the
    others give no term; the loss is ``0`` when no anchor is valid).  The maths is
    :func:`personakit.functional.contrastive.info_nce`.

    **Queue.** With ``queue_size > 0`` the loss keeps, in training mode, a first-in
    first-out queue of past representations (detached; one per dialogue: its first view)
    with their questioner and cluster, used as extra negatives (never as positives),
    as MoCo does.  The queue is a set of buffers (``queue``, ``queue_questioners``,
    ``queue_clusters``, ``queue_ptr``), so it is part of the state dict and of checkpoints.

    The reference code used $\tau = 0.01$, a queue of 512, 10 clusters and a loss weight
    of 0.5 (the weight belongs to the model).

    Args:
        temperature: $\tau$.
        queue_size: length of the queue of past negatives (0: no queue).
        dim: size of the representations (required with a queue).
        use_clusters: restrict the negatives to the anchor's question cluster.
        reduction: ``"mean"`` over the valid anchors, ``"sum"`` or ``"none"`` (``[B·V]``).

    Shapes:
        - embeddings: ``[B, V, D]`` (or ``[B, D]`` for one view)
        - questioners, clusters: ``[B]`` (long)
        - output: scalar

    Example:
        >>> loss = QuestionerContrastiveLoss(temperature=0.1)
        >>> z = torch.tensor([[[1.0, 0.0], [0.9, 0.1]], [[0.0, 1.0], [0.1, 0.9]]])  # 2 dialogues x 2 views
        >>> out = loss.forward_with_parts(z, torch.tensor([3, 7]), torch.tensor([0, 0]))
        >>> round(out.loss.item(), 4), out.valid_fraction.item()  # views agree, the other questioner is far
        (0.0004, 1.0)

    Citation:
        Zeng, Niu, Wu, Lv and Chen (2024). *Personalized LLM for Generating Customized
        Responses to the Same Query from Different Users.* arXiv:2412.11736.
    """

    output_cls: ClassVar[type[LossOutput]] = QuestionerContrastiveLossOutput

    def __init__(self, temperature: float = 0.01, queue_size: int = 0, dim: Optional[int] = None,
                 use_clusters: bool = True, reduction: Reduction = "mean"):
        super().__init__(reduction=reduction)
        if temperature <= 0:
            raise ValueError(f"QuestionerContrastiveLoss: temperature must be > 0, got {temperature}")
        if queue_size < 0:
            raise ValueError(f"QuestionerContrastiveLoss: queue_size must be >= 0, got {queue_size}")
        if queue_size > 0 and (dim is None or dim < 1):
            raise ValueError("QuestionerContrastiveLoss: a queue (queue_size > 0) needs dim, the representation size")
        self.temperature = float(temperature)
        self.queue_size = int(queue_size)
        self.dim = dim
        self.use_clusters = bool(use_clusters)
        if self.queue_size:
            self.register_buffer("queue", torch.zeros(self.queue_size, int(dim)))  # type: ignore[arg-type]
            self.register_buffer("queue_questioners", torch.full((self.queue_size,), -1, dtype=torch.long))
            self.register_buffer("queue_clusters", torch.full((self.queue_size,), -1, dtype=torch.long))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ queue
    def reset_queue(self) -> None:
        """Empty the queue."""
        if self.queue_size:
            self.queue.zero_()
            self.queue_questioners.fill_(-1)
            self.queue_clusters.fill_(-1)
            self.queue_ptr.zero_()

    @torch.no_grad()
    def enqueue(self, representations: Tensor, questioners: Tensor, clusters: Tensor) -> None:
        """Push ``[N, D]`` representations (detached) with their questioners and clusters, oldest out first."""
        if not self.queue_size:
            return
        n = representations.size(0)
        if n == 0:
            return
        if n > self.queue_size:
            representations, questioners, clusters = (
                representations[-self.queue_size:], questioners[-self.queue_size:], clusters[-self.queue_size:])
            n = self.queue_size
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=self.queue.device) + ptr) % self.queue_size
        self.queue[idx] = representations.detach().to(self.queue.dtype)
        self.queue_questioners[idx] = questioners.to(self.queue_questioners.device)
        self.queue_clusters[idx] = clusters.to(self.queue_clusters.device)
        self.queue_ptr.fill_((ptr + n) % self.queue_size)

    # ------------------------------------------------------------------ loss
    def compute_parts(self, embeddings: Tensor, questioners: Tensor,  # type: ignore[override]
                      clusters: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Per-view InfoNCE terms (see the class docstring).

        Args:
            embeddings: ``[B, V, D]`` views (or ``[B, D]``).
            questioners: ``[B]`` questioner indices.
            clusters: ``[B]`` question clusters (``None``: all in one cluster).

        Returns:
            ``{"loss": [B·V], "valid_fraction": [B·V]}`` (``valid_fraction`` holds 0/1 per view).
        """
        if embeddings.dim() == 2:
            embeddings = embeddings.unsqueeze(1)  # (B, 1, D)
        if embeddings.dim() != 3:
            raise ValueError(f"QuestionerContrastiveLoss: embeddings must be [B, V, D] or [B, D], got "
                             f"{tuple(embeddings.shape)}")
        b, v, d = embeddings.shape
        if questioners.shape != (b,):
            raise ValueError(f"QuestionerContrastiveLoss: questioners must be [{b}], got {tuple(questioners.shape)}")
        if clusters is None:
            clusters = torch.zeros_like(questioners)
        elif clusters.shape != (b,):
            raise ValueError(f"QuestionerContrastiveLoss: clusters must be [{b}], got {tuple(clusters.shape)}")
        questioners = questioners.to(embeddings.device)
        clusters = clusters.to(embeddings.device)
        flat = embeddings.reshape(b * v, d)  # (B·V, D), views of a dialogue consecutive
        q = questioners.repeat_interleave(v)  # (B·V,)
        k = clusters.repeat_interleave(v)
        pos, neg = questioner_masks(q, k if self.use_clusters else None)
        candidates = flat
        if self.queue_size:
            filled = self.queue_questioners >= 0
            qq, qk, qz = self.queue_questioners[filled], self.queue_clusters[filled], self.queue[filled]
            q_pos, q_neg = questioner_masks(q, k if self.use_clusters else None, candidate_questioners=qq,
                                            candidate_clusters=qk if self.use_clusters else None)
            candidates = torch.cat([flat, qz.to(flat.dtype)], dim=0)  # (B·V + Q, D)
            pos = torch.cat([pos, torch.zeros_like(q_pos)], dim=1)  # queued items are negatives only
            neg = torch.cat([neg, q_neg], dim=1)
        loss, valid = info_nce(flat, candidates, pos, neg, temperature=self.temperature, reduction="none")
        if self.queue_size and self.training:
            self.enqueue(embeddings[:, 0].detach(), questioners, clusters)
        return {"loss": loss, "valid_fraction": valid.float()}

    def reduce(self, parts):  # type: ignore[override]
        """Mean over the *valid* anchors for ``reduction="mean"`` (not over all anchors)."""
        loss, valid = parts["loss"], parts["valid_fraction"]
        if self.reduction == "mean":
            n = valid.sum()
            value = loss.sum() / n if float(n) > 0 else loss.sum() * 0.0
            return QuestionerContrastiveLossOutput(loss=value, valid_fraction=valid.mean())
        if self.reduction == "sum":
            return QuestionerContrastiveLossOutput(loss=loss.sum(), valid_fraction=valid.mean())
        return QuestionerContrastiveLossOutput(loss=loss, valid_fraction=valid)

    def forward_with_parts(self, embeddings: Tensor, questioners: Tensor,  # type: ignore[override]
                           clusters: Optional[Tensor] = None) -> QuestionerContrastiveLossOutput:
        """The loss and the fraction of valid anchors."""
        return self.reduce(self.compute_parts(embeddings, questioners, clusters))

    def forward(self, embeddings: Tensor, questioners: Tensor,  # type: ignore[override]
                clusters: Optional[Tensor] = None) -> Tensor:
        """The loss only."""
        return self.forward_with_parts(embeddings, questioners, clusters).loss

    @torch.no_grad()
    def pair_counts(self, questioners: Tensor, clusters: Optional[Tensor] = None) -> dict[str, Tensor]:
        r"""How many positive and negative pairs a batch of dialogues gives this loss (views and queue aside).

        A diagnostic of the in-batch signal: $L_{QC}$ has a positive only where two
        dialogues of the batch share a questioner, or where multi-view augmentation gives
        every dialogue $V \ge 2$ views of itself (those view pairs are not counted here).
        A batch with no positive pair and one view per dialogue gives no term at all.

        Args:
            questioners: ``[B]`` questioner indices of the dialogues (every row counts; the
                model passes only the rows of known questioners).
            clusters: ``[B]`` question clusters (``None``: one cluster).

        Returns:
            ``{"positive_pairs", "negative_pairs", "rows_with_positive"}``, 0-dim float tensors:
            unordered pairs of different rows with the same questioner; unordered pairs with
            different questioners (and, with ``use_clusters``, the same cluster), the pairs
            the loss contrasts; rows that share their questioner with another row.

        Example:
            >>> loss = QuestionerContrastiveLoss()
            >>> c = loss.pair_counts(torch.tensor([1, 1, 2, 3]), torch.tensor([0, 0, 0, 1]))
            >>> {k: int(v) for k, v in c.items()}
            {'positive_pairs': 1, 'negative_pairs': 2, 'rows_with_positive': 2}
        """
        if questioners.dim() != 1:
            raise ValueError(f"QuestionerContrastiveLoss.pair_counts: questioners must be [B], got "
                             f"{tuple(questioners.shape)}")
        if clusters is not None and clusters.shape != questioners.shape:
            raise ValueError(f"QuestionerContrastiveLoss.pair_counts: clusters must be {tuple(questioners.shape)}, "
                             f"got {tuple(clusters.shape)}")
        pos, neg = questioner_masks(questioners, clusters.to(questioners.device) if (
            clusters is not None and self.use_clusters) else None)  # (B, B) each
        return {"positive_pairs": pos.sum().float() / 2, "negative_pairs": neg.sum().float() / 2,
                "rows_with_positive": pos.any(dim=1).sum().float()}

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, queue_size={self.queue_size}, dim={self.dim}, "
                f"use_clusters={self.use_clusters}, reduction={self.reduction!r}")


class QuestionerContrastiveLossConfig(BaseConfig):
    """Config of :class:`QuestionerContrastiveLoss` (its weight belongs to the model config).

    Example:
        >>> QuestionerContrastiveLossConfig(queue_size=512, dim=64).build().queue.shape
        torch.Size([512, 64])
    """

    _target_ = QuestionerContrastiveLoss

    temperature: float = Field(0.01, gt=0.0, description="InfoNCE temperature $\\tau$ (reference code: 0.01).")
    queue_size: int = Field(0, ge=0, description=(
        "Length of the queue of past negatives (reference code: 512; 0: no queue)."))
    dim: Optional[int] = Field(None, ge=1, description=(
        "Size of the representations (required when ``queue_size > 0``)."))
    use_clusters: bool = Field(True, description=(
        "Restrict the negatives to the anchor's question cluster (the paper's clustering)."))
    reduction: Literal["mean", "sum", "none"] = Field("mean", description=(
        "``\"mean\"`` over the valid anchors, ``\"sum\"`` or ``\"none\"``."))

    @model_validator(mode="after")
    def _check(self) -> "QuestionerContrastiveLossConfig":
        if self.queue_size and self.dim is None:
            raise ValueError("queue_size > 0 needs dim")
        return self
