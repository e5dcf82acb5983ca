r"""Training loop of :class:`~personakit.models.copersona.CoPersonaModel` (CoPersona Appendix C).

The paper fine-tunes the LLM with LoRA and trains the graph encoder and the soft-prompt
projector end to end on Eq. 14 with AdamW (learning rate $2\times10^{-5}$, weight decay
0.01, betas (0.9, 0.98)), a cosine schedule with warm-up ratio 0.06, gradient clipping
at 1.0, batch 1 with 4 accumulation steps, 10 epochs.

:class:`CoPersonaTrainer` is :class:`~personakit.training.GRAGTrainer` (the same
logging of every loss term to ``train_log.jsonl``, atomic checkpoints through
:mod:`personakit.training.checkpoint`, exact resumption with ``resume_from="latest"``,
deterministic data order, DDP) with the paper's cosine schedule; the model's
``make_collator`` / ``respond`` give the CoPersona inputs.  Departure: the default
learning rate is $2\times10^{-4}$ (LoRA on a 135M model with few steps needs more than
the paper's $2\times10^{-5}$ for a 7B model).
"""

from __future__ import annotations

import torch
from pydantic import Field

from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig
from personakit.training.schedules import cosine_schedule
from personakit.training.trainer import TrainingPlan

__all__ = ["CoPersonaTrainingConfig", "CoPersonaTrainer", "cosine_schedule"]


class CoPersonaTrainingConfig(GRAGTrainingConfig):
    """:class:`~personakit.training.GRAGTrainingConfig` with CoPersona's defaults (Appendix C).

    Example:
        >>> CoPersonaTrainingConfig().adam_betas, CoPersonaTrainingConfig().warmup_ratio
        ((0.9, 0.98), 0.06)
    """

    learning_rate: float = Field(2e-4, gt=0.0, description="AdamW learning rate (paper: 2e-5 for 7B).")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay (paper: 0.01).")
    adam_betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas (paper: 0.9, 0.98).")
    epochs: int = Field(10, ge=1, description="Epochs (paper: 10).")
    batch_size: int = Field(1, ge=1, description="Micro-batch (paper: 1).")
    gradient_accumulation_steps: int = Field(4, ge=1, description="Accumulation (paper: 4).")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="Warm-up fraction of the cosine schedule (paper: 0.06).")
    eval_metrics: list[str] = Field(default_factory=lambda: ["rouge", "bleu", "meteor"],
                                    description="Metrics of evaluate().")


class CoPersonaTrainer(GRAGTrainer):
    """Train a :class:`~personakit.models.copersona.CoPersonaModel` (see the module docstring).

    Example:
        >>> trainer = CoPersonaTrainer(model, CoPersonaTrainingConfig(max_steps=8, output_dir="run"),
        ...                            train_examples=train)  # doctest: +SKIP
        >>> trainer.train(resume_from="latest")  # doctest: +SKIP
    """

    name = "copersona"
    config_class = CoPersonaTrainingConfig

    def build_scheduler(self, optimizer: torch.optim.Optimizer, plan: TrainingPlan
                        ) -> torch.optim.lr_scheduler.LambdaLR:
        """The paper's cosine schedule, warm-up ``round(warmup_ratio * total_steps)`` steps (else ``warmup_steps``)."""
        cfg = self.config
        warmup = int(round(getattr(cfg, "warmup_ratio", 0.0) * plan.total_steps)) or cfg.warmup_steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(plan.total_steps, warmup))
