r"""Training loop of the questioner-aware :class:`~personakit.models.questioner.DualTowerResponder`.

:class:`QuestionerTrainer` is :class:`~personakit.training.GRAGTrainer` (AdamW, linear
decay, gradient accumulation, multi-process data parallelism, atomic checkpoints through
:mod:`personakit.training.checkpoint`, exact resumption) with three differences:

* **logging**: the model's :class:`~personakit.models.questioner.DualTowerOutput` gives
  $L$, $L_{LM}$ (``loss_lm``), $L_{QC}$ (``loss_contrastive``) and the fraction of views
  with a positive and a negative (``contrastive_valid``), and the pairs of examples with the
  same questioner (``contrastive_positive_pairs``) and contrasted ones (``contrastive_negative_pairs``)
  in the micro-batch; every logging record holds the
  mean of each over the steps since the previous record (``train_log.jsonl`` and
  :attr:`~personakit.training.GRAGTrainer.history`);
* **cluster-grouped batches** (``group_by_cluster=True``): each epoch's order puts the
  examples of one question cluster (``metadata["question_cluster"]``, from
  :meth:`~personakit.modules.QuestionClusterer.assign`) together in micro-batches, so the
  in-batch negatives of the contrastive loss (other questioners, same cluster) exist.
  The order: per cluster a seeded permutation cut into micro-batches of ``batch_size``;
  the full micro-batches of all clusters shuffled; the incomplete ones (one per cluster
  at most) appended at the end.  It depends only on ``(seed, epoch)``, as the base
  trainer's order does, so resumption stays exact;
* **checkpoints** also hold the contrastive loss's queue of past negatives (a set of
  buffers), so a resumed run continues with the same queue and ends with the same weights
  and logs as an uninterrupted one.

Example:
    >>> cfg = QuestionerTrainingConfig(max_steps=20, batch_size=8, output_dir=None)
    >>> cfg.group_by_cluster
    True
    >>> trainer = QuestionerTrainer(model, cfg, train_examples=train)  # doctest: +SKIP
    >>> trainer.train().history[-1]["loss_contrastive"]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from torch import nn

from personakit.modules.question_clusterer import CLUSTER_KEY
from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig
from personakit.training.trainer import TrainableParameters

__all__ = ["QuestionerTrainer", "QuestionerTrainingConfig"]


class QuestionerTrainingConfig(GRAGTrainingConfig):
    """Settings of :class:`QuestionerTrainer`: those of :class:`~personakit.training.GRAGTrainingConfig` and
    ``group_by_cluster``.

    Example:
        >>> QuestionerTrainingConfig(epochs=3).epochs
        3
    """

    group_by_cluster: bool = Field(True, description=(
        "Order each epoch so micro-batches hold examples of one question cluster (negatives exist in-batch)."))


class _CheckpointView(TrainableParameters):
    """The model's trainable parameters and its queue buffers (the same tensors) for a checkpoint."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.buffers_ = nn.Module()
        for name, buf in model.named_buffers():
            if name.split(".")[-1].startswith("queue"):
                self.buffers_.register_buffer(name.replace(".", "/"), buf)


class QuestionerTrainer(GRAGTrainer):
    r"""Train a :class:`~personakit.models.questioner.DualTowerResponder` on $L = L_{LM} + \lambda L_{QC}$.

    Arguments and methods are those of :class:`~personakit.training.GRAGTrainer`
    (``train(resume_from=..., stop_after_step=...)``, ``evaluate``, ``predict``,
    ``save_model``); see the module docstring for what differs.  ``config`` may be a
    :class:`QuestionerTrainingConfig` or a plain ``GRAGTrainingConfig`` (no cluster grouping).
    """

    config_class = QuestionerTrainingConfig

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Cluster-grouped permutation for ``epoch`` (see the module docstring); the base order without grouping."""
        if not getattr(self.config, "group_by_cluster", False):
            return super().epoch_order(epoch)
        rng = np.random.default_rng([self.config.seed, epoch])  # (seed, epoch) only: resumption stays exact
        bs = self.config.batch_size
        by_cluster: dict[int, list[int]] = {}
        for i, ex in enumerate(self.train_examples):
            by_cluster.setdefault(int(ex.metadata.get(CLUSTER_KEY, 0)), []).append(i)
        full: list[list[int]] = []
        partial: list[list[int]] = []
        for cluster in sorted(by_cluster):
            members = [by_cluster[cluster][j] for j in rng.permutation(len(by_cluster[cluster]))]
            for start in range(0, len(members), bs):
                chunk = members[start:start + bs]
                (full if len(chunk) == bs else partial).append(chunk)
        order = [full[j] for j in rng.permutation(len(full))] + partial
        return np.asarray([i for chunk in order for i in chunk], dtype=np.int64)

    def checkpoint_module(self) -> nn.Module:
        """The trainable parameters and the contrastive queue buffers (or the whole model with ``"all"``)."""
        if self.config.checkpoint_weights == "all":
            return self.model
        return _CheckpointView(self.model)
