r"""The one training loop of personakit: :class:`Trainer`, with hooks for what differs per family.

Every trainer of the package (:class:`~personakit.training.GRAGTrainer` and its
questioner-aware and CoPersona subclasses, :class:`~personakit.training.ROPGRLTrainer`,
:class:`~personakit.training.ROPGKDTrainer`, :class:`~personakit.training.RSPGTrainer`)
is a thin subclass of :class:`Trainer`.  The loop is fixed; a subclass overrides hooks,
as in ``transformers.Trainer.compute_loss`` or Lightning's ``training_step``:

* :meth:`Trainer.collate` (items of one micro-batch → batch) and
  :meth:`Trainer.compute_loss` (batch → ``(loss, terms)``, the terms a
  ``dict[str, float]`` logged beside the loss);
* :meth:`Trainer.epoch_order` (the permutation of the training items of an epoch);
* :meth:`Trainer.build_optimizer` and :meth:`Trainer.build_scheduler`
  (:mod:`personakit.training.schedules`);
* :meth:`Trainer.evaluate` (dev metrics, used for the plateau stop and the best model).

What the loop gives every family:

* **one optimizer step** consumes ``batch_size * gradient_accumulation_steps * world_size``
  items of the epoch order, split into balanced consecutive shares, one per process
  (:func:`~personakit.training.distributed.rank_slice`), each cut into micro-batches;
  the step's gradient is the size-weighted mean of the micro-batch losses' gradients, so
  gradient accumulation equals one large batch and $N$ processes equal one process with
  $N$ times the accumulation (up to float rounding);
* **logging**: every ``logging_steps`` steps one record with the mean of every term
  since the previous record (plus ``lr``, ``grad_norm``, ``step``, ``epoch``) goes to
  :attr:`Trainer.history` and, as one fsynced JSON line, to ``output_dir/train_log.jsonl``
  (:class:`~personakit.training.logging.JsonlLog`);
* **dev evaluation** every ``eval_steps`` steps and/or at epoch ends, with a **plateau
  stop** (``early_stopping_patience``) and the best weights restored at the end
  (``load_best_model_at_end``);
* **atomic checkpoints** (:mod:`personakit.training.checkpoint`: weights, optimizer,
  scheduler, RNG streams, data position, histories, the partial logging window) and
  **exact resumption**: a run stopped (``stop_after_step``) or killed and resumed from
  its latest checkpoint ends with the same weights and logs as an uninterrupted run, bit
  for bit on the same hardware.  Resuming checks the trainer, the config fields that
  shape the run and a digest of the training data, and names the field that differs;
* **bf16** autocast (``mixed_precision="bf16"``) and **multi-process data parallelism**
  through Accelerate (``torchrun --nproc_per_node=N`` or ``accelerate launch``).

Determinism.  The data order of epoch $e$ depends only on ``(seed, e)``
(:func:`epoch_permutation`); a trainer with ``reseed_every_step`` re-seeds the torch
generator at the start of every optimizer step from ``(seed, step, rank)``
(:func:`step_seed`), the others continue the RNG streams, which checkpoints restore.

Example:
    >>> import torch
    >>> class Regression(Trainer):  # fit y = 2x with one weight
    ...     def compute_loss(self, batch):
    ...         x = torch.tensor(batch)
    ...         loss = ((self.model(x[:, None]).squeeze(1) - 2 * x) ** 2).mean()
    ...         return loss, {"loss": float(loss)}
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> args = TrainingConfig(max_steps=60, batch_size=4, learning_rate=0.1, logging_steps=20,
    ...                       use_cpu=True, progress=False)
    >>> result = Regression(model, args, train_data=[0.5, 1.0, 1.5, 2.0]).train()
    >>> [r["step"] for r in result.history], round(model.weight.item(), 1)
    ([20, 40, 60], 2.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from personakit.backbones.precision import attention_implementation
from personakit.config import BaseConfig
from personakit.training import distributed as dist_utils
from personakit.training.callbacks import TrainerCallback, as_callbacks
from personakit.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from personakit.training.logging import LOG_FILE, JsonlLog
from personakit.training.schedules import linear_decay_schedule

__all__ = [
    "Trainer",
    "PlateauConfig",
    "TrainingConfig",
    "TrainResult",
    "TrainingPlan",
    "TrainableParameters",
    "seed_everything",
    "step_seed",
    "epoch_permutation",
    "data_digest",
    "parameter_groups",
]


# --------------------------------------------------------------------------- config
class PlateauConfig(BaseConfig):
    """Dev evaluation and training to a plateau: the fields every trainer config shares.

    :class:`TrainingConfig` inherits them, and so do the configs that keep their own field
    names (:class:`~personakit.training.ROPGTrainerConfig`,
    :class:`~personakit.training.RSPGTrainerConfig`), so ``early_stopping_patience`` means
    the same thing, with the same default, in every family.  :meth:`plateau_settings`
    passes them on to the shared loop.

    Example:
        >>> cfg = PlateauConfig(eval_steps=50, early_stopping_patience=3)
        >>> cfg.plateau_settings()["early_stopping_threshold"], cfg.best_is_greater
        (0.01, False)
    """

    eval_steps: Optional[int] = Field(None, ge=1, description=(
        "Evaluate on the dev items every this many steps (``None``: no evaluation between steps; "
        ":class:`TrainingConfig` still evaluates at epoch ends when ``eval_at_epoch_end`` is set)."))
    early_stopping_patience: Optional[int] = Field(
        None, ge=1, description=(
        "Training to a plateau: stop once ``metric_for_best_model`` on the dev items has not improved on its "
        "best value by more than ``early_stopping_threshold`` (relative) for this many consecutive "
        "evaluations (``None``: run every step). The learning-rate schedule stays that of the full run "
        "(``max_steps`` / ``epochs`` is the budget)."))
    early_stopping_threshold: float = Field(
        0.01, ge=0.0, description=(
        "An evaluation improves on the best value when it is better by more than this fraction of it."))
    metric_for_best_model: str = Field("loss", description=(
        "The evaluation metric that early stopping and ``load_best_model_at_end`` watch."))
    greater_is_better: Optional[bool] = Field(None, description=(
        "Whether a larger ``metric_for_best_model`` is better; ``None``: ``False`` for losses (names "
        "starting with ``\"loss\"``) and ``\"bpc\"``, ``True`` otherwise."))
    load_best_model_at_end: bool = Field(False, description=(
        "At the end of training, put back the trainable weights of the best evaluation (kept in memory and, "
        "with ``output_dir``, in ``output_dir/best``, so a resumed run still has them)."))

    @property
    def watches_loss(self) -> bool:
        """Whether ``metric_for_best_model`` is a loss term (its name starts with ``"loss"``)."""
        return self.metric_for_best_model.startswith("loss")

    @property
    def best_is_greater(self) -> bool:
        """The direction of ``metric_for_best_model`` (``greater_is_better`` or from its name)."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not (self.watches_loss or self.metric_for_best_model == "bpc")

    def plateau_settings(self) -> dict[str, Any]:
        """These fields as keyword arguments of :class:`TrainingConfig`."""
        return {name: getattr(self, name) for name in PlateauConfig.model_fields}

    def improves(self, value: float, best: float) -> bool:
        """Whether ``value`` improves on ``best`` by more than ``early_stopping_threshold`` (relative)."""
        margin = self.early_stopping_threshold * abs(best)
        return value > best + margin if self.best_is_greater else value < best - margin

    def plateau_step(self, eval_history: Sequence[Mapping[str, Any]], patience: Optional[int] = None) -> Optional[int]:
        """The step of the first evaluation at which the plateau rule fires on ``eval_history``, or ``None``.

        The rule of ``early_stopping_patience``: ``patience`` consecutive evaluations of
        ``metric_for_best_model`` without an improvement on the best value before them.  A run
        that trains its whole budget (no early stopping) can still say where it would have
        stopped.

        Args:
            eval_history: Evaluation records with ``step`` and the watched metric (``TrainResult.eval_history``).
            patience: Overrides ``early_stopping_patience`` (``None`` there and here: never fires).

        Example:
            >>> cfg = PlateauConfig(early_stopping_patience=2)
            >>> cfg.plateau_step([{"step": s, "loss": v} for s, v in [(10, 1.0), (20, 0.8), (30, 0.81), (40, 0.799)]])
            40
        """
        patience = self.early_stopping_patience if patience is None else patience
        key = self.metric_for_best_model
        records = [r for r in eval_history if isinstance(r.get(key), (int, float))]
        if patience is None or len(records) <= patience:
            return None
        best, since = float(records[0][key]), 0
        for record in records[1:]:
            value = float(record[key])
            if self.improves(value, best):
                best, since = value, 0
            else:
                since += 1
            if since >= patience:
                return int(record["step"])
        return None


