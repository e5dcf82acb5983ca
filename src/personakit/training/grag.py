r"""Training loop of the GRAG models (PreSFT, PreGRAG, PostGRAG) on Hugging Face Accelerate.

GRAG (Liu et al., 2026, §4.3) trains every model with AdamW, the learning rate
decaying linearly to 50% of its initial value by the final step, and minimises

$$L = L_P + \alpha L_G + \beta L_{CJEPA}$$

(PreSFT: $L = L_P$; PreGRAG: $\alpha = 0$).  :class:`GRAGTrainer` runs that recipe:

* **every loss term is logged**: the model's :class:`~personakit.models.grag.GRAGOutput`
  gives $L$, $L_P$, $L_G$, $L_{CJEPA}$; each logging step records their mean over the
  steps since the previous record (plus ``lr``, ``grad_norm``, ``step``, ``epoch``) in
  :attr:`GRAGTrainer.history` and appends it as one JSON line to
  ``output_dir/train_log.jsonl`` (one ``write`` of a whole line, fsynced);
* **evaluation** with the foundation metrics (:func:`~personakit.eval.evaluate_texts`
  on generated responses; bits per character of the references under the model's
  teacher-forced likelihood; the teacher-forced loss terms);
* **atomic checkpoints** through :mod:`personakit.training.checkpoint` (trainable
  weights, optimizer, scheduler, RNG streams, data position, logs), and **exact
  resumption**: a run stopped (``stop_after_step``) or killed and resumed from its
  latest checkpoint ends with the same weights and the same logged losses as an
  uninterrupted run, bit for bit on the same hardware;
* **multi-process data parallelism** through ``torchrun --nproc_per_node=N script.py`` or
  ``accelerate launch --multi_gpu --num_processes N script.py`` (DDP; ``gloo`` on CPU,
  ``nccl`` on GPUs).  On a CPU-only machine both start N local processes with ``gloo``;
  note that ``accelerate launch --cpu --num_processes N`` (Accelerate 1.x) starts a single
  process unless an MPI host file is given.

Determinism.  The data order of epoch $e$ is a permutation drawn from
``numpy.random.default_rng([seed, e])`` and the torch generator is re-seeded at the
start of every optimizer step from ``(seed, step, rank)`` (dropout masks).  Neither
depends on what ran before, so a resumed run, or one with evaluations inserted, sees
exactly the batches and masks of an uninterrupted one.

Multi-process semantics.  ``batch_size`` is per process and micro-batch.  One
optimizer step consumes ``batch_size * gradient_accumulation_steps * world_size``
examples of the epoch order; they are split into consecutive, balanced shares, one
per rank (:func:`~personakit.training.distributed.rank_slice`), each cut into
micro-batches.  Gradients are weighted by micro-batch size, so the step's gradient is
the size-weighted mean of the micro-batch losses' gradients, whatever the number of
processes: two processes with ``gradient_accumulation_steps=1`` compute the same update
as one process with ``gradient_accumulation_steps=2`` (up to float rounding).
Logged losses are reduced over the ranks (identical on every rank).  Evaluation
(:meth:`GRAGTrainer.evaluate`) runs on the main process and its result is broadcast;
every process must call it (the trainer does).  Checkpoints, the log file and
:meth:`GRAGTrainer.save_model` are written by the main process only.

Example:
    >>> from personakit.models.grag import PostGRAG  # doctest: +SKIP
    >>> model = PostGRAG.from_backbone("minilm", alpha=0.5, beta=0.05)  # doctest: +SKIP
    >>> config = GRAGTrainingConfig(output_dir="runs/postgrag", epochs=20, learning_rate=1e-4)
    >>> trainer = GRAGTrainer(model, config, train_examples=train, eval_examples=dev)  # doctest: +SKIP
    >>> result = trainer.train(resume_from="latest")  # doctest: +SKIP
    >>> result.final_metrics["rouge2"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from personakit.config import BaseConfig, atomic_write_text
from personakit.training import distributed as dist_utils
from personakit.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from personakit.types import ResponseExample

__all__ = [
    "GRAGTrainingConfig",
    "GRAGTrainer",
    "TrainResult",
    "TrainingPlan",
    "TrainerCallback",
    "linear_decay_schedule",
    "LOG_FILE",
    "MODEL_METRICS",
]

LOG_FILE = "train_log.jsonl"
"""Name of the JSON-lines log inside ``output_dir`` (``{"kind": "train" | "eval", "step": ..., ...}``)."""

MODEL_METRICS = ("bpc", "loss")
"""Evaluation metrics computed from the model's teacher-forced pass (not from generated text):
``"bpc"`` (bits per character of the references) and ``"loss"`` (the loss terms)."""

_TRAINER_NAME = "grag"
_RESUME_FIELDS = ("learning_rate", "final_lr_fraction", "warmup_steps", "weight_decay", "epochs", "max_steps",
                  "batch_size", "gradient_accumulation_steps", "seed", "checkpoint_weights")


# ------------------------------------------------------------------------- schedule
def linear_decay_schedule(total_steps: int, final_fraction: float = 0.5, warmup_steps: int = 0
                          ) -> Callable[[int], float]:
    r"""LR multiplier of step $s$ (0-based): optional linear warm-up, then linear decay to ``final_fraction``.

    $$\lambda(s) = \begin{cases} \frac{s+1}{w+1} & s < w \\
    1 - (1 - f)\,\frac{s - w}{\max(1,\, T - 1 - w)} & s \ge w \end{cases}$$

    so the first step after warm-up uses the full learning rate and the final step
    ($s = T - 1$) uses exactly $f$ times it (GRAG: $f = 0.5$, "decaying linearly to 50% of
    its initial value").  Steps beyond $T - 1$ keep $f$.

    Args:
        total_steps: $T$, the number of optimizer steps.
        final_fraction: $f \in [0, 1]$.
        warmup_steps: $w$ (0: none).

    Example:
        >>> fn = linear_decay_schedule(5, 0.5)
        >>> [fn(s) for s in range(5)]
        [1.0, 0.875, 0.75, 0.625, 0.5]
    """
    if total_steps < 1:
        raise ValueError(f"linear_decay_schedule: total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"linear_decay_schedule: final_fraction must be in [0, 1], got {final_fraction}")
    if warmup_steps < 0:
        raise ValueError(f"linear_decay_schedule: warmup_steps must be >= 0, got {warmup_steps}")
    span = max(1, total_steps - 1 - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return float(step + 1) / float(warmup_steps + 1)
        progress = min(1.0, float(step - warmup_steps) / float(span))
        return 1.0 - (1.0 - final_fraction) * progress

    return factor


# --------------------------------------------------------------------------- config
class GRAGTrainingConfig(BaseConfig):
    """Settings of :class:`GRAGTrainer` (paper defaults where the paper gives one).

    Example:
        >>> cfg = GRAGTrainingConfig(max_steps=100, eval_metrics=["rouge", "bpc"])
        >>> cfg.final_lr_fraction, cfg.learning_rate
        (0.5, 0.0001)
    """

    output_dir: Optional[str] = Field(None, description="Folder of checkpoints and the JSONL log (None: none).")
    """Folder for ``checkpoint-*`` subfolders and ``train_log.jsonl``; ``None`` writes nothing
    (and resuming is impossible)."""
    overwrite_output_dir: bool = Field(False, description="Fresh start: delete existing checkpoints first.")
    """A fresh start (``resume_from=None``) in an ``output_dir`` that already holds checkpoints
    is an error unless this is set, in which case those checkpoints and the log are deleted."""
    learning_rate: float = Field(1e-4, gt=0.0, description="Initial AdamW learning rate (paper: 1e-3/1e-4/1e-5).")
    """Initial (peak) learning rate of AdamW (paper grid: $10^{-3}$, $10^{-4}$, $10^{-5}$)."""
    final_lr_fraction: float = Field(0.5, ge=0.0, le=1.0, description="LR at the final step / initial LR (paper: 0.5).")
    """The learning rate decays linearly to this fraction of its initial value at the final
    step (paper: 50%); see :func:`linear_decay_schedule`."""
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps before the decay (paper: 0).")
    """Optimizer steps of linear warm-up before the decay (not in the paper: 0)."""
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay (biases and norms excluded).")
    """Decoupled weight decay of AdamW, applied to weight matrices only (not to biases,
    norm weights or other 1-d parameters)."""
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    """AdamW $(\\beta_1, \\beta_2)$."""
    adam_epsilon: float = Field(1e-8, gt=0.0, description="AdamW epsilon.")
    """AdamW $\\epsilon$."""
    epochs: int = Field(20, ge=1, description="Passes over the training examples (paper: 20).")
    """Passes over the training examples (paper: 20); ignored when ``max_steps`` is set."""
    max_steps: Optional[int] = Field(None, ge=1, description="Total optimizer steps (None: from epochs).")
    """Total optimizer steps; ``None`` derives it from ``epochs`` and the data size."""
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch and process.")
    """Examples per forward pass, per process."""
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step and process.")
    """Micro-batches accumulated per optimizer step on each process."""
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description="Gradient clipping norm (None: off).")
    """Clip the global gradient norm to this value; ``None`` disables clipping (the norm is still logged)."""
    seed: int = Field(0, ge=0, description="Seed of the data order and of the per-step RNG.")
    """Seeds the data order (per epoch) and the torch generator (per step, per rank)."""
    logging_steps: int = Field(10, ge=1, description="Record the mean loss terms every N steps.")
    """Every this many steps (and at the last step) one record with the mean of every loss
    term over the steps since the previous record is added to the history and the log."""
    eval_steps: Optional[int] = Field(None, ge=1, description="Evaluate every N steps (None: off).")
    """Evaluate on ``eval_examples`` every this many steps (``None``: only at epoch ends, if enabled)."""
    eval_at_epoch_end: bool = Field(True, description="Evaluate at the end of every epoch.")
    """Evaluate on ``eval_examples`` after each epoch's last step."""
    save_steps: Optional[int] = Field(None, ge=1, description="Checkpoint every N steps (None: every epoch).")
    """Checkpoint every this many steps; ``None``: at the end of every epoch.  The final step
    (and a ``stop_after_step`` stop) is always saved."""
    keep_last: Optional[int] = Field(2, ge=1, description="Checkpoints kept (None: all).")
    """How many checkpoints to keep (newest first); ``None`` keeps all."""
    checkpoint_weights: Literal["trainable", "all"] = Field(
        "trainable", description="Save the trainable parameters only, or the whole state dict.")
    """``"trainable"``: only parameters with ``requires_grad`` (LoRA: adapters and extractors;
    the frozen weights come from the model you rebuild before resuming); ``"all"``: the
    model's whole state dict (buffers included)."""
    eval_metrics: list[str] = Field(["char_f1", "rouge", "bleu"], min_length=1,
                                    description="Metric names (evaluate_texts names, 'bpc', 'loss').")
    """Names understood by :func:`~personakit.eval.evaluate_texts` (``"char_f1"``, ``"rouge"``,
    ``"bleu"``, ``"meteor"``, ``"bertscore"``, ...) plus ``"bpc"`` (bits per character of the
    references under the model) and ``"loss"`` (teacher-forced loss terms)."""
    eval_metric_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-metric options for evaluate_texts.")
    """Options per text metric, e.g. ``{"bertscore": {"model": "minilm"}}``."""
    eval_batch_size: int = Field(16, ge=1, description="Examples per generation / scoring batch.")
    """Examples per batch during evaluation and prediction."""
    max_new_tokens: int = Field(32, ge=1, description="Generated tokens per response at evaluation.")
    """Maximum generated tokens per response (evaluation and :meth:`GRAGTrainer.predict`)."""
    num_beams: int = Field(1, ge=1, description="Beams at evaluation (1: greedy).")
    """Beam width of evaluation generation (1: greedy)."""
    generation_options: dict[str, Any] = Field(default_factory=dict,
                                               description="Extra keyword arguments of generate().")
    """Extra keyword arguments for the model's ``generate`` (``no_repeat_ngram_size``, ...)."""
    early_stopping_patience: Optional[int] = Field(
        None, ge=1, description="Stop after this many evaluations without improvement (None: off).")
    """Training to a plateau: stop once ``metric_for_best_model`` on ``eval_examples`` has not
    improved on its best value by more than ``early_stopping_threshold`` (relative) for this many
    consecutive evaluations (``None``: run every step).  The learning-rate schedule stays that of
    the full run (``max_steps`` / ``epochs`` is the budget)."""
    early_stopping_threshold: float = Field(
        0.01, ge=0.0, description="Relative improvement that counts (0.01: 1%).")
    """An evaluation improves on the best value when it is better by more than this fraction of it."""
    metric_for_best_model: str = Field("loss_p", description="Eval metric that decides the best step.")
    """The evaluation metric that early stopping and ``load_best_model_at_end`` watch (``"loss_p"``:
    the teacher-forced $L_P$ on ``eval_examples``, which needs ``"loss"`` in ``eval_metrics``;
    ``"bpc"``, ``"rouge1"``...)."""
    greater_is_better: Optional[bool] = Field(None, description="Direction of the metric (None: from its name).")
    """Whether a larger ``metric_for_best_model`` is better; ``None``: ``False`` for losses and
    ``"bpc"``, ``True`` otherwise."""
    load_best_model_at_end: bool = Field(False, description="Restore the best evaluated weights at the end.")
    """At the end of training, put back the trainable weights of the best evaluation (kept in
    memory and, with ``output_dir``, in ``output_dir/best``, so a resumed run still has them)."""
    mixed_precision: Literal["no", "bf16"] = Field("no", description="Accelerate mixed precision.")
    """``"bf16"`` runs the forward pass under bfloat16 autocast (no loss scaling needed)."""
    use_cpu: bool = Field(False, description="Force the CPU even when a GPU is present.")
    """Train on the CPU even when an accelerator is available."""
    ddp_find_unused_parameters: bool = Field(
        True, description="DDP: tolerate parameters without gradient (e.g. SE_G when alpha = 0).")
    """Passed to DDP: needed when some parameters get no gradient in a step (PostGRAG's null-style
    extractor when $\\alpha = 0$); set ``False`` for a little speed when every parameter is used."""
    progress: bool = Field(True, description="Show a tqdm progress bar (main process).")
    """Show a tqdm progress bar on the main process."""

    @field_validator("eval_metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from personakit.eval import METRICS

        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"metric {name!r} is listed twice")
            seen.add(name)
            if name not in MODEL_METRICS and name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; use {list(MODEL_METRICS)} or one of {METRICS.names()}")
        return value

    @property
    def watches_loss(self) -> bool:
        """Whether ``metric_for_best_model`` is a loss term (computed by the ``"loss"`` eval metric)."""
        return self.metric_for_best_model in ("loss", "loss_p", "loss_g", "loss_cjepa")

    @property
    def best_is_greater(self) -> bool:
        """The direction of ``metric_for_best_model`` (``greater_is_better`` or from its name)."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not (self.watches_loss or self.metric_for_best_model == "bpc")

    @model_validator(mode="after")
    def _check(self) -> "GRAGTrainingConfig":
        if self.early_stopping_patience is not None or self.load_best_model_at_end:
            needed = "loss" if self.watches_loss else self.metric_for_best_model
            if needed not in self.eval_metrics and not (needed in ("rouge1", "rouge2", "rougeL")
                                                        and "rouge" in self.eval_metrics):
                raise ValueError(f"metric_for_best_model {self.metric_for_best_model!r} needs {needed!r} in "
                                 f"eval_metrics (got {self.eval_metrics})")
        for key in self.eval_metric_options:
            if key not in self.eval_metrics or key in MODEL_METRICS:
                raise ValueError(f"eval_metric_options: options for {key!r}, which is not a requested text metric "
                                 f"(eval_metrics={self.eval_metrics})")
        return self


# ---------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """What :meth:`GRAGTrainer.train` returns.

    Attributes:
        history: one record per logging step: ``step``, ``epoch`` (fractional), ``lr``
            (the learning rate of that step's update), ``grad_norm``, and the mean of
            every loss term the model computed (``loss``, ``loss_p``, ``loss_g``,
            ``loss_cjepa``) over the steps since the previous record.
        eval_history: one record per evaluation: ``step``, ``epoch`` and the metrics.
        final_metrics: metrics on ``eval_examples`` after the final step (``{}`` without
            eval examples, or when the run stopped early).
        global_step: optimizer steps done.
        total_steps: optimizer steps of the full run.
        checkpoint: the last checkpoint written by this call (``None``: none).
        stopped_early: whether early stopping ended the run (the dev metric reached a plateau).
        best_step, best_metric: the evaluation with the best ``metric_for_best_model``
            (``None`` without evaluations).
    """

    history: list[dict[str, Any]]
    eval_history: list[dict[str, Any]]
    final_metrics: dict[str, float]
    global_step: int
    total_steps: int
    checkpoint: Optional[Path] = None
    stopped_early: bool = False
    best_step: Optional[int] = None
    best_metric: Optional[float] = None

    @property
    def completed(self) -> bool:
        """Whether the run is over: it reached its final step or stopped early on a plateau."""
        return self.global_step >= self.total_steps or self.stopped_early


class TrainerCallback:
    """Hooks called by :class:`GRAGTrainer` on every process (check ``trainer.is_main_process``).

    Override what you need; a plain callable passed as a callback is called as ``on_log``.
    """

    def on_train_begin(self, trainer: "GRAGTrainer") -> None:
        """Before the first step of :meth:`GRAGTrainer.train` (after a resume)."""

    def on_step_end(self, trainer: "GRAGTrainer", step: int) -> None:
        """After optimizer step ``step`` (1-based), before logging, evaluation and saving."""

    def on_log(self, trainer: "GRAGTrainer", record: dict[str, Any]) -> None:
        """A training-history record was added."""

    def on_evaluate(self, trainer: "GRAGTrainer", record: dict[str, Any]) -> None:
        """An evaluation record was added."""

    def on_save(self, trainer: "GRAGTrainer", path: Path) -> None:
        """A checkpoint was written (main process: its path; the others get it too)."""

    def on_train_end(self, trainer: "GRAGTrainer", result: TrainResult) -> None:
        """At the end of :meth:`GRAGTrainer.train`."""


class _FunctionCallback(TrainerCallback):
    def __init__(self, fn: Callable[[dict[str, Any]], Any]):
        self.fn = fn

    def on_log(self, trainer: "GRAGTrainer", record: dict[str, Any]) -> None:
        self.fn(record)


# --------------------------------------------------------------------------- helpers
class _TrainableParameters(nn.Module):
    """A view of a model's trainable parameters (the same tensors), so checkpoints hold only them.

    Loading a state dict into it copies into the model's parameters in place.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.params = nn.ParameterDict(
            {name.replace(".", "/"): p for name, p in model.named_parameters() if p.requires_grad})


class _JsonlLog:
    """Append-only JSON-lines file; each record is one ``write`` of a whole line, fsynced."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """Complete records (a torn last line from a killed writer is dropped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def truncate_after(self, step: int) -> None:
        """Keep the records of steps <= ``step`` (rewritten atomically)."""
        kept = [r for r in self.records() if isinstance(r.get("step"), int) and r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))

    def reset(self) -> None:
        atomic_write_text(self.path, "")


def _examples_digest(examples: Sequence[ResponseExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex.model_dump_json().encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _step_seed(seed: int, step: int, rank: int) -> int:
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32 | int(state[1])) % (2**63)


def _check_examples(examples: Any, what: str) -> list[ResponseExample]:
    if examples is None:
        raise ValueError(f"GRAGTrainer: {what} is None")
    items = list(examples)
    for i, ex in enumerate(items):
        if not isinstance(ex, ResponseExample):
            raise TypeError(f"GRAGTrainer: {what}[{i}] is a {type(ex).__name__}, expected ResponseExample")
    return items


@dataclass
class TrainingPlan:
    """Length of a run (:meth:`GRAGTrainer.plan`).

    Attributes:
        n_examples: training examples.
        world_size: processes.
        per_step: examples per optimizer step over all processes
            (``batch_size * gradient_accumulation_steps * world_size``).
        steps_per_epoch: ``ceil(n_examples / per_step)``.
        total_steps: ``max_steps``, or ``epochs * steps_per_epoch``.
    """

    n_examples: int
    world_size: int
    per_step: int
    steps_per_epoch: int
    total_steps: int


# --------------------------------------------------------------------------- trainer
class GRAGTrainer:
    r"""Train a GRAG model (:class:`~personakit.models.grag.PreSFT`, ``PreGRAG``, ``PostGRAG``).

    GRAG §4.3: AdamW on $L = L_P + \alpha L_G + \beta L_{CJEPA}$ with the learning rate
    decaying linearly to 50% of its initial value (see the module docstring for logging,
    checkpoints, determinism and multi-process behaviour).

    Args:
        model: the GRAG model; its ``forward(**batch)`` returns a
            :class:`~personakit.models.grag.GRAGOutput` with ``loss``.
        config: :class:`GRAGTrainingConfig` (default settings when ``None``).
        train_examples: :class:`~personakit.types.ResponseExample` list (with
            ``generic_response`` for the methods that read $R_G$).
        eval_examples: examples for :meth:`evaluate` during and after training.
        collator: turns a list of examples into a training batch (default:
            ``model.make_collator()``); evaluation generation uses a copy with
            ``with_targets=False``.
        callbacks: :class:`TrainerCallback` objects, or callables called with each
            training-history record.
        accelerator: an ``accelerate.Accelerator`` to use (default: one built from the
            config: ``use_cpu``, ``mixed_precision``, DDP options).

    Attributes:
        history, eval_history: as in :class:`TrainResult` (restored on resume).
        global_step: optimizer steps done.
        accelerator: the Accelerate object (``num_processes``, ``process_index``, ``device``).

    Example:
        >>> trainer = GRAGTrainer(model, GRAGTrainingConfig(max_steps=10, output_dir="run"),
        ...                       train_examples=train)  # doctest: +SKIP
        >>> result = trainer.train(stop_after_step=4)  # doctest: +SKIP
        >>> result = trainer.train(resume_from="latest")  # same weights as one 10-step run  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, config: Optional[GRAGTrainingConfig] = None, *,
                 train_examples: Sequence[ResponseExample],
                 eval_examples: Optional[Sequence[ResponseExample]] = None,
                 collator: Optional[Callable[[list[ResponseExample]], dict[str, Tensor]]] = None,
                 callbacks: Optional[Sequence[Union[TrainerCallback, Callable[[dict[str, Any]], Any]]]] = None,
                 accelerator: Any = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"GRAGTrainer: model must be an nn.Module (a GRAG model), got {type(model).__name__}")
        self.config = config if config is not None else GRAGTrainingConfig()
        if not isinstance(self.config, GRAGTrainingConfig):
            raise TypeError(f"GRAGTrainer: config must be a GRAGTrainingConfig, got {type(self.config).__name__}")
        self.train_examples = _check_examples(train_examples, "train_examples")
        if not self.train_examples:
            raise ValueError("GRAGTrainer: train_examples is empty")
        self.eval_examples = None if eval_examples is None else _check_examples(eval_examples, "eval_examples")
        if collator is None:
            make = getattr(model, "make_collator", None)
            if not callable(make):
                raise ValueError("GRAGTrainer: give a collator (the model has no make_collator())")
            collator = make()
        self.collator = collator
        self.callbacks: list[TrainerCallback] = [
            cb if isinstance(cb, TrainerCallback) else _FunctionCallback(cb) for cb in (callbacks or [])]
        for i, cb in enumerate(self.callbacks):
            if isinstance(cb, _FunctionCallback) and not callable(cb.fn):
                raise TypeError(f"GRAGTrainer: callbacks[{i}] is neither a TrainerCallback nor callable")

        if accelerator is None:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs

            accelerator = Accelerator(
                cpu=self.config.use_cpu, mixed_precision=self.config.mixed_precision,
                kwargs_handlers=[DistributedDataParallelKwargs(
                    find_unused_parameters=self.config.ddp_find_unused_parameters)],
            )
        self.accelerator = accelerator
        self.model = model
        self.wrapped = accelerator.prepare_model(model)  # DDP wrapper under multi-process launches
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.global_step = 0
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None
        self._pending: dict[str, float] = {}
        self._log = _JsonlLog(Path(self.config.output_dir) / LOG_FILE) if self.config.output_dir else None

    # ------------------------------------------------------------------ properties
    @property
    def is_main_process(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def plan(self) -> TrainingPlan:
        """Run length: examples per optimizer step (all processes), steps per epoch, total steps."""
        cfg = self.config
        world = self.world_size
        per_step = cfg.batch_size * cfg.gradient_accumulation_steps * world
        n = len(self.train_examples)
        steps_per_epoch = math.ceil(n / per_step)
        total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
        return TrainingPlan(n, world, per_step, steps_per_epoch, total)

    # ------------------------------------------------------------------ data
    def epoch_order(self, epoch: int) -> np.ndarray:
        """Permutation of the training examples for ``epoch`` (0-based; depends only on seed and epoch)."""
        return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train_examples))

    def step_indices(self, step: int, plan: Optional[TrainingPlan] = None) -> list[int]:
        """Indices of the examples of optimizer step ``step`` (0-based) over all processes.

        The last step of an epoch may be smaller; when it has fewer examples than
        processes it is topped up from the start of the epoch so every rank gets one.
        """
        plan = plan or self.plan()
        epoch, pos = divmod(step, plan.steps_per_epoch)
        order = self.epoch_order(epoch)
        idx = [int(i) for i in order[pos * plan.per_step:(pos + 1) * plan.per_step]]
        k = 0
        while len(idx) < plan.world_size:
            idx.append(int(order[k % len(order)]))
            k += 1
        return idx

    def _micro_batches(self, step: int, plan: TrainingPlan) -> tuple[list[list[ResponseExample]], int]:
        idx = self.step_indices(step, plan)
        mine = idx[dist_utils.rank_slice(len(idx), plan.world_size, self.accelerator.process_index)]
        bs = self.config.batch_size
        micros = [[self.train_examples[i] for i in mine[s:s + bs]] for s in range(0, len(mine), bs)]
        return micros, len(idx)

    def _to_device(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in batch.items()}

    # ------------------------------------------------------------------ optimisation
    def _build_optimizer(self, plan: TrainingPlan) -> None:
        cfg = self.config
        decay, no_decay = [], []
        for _, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        if not decay and not no_decay:
            raise ValueError(f"GRAGTrainer: {type(self.model).__name__} has no trainable parameters")
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate,
                                           betas=tuple(cfg.adam_betas), eps=cfg.adam_epsilon)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_decay_schedule(plan.total_steps, cfg.final_lr_fraction, cfg.warmup_steps))

    def _checkpoint_module(self) -> nn.Module:
        return self.model if self.config.checkpoint_weights == "all" else _TrainableParameters(self.model)

    def _train_step(self, plan: TrainingPlan) -> dict[str, float]:
        assert self.optimizer is not None and self.scheduler is not None
        step = self.global_step
        torch.manual_seed(_step_seed(self.config.seed, step, self.accelerator.process_index))
        micros, n_step = self._micro_batches(step, plan)
        world = plan.world_size
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for i, micro in enumerate(micros):
            batch = self._to_device(self.collator(micro))
            last = i == len(micros) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.wrapped)
            with sync:
                out = self.wrapped(**batch)
                loss = getattr(out, "loss", None)
                if loss is None:
                    raise ValueError(f"GRAGTrainer: {type(self.model).__name__}.forward returned no loss; "
                                     "the collator must produce labels")
                weight = len(micro) / n_step
                # DDP averages gradients over the ranks: scale by world so the sum over all micro-batches is kept
                self.accelerator.backward(loss * (weight * world))
            terms = out.losses() if callable(getattr(out, "losses", None)) else {"loss": float(loss.detach())}
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value * weight
        keys = sorted(sums)
        if world > 1:  # same keys on every rank (they depend on the model's config only)
            sums = dict(zip(keys, dist_utils.all_reduce_sum([sums[k] for k in keys], self.device)))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        return {"lr": lr, "grad_norm": grad_norm, **{k: sums[k] for k in keys}}

    def _flush_log(self, plan: TrainingPlan) -> Optional[dict[str, Any]]:
        if not self._pending:
            return None
        n = self._pending.pop("_n")
        lr = self._pending.pop("_lr")
        record: dict[str, Any] = {"step": self.global_step, "epoch": self.global_step / plan.steps_per_epoch,
                                  "lr": lr}
        record.update({k: v / n for k, v in self._pending.items()})
        self._pending = {}
        self.history.append(record)
        if self._log is not None and self.is_main_process:
            self._log.append({"kind": "train", **record})
        for cb in self.callbacks:
            cb.on_log(self, record)
        return record

    def _accumulate(self, values: Mapping[str, float]) -> None:
        pending = self._pending
        pending["_n"] = pending.get("_n", 0) + 1
        pending["_lr"] = values["lr"]
        for key, value in values.items():
            if key != "lr":
                pending[key] = pending.get(key, 0.0) + value

    # ------------------------------------------------------------------ checkpoints
    def _state_extra(self, plan: TrainingPlan) -> dict[str, Any]:
        epoch, pos = divmod(self.global_step, plan.steps_per_epoch)
        return {
            "trainer": _TRAINER_NAME, "model_class": type(self.model).__name__, "config": self.config.to_dict(),
            "world_size": plan.world_size, "n_examples": plan.n_examples,
            "examples_digest": _examples_digest(self.train_examples), "total_steps": plan.total_steps,
            "data_position": {"epoch": epoch, "step_in_epoch": pos}, "history": self.history,
            "eval_history": self.eval_history, "pending_log": self._pending,
        }

    def _save(self, plan: TrainingPlan) -> Optional[Path]:
        if self.config.output_dir is None:
            return None
        path: Optional[Path] = None
        if self.is_main_process:
            path = save_checkpoint(self.config.output_dir, step=self.global_step,
                                   modules={"model": self._checkpoint_module()}, optimizer=self.optimizer,
                                   scheduler=self.scheduler, extra=self._state_extra(plan),
                                   keep_last=self.config.keep_last)
        self.accelerator.wait_for_everyone()
        path = Path(dist_utils.broadcast_object(str(path) if path is not None else None))
        for cb in self.callbacks:
            cb.on_save(self, path)
        return path

    def _check_resume(self, extra: Mapping[str, Any], plan: TrainingPlan, path: Path) -> None:
        where = path / "trainer_state.json"
        if extra.get("trainer") != _TRAINER_NAME:
            raise CheckpointError(f"{where}: field 'trainer' is {extra.get('trainer')!r}, expected {_TRAINER_NAME!r}")
        if extra.get("model_class") != type(self.model).__name__:
            raise CheckpointError(f"{where}: field 'model_class' is {extra.get('model_class')!r}, "
                                  f"but the model is a {type(self.model).__name__}")
        if extra.get("n_examples") != plan.n_examples or \
                extra.get("examples_digest") != _examples_digest(self.train_examples):
            raise CheckpointError(f"{where}: fields 'n_examples'/'examples_digest' differ: the checkpoint was "
                                  "trained on other examples; resume with the same train_examples")
        if extra.get("world_size") != plan.world_size:
            raise CheckpointError(f"{where}: field 'world_size' is {extra.get('world_size')!r}, this run has "
                                  f"{plan.world_size} processes; the data split per step would differ")
        saved = extra.get("config", {})
        for key in _RESUME_FIELDS:
            now = self.config.to_dict()[key]
            if key in saved and saved[key] != now:
                raise CheckpointError(f"{where}: config field {key!r} was {saved[key]!r}, now {now!r}; "
                                      "resume with the same settings")

    def _resolve_resume(self, resume_from: Union[str, os.PathLike, None]) -> Optional[Path]:
        if resume_from is None:
            return None
        if str(resume_from) == "latest":
            if self.config.output_dir is None:
                raise ValueError("GRAGTrainer.train: resume_from='latest' needs config.output_dir")
            found = latest_checkpoint(self.config.output_dir) if self.is_main_process else None
            found = dist_utils.broadcast_object(None if found is None else str(found))
            return None if found is None else Path(found)
        path = Path(resume_from)
        if not path.is_dir():
            raise FileNotFoundError(f"GRAGTrainer.train: checkpoint folder {path} does not exist")
        return path

    def _prepare_output_dir(self) -> None:
        """Fresh start: refuse (or, with overwrite_output_dir, clear) existing checkpoints; reset the log."""
        out = self.config.output_dir
        if out is None:
            return
        existing = [str(p) for p in list_checkpoints(out)] if self.is_main_process else []
        existing = dist_utils.broadcast_object(existing)  # every rank raises, none waits forever
        if existing and not self.config.overwrite_output_dir:
            raise FileExistsError(
                f"GRAGTrainer.train: {out} already holds checkpoints ({Path(existing[-1]).name}, ...); resume with "
                "resume_from='latest', or set overwrite_output_dir=True to start over")
        if self.is_main_process:
            for path in existing:
                shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(Path(out) / "best", ignore_errors=True)  # a fresh start's best is its own
            Path(out).mkdir(parents=True, exist_ok=True)
            assert self._log is not None
            self._log.reset()
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ train
    def train(self, resume_from: Union[str, os.PathLike, None] = None, stop_after_step: Optional[int] = None
              ) -> TrainResult:
        """Train (or continue training) the model.

        Args:
            resume_from: ``None`` (fresh start), ``"latest"`` (the newest complete
                checkpoint in ``output_dir``; a fresh start when there is none) or a
                checkpoint folder.  Weights, optimizer, scheduler, RNG streams, data
                position, histories and the partial logging window are restored; the
                log file is cut back to the checkpoint's step.
            stop_after_step: stop once this global step is done (a time budget), keeping
                the schedule of the full run; a checkpoint is written there.  Resume
                later with ``resume_from="latest"``.

        Returns:
            :class:`TrainResult`.
        """
        from tqdm.auto import tqdm

        plan = self.plan()
        self._build_optimizer(plan)
        self.history, self.eval_history, self._pending, self.global_step = [], [], {}, 0
        self._best_state: Optional[dict[str, Tensor]] = None
        ckpt = self._resolve_resume(resume_from)
        if ckpt is not None:
            self._check_resume(read_checkpoint_state(ckpt).get("extra", {}), plan, ckpt)
            state = load_checkpoint(ckpt, modules={"model": self._checkpoint_module()}, optimizer=self.optimizer,
                                    scheduler=self.scheduler, restore_rng=True)
            extra = state["extra"]
            self.global_step = int(state["step"])
            self.history = list(extra.get("history", []))
            self.eval_history = list(extra.get("eval_history", []))
            self._pending = dict(extra.get("pending_log", {}))
            if self._log is not None and self.is_main_process:
                self._log.truncate_after(self.global_step)  # drop records written after the checkpoint
            self.accelerator.wait_for_everyone()
        else:
            self._prepare_output_dir()
            torch.manual_seed(self.config.seed)

        end = plan.total_steps if stop_after_step is None else min(plan.total_steps, int(stop_after_step))
        stopped_early = self.plateau_reached()
        cfg = self.config
        last_ckpt: Optional[Path] = None
        was_training = self.model.training
        for cb in self.callbacks:
            cb.on_train_begin(self)
        bar = tqdm(total=plan.total_steps, initial=self.global_step, disable=not (cfg.progress and self.is_main_process),
                   desc=f"{type(self.model).__name__} training", dynamic_ncols=True)
        try:
            while self.global_step < end and not stopped_early:
                values = self._train_step(plan)
                step = self.global_step
                bar.update(1)
                bar.set_postfix(loss=f"{values.get('loss', float('nan')):.4f}")
                for cb in self.callbacks:
                    cb.on_step_end(self, step)
                self._accumulate(values)
                stopping = step == end
                if step % cfg.logging_steps == 0 or step == plan.total_steps:
                    self._flush_log(plan)
                epoch_end = step % plan.steps_per_epoch == 0
                if self.eval_examples and ((cfg.eval_steps is not None and step % cfg.eval_steps == 0)
                                           or (cfg.eval_at_epoch_end and epoch_end)):
                    self._evaluate_and_record(plan)
                    stopped_early = self.plateau_reached()
                save_due = (step % cfg.save_steps == 0) if cfg.save_steps is not None else epoch_end
                if save_due or stopping or stopped_early:
                    last_ckpt = self._save(plan) or last_ckpt
        finally:
            bar.close()
            self.model.train(was_training)

        best = self.best_evaluation()
        if cfg.load_best_model_at_end and best is not None and (self.global_step >= plan.total_steps or stopped_early):
            self._restore_best()
        final: dict[str, float] = {}
        if stopped_early and best is not None:
            final = {k: v for k, v in best.items() if k not in ("step", "epoch")} if cfg.load_best_model_at_end else {}
        elif self.global_step >= plan.total_steps and self.eval_examples:
            done = [r for r in self.eval_history if r.get("step") == self.global_step]
            if done:
                final = {k: v for k, v in done[-1].items() if k not in ("step", "epoch")}
            else:
                final = self.evaluate(self.eval_examples)
        key = cfg.metric_for_best_model
        result = TrainResult(history=list(self.history), eval_history=list(self.eval_history), final_metrics=final,
                             global_step=self.global_step, total_steps=plan.total_steps, checkpoint=last_ckpt,
                             stopped_early=stopped_early, best_step=None if best is None else int(best["step"]),
                             best_metric=None if best is None else float(best[key]))
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    # ------------------------------------------------------------------ plateau and best model
    def _improves(self, value: float, best: float) -> bool:
        margin = self.config.early_stopping_threshold * abs(best)
        return value > best + margin if self.config.best_is_greater else value < best - margin

    def best_evaluation(self) -> Optional[dict[str, Any]]:
        """The evaluation record with the best ``metric_for_best_model`` (the first of equals), or ``None``."""
        key = self.config.metric_for_best_model
        scored = [r for r in self.eval_history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not scored:
            return None
        pick = max if self.config.best_is_greater else min
        return pick(scored, key=lambda r: r[key])

    def plateau_reached(self) -> bool:
        r"""Whether early stopping applies: the last ``early_stopping_patience`` evaluations did not
        improve on the best value before them by more than ``early_stopping_threshold`` (relative)."""
        patience = self.config.early_stopping_patience
        key = self.config.metric_for_best_model
        values = [float(r[key]) for r in self.eval_history if isinstance(r.get(key), (int, float))]
        if patience is None or len(values) <= patience:
            return False
        best = values[0]
        since = 0
        for value in values[1:]:
            if self._improves(value, best):
                best, since = value, 0
            else:
                since += 1
        return since >= patience

    def _best_dir(self) -> Optional[Path]:
        return None if self.config.output_dir is None else Path(self.config.output_dir) / "best"

    def _keep_if_best(self, record: Mapping[str, Any]) -> None:
        """Keep the trainable weights when ``record`` is the best evaluation so far (memory and ``output_dir/best``)."""
        if not self.config.load_best_model_at_end or self.best_evaluation() is not record:
            return
        module = _TrainableParameters(self.model)
        self._best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        best_dir = self._best_dir()
        if best_dir is not None and self.is_main_process:
            save_checkpoint(best_dir, step=self.global_step, modules={"model": module},
                            extra={"metric": self.config.metric_for_best_model,
                                   "value": record[self.config.metric_for_best_model]}, keep_last=1)

    def _restore_best(self) -> None:
        module = _TrainableParameters(self.model)
        state = getattr(self, "_best_state", None)
        if state is not None:
            module.load_state_dict(state)
            return
        best_dir = self._best_dir()
        found = latest_checkpoint(best_dir) if best_dir is not None and best_dir.is_dir() else None
        if found is None:
            raise CheckpointError(f"GRAGTrainer: load_best_model_at_end but no best weights under {best_dir}")
        load_checkpoint(found, modules={"model": module}, restore_rng=False)

    def _evaluate_and_record(self, plan: TrainingPlan) -> dict[str, Any]:
        metrics = self.evaluate(self.eval_examples)  # type: ignore[arg-type]
        record = {"step": self.global_step, "epoch": self.global_step / plan.steps_per_epoch, **metrics}
        self.eval_history.append(record)
        self._keep_if_best(record)
        if self._log is not None and self.is_main_process:
            self._log.append({"kind": "eval", **record})
        for cb in self.callbacks:
            cb.on_evaluate(self, record)
        return record

    # ------------------------------------------------------------------ evaluation
    def _inference_collator(self) -> Any:
        coll = self.collator
        if hasattr(coll, "with_targets"):
            coll = copy.copy(coll)
            coll.with_targets = False
            return coll
        return self.model.make_collator(with_targets=False)  # type: ignore[operator]

    def predict(self, examples: Sequence[ResponseExample]) -> list[str]:
        """Generated response per example (``model.respond``; eval mode, the config's generation settings).

        Runs on the calling process only (no collective communication).
        """
        examples = _check_examples(examples, "examples")
        if not examples:
            return []
        model = self.model
        was_training = model.training
        model.eval()
        try:
            gen = {"max_new_tokens": self.config.max_new_tokens, "num_beams": self.config.num_beams,
                   **self.config.generation_options}
            return model.respond(examples, batch_size=self.config.eval_batch_size,  # type: ignore[operator]
                                 collator=self._inference_collator(), **gen)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def _teacher_forced(self, examples: Sequence[ResponseExample]) -> tuple[list[float], dict[str, float]]:
        """Per-example natural-log likelihood of the scored target tokens, and the mean loss terms."""
        model = self.model
        encdec = bool(getattr(model, "is_encoder_decoder", False))
        lls: list[float] = []
        sums: dict[str, float] = {}
        bs = self.config.eval_batch_size
        for start in range(0, len(examples), bs):
            chunk = list(examples[start:start + bs])
            batch = self._to_device(self.collator(chunk))
            with self.accelerator.autocast():
                out = model(**batch)
            for key, value in out.losses().items():
                sums[key] = sums.get(key, 0.0) + value * len(chunk) / len(examples)
            labels = out.labels if out.labels is not None else batch["labels"]  # (B, T): aligned with the logits
            logits = out.logits  # (B, T, V)
            if not encdec:  # position t predicts token t + 1
                logits, labels = logits[:, :-1], labels[:, 1:]
            logp = torch.log_softmax(logits.float(), dim=-1)
            token_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
            lls += [float(v) for v in (token_lp.double() * (labels != -100)).sum(dim=1).cpu()]
        return lls, sums

    def _evaluate_local(self, examples: list[ResponseExample]) -> dict[str, float]:
        from personakit.eval import bits_per_character, evaluate_texts

        cfg = self.config
        results: dict[str, float] = {}
        text_metrics = [m for m in cfg.eval_metrics if m not in MODEL_METRICS]
        if text_metrics:
            predictions = self.predict(examples)
            results.update(evaluate_texts(predictions, [ex.response for ex in examples], metrics=text_metrics,
                                          **cfg.eval_metric_options))
        if "bpc" in cfg.eval_metrics or "loss" in cfg.eval_metrics:
            model = self.model
            was_training = model.training
            model.eval()
            try:
                lls, losses = self._teacher_forced(examples)
            finally:
                model.train(was_training)
            if "bpc" in cfg.eval_metrics:
                results["bpc"] = bits_per_character(lls, [ex.response.strip() for ex in examples])
            if "loss" in cfg.eval_metrics:
                results.update(losses)
        return results

    def evaluate(self, examples: Optional[Sequence[ResponseExample]] = None) -> dict[str, float]:
        r"""Score the model on ``examples`` (default: ``eval_examples``) with ``config.eval_metrics``.

        * text metrics (``char_f1``, ``rouge``, ``bleu``, ``meteor``, ``bertscore``, ...):
          :func:`~personakit.eval.evaluate_texts` on :meth:`predict`'s responses against
          ``example.response``;
        * ``"bpc"``: $\mathrm{BPC} = -\sum_i \log p(R_{P,i}) / (\ln 2 \sum_i |R_{P,i}|)$
          (:func:`~personakit.eval.bits_per_character`), with $\log p$ the model's
          teacher-forced log-likelihood of every target token its training loss counts
          (the tokenizer's special tokens and, decoder-only, the leading space and EOS
          included) and $|R_P|$ the characters of the stripped reference.  A reference
          longer than the collator's ``max_response_tokens`` is scored on its kept part only;
        * ``"loss"``: the teacher-forced loss terms (``loss``, ``loss_p``, ``loss_g``,
          ``loss_cjepa``), example-weighted means over the batches.

        Under multi-process training the main process computes and broadcasts the result;
        call it on every process.
        """
        examples = _check_examples(examples if examples is not None else self.eval_examples, "eval examples")
        if not examples:
            raise ValueError("GRAGTrainer.evaluate: no examples")
        if self.world_size == 1:
            return self._evaluate_local(examples)
        outcome: Any = None
        if self.is_main_process:
            try:
                outcome = ("ok", self._evaluate_local(examples))
            except Exception as err:  # sent to the other ranks too, so none waits forever
                outcome = ("error", err)
        status, payload = dist_utils.broadcast_object(outcome)
        if status == "error":
            raise payload
        return payload

    # ------------------------------------------------------------------ saving
    def save_model(self, directory: Union[str, os.PathLike]) -> Path:
        """``model.save_pretrained(directory)`` on the main process (all processes wait)."""
        directory = Path(directory)
        if self.is_main_process:
            self.accelerator.unwrap_model(self.wrapped).save_pretrained(directory)
        self.accelerator.wait_for_everyone()
        return directory

    def __repr__(self) -> str:
        plan = self.plan()
        return (f"GRAGTrainer(model={type(self.model).__name__}, examples={plan.n_examples}, "
                f"steps={plan.total_steps}, world_size={plan.world_size})")

