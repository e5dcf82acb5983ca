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

import math
from typing import Any, Callable, Mapping, Optional

import torch
from pydantic import Field

from personakit.training.grag import GRAGTrainer, GRAGTrainingConfig, TrainingPlan

__all__ = ["CoPersonaTrainingConfig", "CoPersonaTrainer", "cosine_schedule"]

_NAME = "copersona"


def cosine_schedule(total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    r"""LR multiplier: linear warm-up over $w$ steps, then $\tfrac12(1 + \cos(\pi p))$, $p = (s - w) / \max(1, T - w)$.

    Example:
        >>> fn = cosine_schedule(4, warmup_steps=1)
        >>> [round(fn(s), 3) for s in range(4)]
        [0.5, 1.0, 0.75, 0.25]
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"cosine_schedule: total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step + 1) / float(warmup_steps + 1)
        p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * p))

    return factor


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

    def __init__(self, model: torch.nn.Module, config: Optional[CoPersonaTrainingConfig] = None, **kwargs: Any):
        super().__init__(model, config if config is not None else CoPersonaTrainingConfig(), **kwargs)

    def _build_optimizer(self, plan: TrainingPlan) -> None:
        super()._build_optimizer(plan)
        cfg = self.config
        warmup = int(round(getattr(cfg, "warmup_ratio", 0.0) * plan.total_steps)) or cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(plan.total_steps, warmup))

    def _state_extra(self, plan: TrainingPlan) -> dict[str, Any]:
        return {**super()._state_extra(plan), "trainer": _NAME}

    def _check_resume(self, extra: Mapping[str, Any], plan: TrainingPlan, path: Any) -> None:
        from personakit.training.checkpoint import CheckpointError

        if extra.get("trainer") != _NAME:
            raise CheckpointError(f"{path}/trainer_state.json: field 'trainer' is {extra.get('trainer')!r}, "
                                  f"expected {_NAME!r}")
        super()._check_resume({**extra, "trainer": "grag"}, plan, path)