class TrainingConfig(PlateauConfig):
    """Settings of the training loop shared by every trainer (:class:`Trainer`).

    Family configs (:class:`~personakit.training.GRAGTrainingConfig`, ...) add their own
    fields; :class:`~personakit.training.ROPGTrainerConfig` and
    :class:`~personakit.training.RSPGTrainerConfig` keep their field names and map onto
    this one (``.training_config()``).

    Example:
        >>> cfg = TrainingConfig(max_steps=100, warmup_steps=5)
        >>> cfg.final_lr_fraction, cfg.best_is_greater
        (0.5, False)
    """

    output_dir: Optional[str] = Field(None, description=(
        "Folder for ``checkpoint-*`` subfolders and the JSONL log; ``None`` writes nothing (and resuming is "
        "impossible)."))
    overwrite_output_dir: bool = Field(False, description=(
        "A fresh start (``resume_from=None``) in an ``output_dir`` that already holds checkpoints is an "
        "error unless this is set, in which case those checkpoints and the log are deleted."))
    learning_rate: float = Field(1e-4, gt=0.0, description="Initial (peak) learning rate of AdamW.")
    final_lr_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "The learning rate decays linearly to this fraction of its initial value at the final step; see "
        ":func:`~personakit.training.schedules.linear_decay_schedule`."))
    warmup_steps: int = Field(0, ge=0, description=(
        "Optimizer steps of linear warm-up before the decay "
        "(:func:`~personakit.training.schedules.warmup_factor`)."))
    weight_decay: float = Field(0.0, ge=0.0, description=(
        "Decoupled weight decay of AdamW, applied to weight matrices only (not to biases, norm weights or "
        "other 1-d parameters)."))
    learning_rate_multipliers: dict[str, float] = Field(default_factory=dict, description=(
        "Per-parameter learning rates: ``{pattern: factor}``, where ``pattern`` is an ``fnmatch`` pattern "
        "over parameter names (``model.named_parameters()``) and the parameter's learning rate is "
        "``factor * learning_rate`` (the schedule scales it like the rest). The first matching pattern "
        "wins; a pattern that matches no trainable parameter is an error. Example: "
        "``{\"*style_extractor.*\": 10}`` trains PostGRAG's style path 10x faster than the LoRA adapters."))
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW $(\\beta_1, \\beta_2)$.")
    adam_epsilon: float = Field(1e-8, gt=0.0, description="AdamW $\\epsilon$.")
    epochs: int = Field(20, ge=1, description="Passes over the training items; ignored when ``max_steps`` is set.")
    max_steps: Optional[int] = Field(None, ge=1, description=(
        "Total optimizer steps; ``None`` derives it from ``epochs`` and the data size."))
    batch_size: int = Field(8, ge=1, description="Items per forward pass, per process.")
    gradient_accumulation_steps: int = Field(1, ge=1, description=(
        "Micro-batches accumulated per optimizer step on each process."))
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description=(
        "Clip the global gradient norm to this value; ``None`` disables clipping (the norm is still logged)."))
    seed: int = Field(0, ge=0, description=(
        "Seeds the data order (per epoch), the global generators on a fresh start and, for trainers that "
        "re-seed every step, the torch generator per step and rank."))
    logging_steps: int = Field(10, ge=1, description=(
        "Every this many steps (and at the last step) one record with the mean of every logged term over the "
        "steps since the previous record is added to the history and the log."))
    eval_at_epoch_end: bool = Field(True, description="Evaluate on the dev items after each epoch's last step.")
    save_steps: Optional[int] = Field(None, ge=1, description=(
        "Checkpoint every this many steps; ``None``: at the end of every epoch. The final step (and a "
        "``stop_after_step`` stop) is always saved."))
    keep_last: Optional[int] = Field(2, ge=1, description=(
        "How many checkpoints to keep (newest first); ``None`` keeps all."))
    checkpoint_weights: Literal["trainable", "all"] = Field(
        "trainable", description=(
        "``\"trainable\"``: only parameters with ``requires_grad`` (LoRA: adapters; the frozen weights come "
        "from the model you rebuild before resuming); ``\"all\"``: the model's whole state dict (buffers "
        "included)."))
    mixed_precision: Literal["no", "bf16"] = Field("no", description=(
        "``\"bf16\"`` runs the loss computation under bfloat16 autocast (no loss scaling needed)."))
    use_cpu: bool = Field(False, description="Train on the CPU even when an accelerator is available.")
    attn_implementation: Optional[Literal["eager", "sdpa"]] = Field(None, description=(
        "Attention kernel of the transformers models inside the trained model while :meth:`Trainer.train` "
        "runs (dev evaluation included); the former kernel is restored when training ends "
        "(:func:`~personakit.backbones.attention_implementation`). ``None`` keeps the model's own. On a CPU "
        "with AMX, ``\"eager\"`` makes a bf16 SmolLM2 + LoRA PostGRAG step 0.70x as long as the default "
        "``\"sdpa\"`` (PreSFT(Hist) 0.93x; `benchmarks/bf16_step_profile.py`); generation stays faster "
        "with ``\"sdpa\"``."))
    ddp_find_unused_parameters: bool = Field(
        True, description=(
        "Passed to DDP: needed when some parameters get no gradient in a step; set ``False`` for a little "
        "speed when every parameter is used."))
    progress: bool = Field(True, description="Show a tqdm progress bar on the main process.")



def parameter_groups(model: nn.Module, *, weight_decay: float, learning_rate: float,
                     multipliers: Optional[Mapping[str, float]] = None, owner: str = "Trainer"
                     ) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``model``'s trainable parameters.

    Weight decay applies to matrices only (``ndim >= 2``); each parameter's learning rate is
    ``learning_rate`` times the factor of the first ``fnmatch`` pattern in ``multipliers``
    that its name matches (1 when none does). Empty groups are dropped.

    Raises:
        ValueError: no trainable parameter, or a pattern that matches none (a typo would
            otherwise silently train at the base rate).

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> groups = parameter_groups(m, weight_decay=0.1, learning_rate=1e-3, multipliers={"1.*": 10})
        >>> sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in groups)
        [(0.001, 0.0, 1), (0.001, 0.1, 1), (0.01, 0.0, 1), (0.01, 0.1, 1)]
    """
    import fnmatch

    patterns = dict(multipliers or {})
    used = {pattern: False for pattern in patterns}
    grouped: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        matching = [pattern for pattern in patterns if fnmatch.fnmatchcase(name, pattern)]
        used.update(dict.fromkeys(matching, True))
        factor = float(patterns[matching[0]]) if matching else 1.0
        grouped.setdefault((factor, p.ndim >= 2), []).append(p)
    if not grouped:
        raise ValueError(f"{owner}: {type(model).__name__} has no trainable parameters")
    unused = [pattern for pattern, hit in used.items() if not hit]
    if unused:
        names = [n for n, p in model.named_parameters() if p.requires_grad][:5]
        raise ValueError(f"{owner}: learning_rate_multipliers pattern(s) {unused} match no trainable parameter "
                         f"of {type(model).__name__} (trainable names look like {names})")
    return [{"params": params, "lr": learning_rate * factor, "weight_decay": weight_decay if decays else 0.0}
            for (factor, decays), params in sorted(grouped.items(), key=lambda kv: (kv[0][0], not kv[0][1]))]


# ---------------------------------------------------------------------------- result
@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        history: one record per logging step: ``step``, ``epoch`` (fractional), ``lr``
            (the learning rate of that step's update), ``grad_norm``, and the mean of
            every logged term (``loss``, ...) over the steps since the previous record.
        eval_history: one record per evaluation: ``step``, ``epoch`` and the metrics.
        final_metrics: metrics on the dev items after the final step (``{}`` without
            dev items, or when the run stopped early).
        global_step: optimizer steps done.
        total_steps: optimizer steps of the full run.
        checkpoint: the last checkpoint written by this call (``None``: none).
        stopped_early: whether early stopping ended the run (the dev metric reached a plateau).
        best_step: the step of the evaluation with the best ``metric_for_best_model``
            (``None`` without evaluations).
        best_metric: its value.
        train_seconds: wall time of the training loop over the whole run, earlier runs that
            this one resumed included (evaluations and checkpoints count; model loading does not).
        train_cpu_seconds: CPU time of the process (all its threads) over the same loops.  Unlike
            ``train_seconds`` it does not grow while the process waits for a core on a shared
            machine or is paused, so it compares the cost of runs made under different loads
            (divide by the thread count for a single-job wall-time estimate).  0 for a run resumed
            from a checkpoint written before this field existed.
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
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0

    @property
    def completed(self) -> bool:
        """Whether the run is over: it reached its final step or stopped early on a plateau."""
        return self.global_step >= self.total_steps or self.stopped_early


@dataclass
class TrainingPlan:
    """Length of a run (:meth:`Trainer.plan`).

    Attributes:
        n_examples: training items.
        world_size: processes.
        per_step: items per optimizer step over all processes
            (``batch_size * gradient_accumulation_steps * world_size``).
        steps_per_epoch: ``ceil(n_examples / per_step)``.
        total_steps: ``max_steps``, or ``epochs * steps_per_epoch``.
    """

    n_examples: int
    world_size: int
    per_step: int
    steps_per_epoch: int
    total_steps: int


# --------------------------------------------------------------------------- helpers
class TrainableParameters(nn.Module):
    """A view of a model's trainable parameters (the same tensors), so checkpoints hold only them.

    Its state-dict keys are ``params.<parameter name with "." replaced by "/">``; loading a
    state dict into it copies into the model's parameters in place.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.params = nn.ParameterDict(
            {name.replace(".", "/"): p for name, p in model.named_parameters() if p.requires_grad})


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (a fresh run's start)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of optimizer step ``step`` on process ``rank`` (independent of what ran before)."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32 | int(state[1])) % (2**63)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of ``n`` items in ``epoch``: ``numpy.random.default_rng([seed, epoch]).permutation(n)``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def data_digest(items: Sequence[Any]) -> str:
    """SHA-256 of the training items, in order (pydantic models by ``model_dump_json``, others as JSON).

    Example:
        >>> data_digest([1, 2]) == data_digest([1, 2]) != data_digest([2, 1])
        True
    """
    h = hashlib.sha256()
    for item in items:
        if hasattr(item, "model_dump_json"):
            text = item.model_dump_json()
        else:
            text = json.dumps(_jsonable(item), sort_keys=True, allow_nan=True)
        h.update(text.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- trainer
class Trainer:
    r"""The fixed training loop; subclasses override hooks (see the module docstring).

    Args:
        model: the ``nn.Module`` whose parameters are trained.
        args: the loop's :class:`TrainingConfig` (a family config that subclasses it, or
            one built from the family config).
        config: the family config recorded in checkpoints and checked on resume
            (default: ``args``).
        train_data: the training items (a subclass may set :attr:`train_data` later,
            before :meth:`train`).
        eval_data: dev items for :meth:`evaluate` during and after training.
        callbacks: :class:`~personakit.training.callbacks.TrainerCallback` objects, or
            callables called with each training-history record.
        accelerator: an ``accelerate.Accelerator`` to use (default: one built from ``args``).
        wrap_model: prepare the model with Accelerate (device placement, DDP under a
            multi-process launch); ``False`` for trainers whose loss does not go through
            ``model.forward`` (their gradients are all-reduced by the loop instead).

    Attributes:
        history: training records (restored on resume).
        eval_history: evaluation records (restored on resume).
        global_step: optimizer steps done.
        accelerator: the Accelerate object (``num_processes``, ``process_index``, ``device``).
    """

    name: ClassVar[str] = "trainer"
    """Recorded as ``trainer`` in checkpoints; resuming needs the same name."""
    log_file: ClassVar[str] = LOG_FILE
    """Name of the JSON-lines log inside ``output_dir``."""
    checkpoint_key: ClassVar[str] = "model"
    """Name of the weights file in a checkpoint (``modules/<key>.safetensors``)."""
    count_key: ClassVar[str] = "n_examples"
    """Checkpoint field holding the number of training items."""
    digest_key: ClassVar[str] = "examples_digest"
    """Checkpoint field holding :meth:`data_digest` of the training items."""
    resume_fields: ClassVar[tuple[str, ...]] = (
        "learning_rate", "final_lr_fraction", "warmup_steps", "weight_decay", "epochs", "max_steps", "batch_size",
        "gradient_accumulation_steps", "seed", "checkpoint_weights", "learning_rate_multipliers")
    """Fields of :attr:`config` that must equal the checkpoint's to resume."""
    reseed_every_step: ClassVar[bool] = True
    """Re-seed torch at every step from ``(seed, step, rank)`` (else continue the RNG streams)."""

    def __init__(self, model: nn.Module, args: TrainingConfig, *, config: Optional[BaseConfig] = None,
                 train_data: Optional[Sequence[Any]] = None, eval_data: Optional[Sequence[Any]] = None,
                 callbacks: Optional[Sequence[Union[TrainerCallback, Callable[[dict[str, Any]], Any]]]] = None,
                 accelerator: Any = None, wrap_model: bool = True):
        who = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(f"{who}: model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(args, TrainingConfig):
            raise TypeError(f"{who}: args must be a TrainingConfig, got {type(args).__name__}")
        self.args = args
        self.config = config if config is not None else args
        self.train_data: list[Any] = list(train_data) if train_data is not None else []
        self.eval_data: Optional[list[Any]] = None if eval_data is None else list(eval_data)
        try:
            self.callbacks = as_callbacks(callbacks)
        except TypeError as err:
            raise TypeError(f"{who}: {err}") from None
        if accelerator is None:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs

            # a multi-process launch on a machine without CUDA runs on CPU processes (gloo)
            cpu_launch = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
            accelerator = Accelerator(
                cpu=args.use_cpu or cpu_launch, mixed_precision=args.mixed_precision,
                kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.ddp_find_unused_parameters)],
            )
        self.accelerator = accelerator
        self.model = model
        self.wrapped = accelerator.prepare_model(model) if wrap_model else model
        self._ddp = wrap_model and self.world_size > 1
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.global_step = 0
        self.micro_step = 0
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None
        self.resumed_from: Optional[Path] = None
        self._pending: dict[str, float] = {}
        self._best_state: Optional[dict[str, Tensor]] = None
        self._digest: Optional[str] = None
        self._log = JsonlLog(Path(args.output_dir) / self.log_file) if args.output_dir else None

    # ------------------------------------------------------------------ properties
    @property
    def is_main_process(self) -> bool:
        """Whether this is the main process (rank 0)."""
        return bool(self.accelerator.is_main_process)

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return int(self.accelerator.num_processes)

    @property
    def device(self) -> torch.device:
        """Where batches go: the Accelerate device, or the model's own device when it is not wrapped."""
        if self.wrapped is self.model:
            try:
                return next(self.model.parameters()).device
            except StopIteration:
                return torch.device("cpu")
        return self.accelerator.device

    def plan(self, n: Optional[int] = None) -> TrainingPlan:
        """Run length for ``n`` training items (default: :attr:`train_data`)."""
        args = self.args
        world = self.world_size
        per_step = args.batch_size * args.gradient_accumulation_steps * world
        n = len(self.train_data) if n is None else int(n)
        steps_per_epoch = max(1, math.ceil(n / per_step))
        total = args.max_steps if args.max_steps is not None else args.epochs * steps_per_epoch
        return TrainingPlan(n, world, per_step, steps_per_epoch, total)

    # ------------------------------------------------------------------ hooks
    def epoch_order(self, epoch: int) -> np.ndarray:
        """Permutation of the training items for ``epoch`` (0-based; depends only on seed and epoch)."""
        return epoch_permutation(self.args.seed, epoch, len(self.train_data))

    def collate(self, items: list[Any]) -> Any:
        """One micro-batch of items → what :meth:`compute_loss` takes (default: the items themselves)."""
        return items

    def compute_loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Loss of one micro-batch and the terms to log (``{"loss": ...}`` at least).

        The default runs ``self.wrapped(**batch)`` and reads its output's ``loss`` and,
        when it has one, ``losses()``.
        """
        out = self.wrapped(**batch)
        loss = getattr(out, "loss", None)
        if loss is None:
            raise ValueError(f"{type(self).__name__}: {type(self.model).__name__}.forward returned no loss; "
                             "the collator must produce labels")
        losses = getattr(out, "losses", None)
        terms = losses() if callable(losses) else {"loss": float(loss.detach())}
        return loss, terms

    def build_optimizer(self, plan: TrainingPlan) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters; weight decay on matrices only; see :func:`parameter_groups`."""
        args = self.args
        groups = parameter_groups(self.model, weight_decay=args.weight_decay, learning_rate=args.learning_rate,
                                  multipliers=args.learning_rate_multipliers, owner=type(self).__name__)
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=tuple(args.adam_betas),
                                 eps=args.adam_epsilon)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, plan: TrainingPlan
                        ) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up and decay to ``final_lr_fraction`` (:func:`~personakit.training.schedules.linear_decay_schedule`)."""
        args = self.args
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_decay_schedule(plan.total_steps, args.final_lr_fraction, args.warmup_steps))

    def evaluate(self, data: Optional[Sequence[Any]] = None) -> dict[str, float]:
        """Dev metrics on ``data`` (default: :attr:`eval_data`); subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluate(); give no eval data")

    def checkpoint_module(self) -> nn.Module:
        """What a checkpoint stores: the trainable parameters, or the whole model (``checkpoint_weights="all"``)."""
        return self.model if self.args.checkpoint_weights == "all" else TrainableParameters(self.model)

    def data_digest(self, items: Sequence[Any]) -> str:
        """Digest of the training items stored in checkpoints (:func:`data_digest`)."""
        return data_digest(items)

    def checkpoint_identity(self) -> dict[str, Any]:
        """Fields besides ``trainer`` that a checkpoint must match to be resumed (e.g. ``model_class``)."""
        return {}

    # ------------------------------------------------------------------ data
    def step_indices(self, step: int, plan: Optional[TrainingPlan] = None) -> list[int]:
        """Indices of the items of optimizer step ``step`` (0-based) over all processes.

        The last step of an epoch may be smaller; when it has fewer items than
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

    def _micro_batches(self, step: int, plan: TrainingPlan) -> tuple[list[list[Any]], int]:
        idx = self.step_indices(step, plan)
        mine = idx[dist_utils.rank_slice(len(idx), plan.world_size, self.accelerator.process_index)]
        bs = self.args.batch_size
        micros = [[self.train_data[i] for i in mine[s:s + bs]] for s in range(0, len(mine), bs)]
        return micros, len(idx)

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in batch.items()}

    # ------------------------------------------------------------------ one step
    def _train_step(self, plan: TrainingPlan) -> dict[str, float]:
        assert self.optimizer is not None and self.scheduler is not None
        step = self.global_step
        if self.reseed_every_step:
            torch.manual_seed(step_seed(self.args.seed, step, self.accelerator.process_index))
        micros, n_step = self._micro_batches(step, plan)
        world = plan.world_size
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for i, micro in enumerate(micros):
            self.micro_step = i
            batch = self.collate(micro)
            last = i == len(micros) - 1
            sync = self.accelerator.no_sync(self.wrapped) if self._ddp and not last else contextlib.nullcontext()
            with sync:
                with self.accelerator.autocast():
                    loss, terms = self.compute_loss(batch)
                weight = len(micro) / n_step
                # DDP averages gradients over the ranks: scale by world so the sum over all micro-batches is kept
                self.accelerator.backward(loss * (weight * world) if self._ddp else loss * weight)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value * weight
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        keys = sorted(sums)
        if world > 1:  # same keys on every rank (they depend on the model's config only)
            sums = dict(zip(keys, dist_utils.all_reduce_sum([sums[k] for k in keys], self.device)))
            if not self._ddp:
                self._all_reduce_gradients(params)
        max_norm = self.args.max_grad_norm if self.args.max_grad_norm is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        return {"lr": lr, "grad_norm": grad_norm, **{k: sums[k] for k in keys}}

    @staticmethod
    def _all_reduce_gradients(params: Sequence[Tensor]) -> None:
        """Sum the gradients over the ranks (trainers whose model is not wrapped in DDP)."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)

    def _broadcast_weights(self) -> None:
        """Rank 0's parameters and buffers on every rank (unwrapped models under a multi-process launch)."""
        if self.world_size > 1 and not self._ddp:
            for tensor in list(self.model.parameters()) + list(self.model.buffers()):
                torch.distributed.broadcast(tensor.data, src=0)

    # ------------------------------------------------------------------ logging
    def _accumulate(self, values: Mapping[str, float]) -> None:
        pending = self._pending
        pending["_n"] = pending.get("_n", 0) + 1
        pending["_lr"] = values["lr"]
        for key, value in values.items():
            if key != "lr":
                pending[key] = pending.get(key, 0.0) + value

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

    # ------------------------------------------------------------------ checkpoints
    def _state_extra(self, plan: TrainingPlan) -> dict[str, Any]:
        epoch, pos = divmod(self.global_step, plan.steps_per_epoch)
        return {
            "trainer": self.name, **self.checkpoint_identity(), "config": self.config.to_dict(),
            "world_size": plan.world_size, self.count_key: plan.n_examples, self.digest_key: self._data_digest(),
            "total_steps": plan.total_steps, "data_position": {"epoch": epoch, "step_in_epoch": pos},
            "history": self.history, "eval_history": self.eval_history, "pending_log": self._pending,
            "train_seconds": self._seconds_so_far(), "train_cpu_seconds": self._cpu_seconds_so_far(),
        }

    def _seconds_so_far(self) -> float:
        start = getattr(self, "_loop_start", None)
        return float(getattr(self, "_seconds_before", 0.0)) + (time.perf_counter() - start if start is not None else 0.0)

    def _cpu_seconds_so_far(self) -> float:
        start = getattr(self, "_cpu_start", None)
        return float(getattr(self, "_cpu_before", 0.0)) + (time.process_time() - start if start is not None else 0.0)

    def _data_digest(self) -> str:
        if self._digest is None:
            self._digest = self.data_digest(self.train_data)
        return self._digest

    def _save(self, plan: TrainingPlan) -> Optional[Path]:
        if self.args.output_dir is None:
            return None
        path: Optional[Path] = None
        if self.is_main_process:
            path = save_checkpoint(self.args.output_dir, step=self.global_step,
                                   modules={self.checkpoint_key: self.checkpoint_module()}, optimizer=self.optimizer,
                                   scheduler=self.scheduler, extra=self._state_extra(plan),
                                   keep_last=self.args.keep_last)
        self.accelerator.wait_for_everyone()
        path = Path(dist_utils.broadcast_object(str(path) if path is not None else None))
        for cb in self.callbacks:
            cb.on_save(self, path)
        return path

    def _check_resume(self, extra: Mapping[str, Any], plan: TrainingPlan, path: Path) -> None:
        where = Path(path) / "trainer_state.json"
        if extra.get("trainer") != self.name:
            raise CheckpointError(f"{where}: field 'trainer' is {extra.get('trainer')!r}, this trainer is "
                                  f"{self.name!r}")
        for key, value in self.checkpoint_identity().items():
            if extra.get(key) != value:
                raise CheckpointError(f"{where}: field {key!r} is {extra.get(key)!r}, but this run has {value!r}")
        if extra.get(self.count_key) != plan.n_examples or extra.get(self.digest_key) != self._data_digest():
            raise CheckpointError(f"{where}: fields {self.count_key!r}/{self.digest_key!r} differ: the checkpoint "
                                  "was trained on other examples (other items); resume with the same training data")
        if extra.get("world_size", 1) != plan.world_size:
            raise CheckpointError(f"{where}: field 'world_size' is {extra.get('world_size')!r}, this run has "
                                  f"{plan.world_size} processes; the data split per step would differ")
        renamed = getattr(type(self.config), "_renamed_", {})
        saved = {renamed.get(k, k): v for k, v in extra.get("config", {}).items()}  # checkpoints of old field names
        now_all = self.config.to_dict()
        for key in self.resume_fields:
            now = now_all[key]
            if key in saved and saved[key] != now:
                raise CheckpointError(f"{where}: config field {key!r} was {saved[key]!r}, now {now!r}; "
                                      "resume with the same settings")

    def _resolve_resume(self, resume_from: Union[str, os.PathLike, None]) -> Optional[Path]:
        who = type(self).__name__
        if resume_from is None:
            return None
        if str(resume_from) == "latest":
            if self.args.output_dir is None:
                raise ValueError(f"{who}.train: resume_from='latest' needs an output_dir")
            found = latest_checkpoint(self.args.output_dir) if self.is_main_process else None
            found = dist_utils.broadcast_object(None if found is None else str(found))
            return None if found is None else Path(found)
        path = Path(resume_from)
        if not path.is_dir():
            raise CheckpointError(f"{who}.train: {path} is not a complete checkpoint (the folder does not exist)")
        return path

    def _prepare_output_dir(self) -> None:
        """Fresh start: refuse (or, with overwrite_output_dir, clear) existing checkpoints; reset the log."""
        out = self.args.output_dir
        if out is None:
            return
        existing = [str(p) for p in list_checkpoints(out)] if self.is_main_process else []
        existing = dist_utils.broadcast_object(existing)  # every rank raises, none waits forever
        if existing and not self.args.overwrite_output_dir:
            raise FileExistsError(
                f"{type(self).__name__}.train: {out} already holds checkpoints ({Path(existing[-1]).name}, ...); "
                "resume with resume_from='latest', or set overwrite_output_dir=True to start over")
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
        """Train (or continue training) the model on :attr:`train_data`.

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

        if not self.train_data:
            raise ValueError(f"{type(self).__name__}.train: no training items")
        args = self.args
        wanted = [name for name in ("early_stopping_patience", "load_best_model_at_end") if getattr(args, name)]
        if wanted and not self.eval_data:
            raise ValueError(f"{type(self).__name__}.train: {' and '.join(wanted)} set but no dev items to evaluate "
                             "(give the trainer eval_data, or train(..., eval_items=...) where the trainer takes it)")
        plan = self.plan()
        self._digest = None
        self.optimizer = self.build_optimizer(plan)
        self.scheduler = self.build_scheduler(self.optimizer, plan)
        self.history, self.eval_history, self._pending, self.global_step = [], [], {}, 0
        self._best_state = None
        self._seconds_before, self._loop_start = 0.0, None
        self._cpu_before, self._cpu_start = 0.0, None
        ckpt = self._resolve_resume(resume_from)
        self.resumed_from = ckpt
        if ckpt is not None:
            self._check_resume(read_checkpoint_state(ckpt).get("extra", {}), plan, ckpt)
            state = load_checkpoint(ckpt, modules={self.checkpoint_key: self.checkpoint_module()},
                                    optimizer=self.optimizer, scheduler=self.scheduler, restore_rng=True)
            extra = state["extra"]
            self.global_step = int(state["step"])
            self.history = list(extra.get("history", []))
            self.eval_history = list(extra.get("eval_history", []))
            self._pending = dict(extra.get("pending_log", {}))
            self._seconds_before = float(extra.get("train_seconds", 0.0))
            self._cpu_before = float(extra.get("train_cpu_seconds", 0.0))
            if self._log is not None and self.is_main_process:
                self._log.truncate_after(self.global_step)  # drop records written after the checkpoint
            self.accelerator.wait_for_everyone()
        else:
            self._prepare_output_dir()
            seed_everything(args.seed)
            self._broadcast_weights()

        end = plan.total_steps if stop_after_step is None else min(plan.total_steps, int(stop_after_step))
        stopped_early = self.plateau_reached()
        last_ckpt: Optional[Path] = None
        was_training = self.model.training
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self._loop_start, self._cpu_start = time.perf_counter(), time.process_time()
        bar = tqdm(total=plan.total_steps, initial=self.global_step,
                   disable=not (args.progress and self.is_main_process),
                   desc=f"{type(self.model).__name__} training", dynamic_ncols=True)
        with attention_implementation(self.model, args.attn_implementation):  # restored on any exit
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
                    if step % args.logging_steps == 0 or step == plan.total_steps:
                        self._flush_log(plan)
                    epoch_end = step % plan.steps_per_epoch == 0
                    if self.eval_data and ((args.eval_steps is not None and step % args.eval_steps == 0)
                                           or (args.eval_at_epoch_end and epoch_end)):
                        self._evaluate_and_record(plan)
                        stopped_early = self.plateau_reached()
                    save_due = (step % args.save_steps == 0) if args.save_steps is not None else epoch_end
                    if save_due or stopping or stopped_early:
                        last_ckpt = self._save(plan) or last_ckpt
            finally:
                bar.close()
                self.model.train(was_training)

        best = self.best_evaluation()
        if args.load_best_model_at_end and best is not None and (self.global_step >= plan.total_steps or stopped_early):
            self._restore_best()
        final: dict[str, float] = {}
        if stopped_early and best is not None:
            final = {k: v for k, v in best.items() if k not in ("step", "epoch")} if args.load_best_model_at_end else {}
        elif self.global_step >= plan.total_steps and self.eval_data:
            done = [r for r in self.eval_history if r.get("step") == self.global_step]
            if done:
                final = {k: v for k, v in done[-1].items() if k not in ("step", "epoch")}
            else:
                final = self.evaluate(self.eval_data)
        key = args.metric_for_best_model
        result = TrainResult(history=list(self.history), eval_history=list(self.eval_history), final_metrics=final,
                             global_step=self.global_step, total_steps=plan.total_steps, checkpoint=last_ckpt,
                             stopped_early=stopped_early, best_step=None if best is None else int(best["step"]),
                             best_metric=None if best is None else float(best[key]),
                             train_seconds=self._seconds_so_far(), train_cpu_seconds=self._cpu_seconds_so_far())
        self._loop_start = self._cpu_start = None
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    # ------------------------------------------------------------------ plateau and best model
    def best_evaluation(self) -> Optional[dict[str, Any]]:
        """The evaluation record with the best ``metric_for_best_model`` (the first of equals), or ``None``."""
        key = self.args.metric_for_best_model
        scored = [r for r in self.eval_history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not scored:
            return None
        pick = max if self.args.best_is_greater else min
        return pick(scored, key=lambda r: r[key])

    def plateau_reached(self) -> bool:
        r"""Whether early stopping applies: ``early_stopping_patience`` consecutive evaluations did not
        improve on the best value before them by more than ``early_stopping_threshold`` (relative)
        (:meth:`PlateauConfig.plateau_step`)."""
        return self.args.plateau_step(self.eval_history) is not None

    def _best_dir(self) -> Optional[Path]:
        return None if self.args.output_dir is None else Path(self.args.output_dir) / "best"

    def _keep_if_best(self, record: Mapping[str, Any]) -> None:
        """Keep the trainable weights when ``record`` is the best evaluation so far (memory and ``output_dir/best``)."""
        if not self.args.load_best_model_at_end or self.best_evaluation() is not record:
            return
        module = TrainableParameters(self.model)
        self._best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        best_dir = self._best_dir()
        if best_dir is not None and self.is_main_process:
            save_checkpoint(best_dir, step=self.global_step, modules={"model": module},
                            extra={"metric": self.args.metric_for_best_model,
                                   "value": record[self.args.metric_for_best_model]}, keep_last=1)

    def _restore_best(self) -> None:
        module = TrainableParameters(self.model)
        state = self._best_state
        if state is not None:
            module.load_state_dict(state)
            return
        best_dir = self._best_dir()
        found = latest_checkpoint(best_dir) if best_dir is not None and best_dir.is_dir() else None
        if found is None:
            raise CheckpointError(f"{type(self).__name__}: load_best_model_at_end but no best weights under {best_dir}")
        load_checkpoint(found, modules={"model": module}, restore_rng=False)

    def _evaluate_and_record(self, plan: TrainingPlan) -> dict[str, Any]:
        metrics = self.evaluate(self.eval_data)
        record = {"step": self.global_step, "epoch": self.global_step / plan.steps_per_epoch, **metrics}
        self.eval_history.append(record)
        self._keep_if_best(record)
        if self._log is not None and self.is_main_process:
            self._log.append({"kind": "eval", **record})
        for cb in self.callbacks:
            cb.on_evaluate(self, record)
        return record

    def on_main_process(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed on the main process and broadcast to every rank (call it on every rank).

        An exception raised there is raised on every rank, so none waits forever.
        """
        if self.world_size == 1:
            return fn()
        outcome: Any = None
        if self.is_main_process:
            try:
                outcome = ("ok", fn())
            except Exception as err:  # sent to the other ranks too, so none waits forever
                outcome = ("error", err)
        status, payload = dist_utils.broadcast_object(outcome)
        if status == "error":
            raise payload
        return payload

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, items={len(self.train_data)})"
