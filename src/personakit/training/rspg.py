r"""Training the retriever selector (RSPG; Salemi, Kallumadi and Zamani, SIGIR 2024, §3.2, Figure 4).

For each training input, every retriever $R_i$ builds a prompt, the frozen LLM
answers it, and the answer is scored against the reference: $\mathrm{EVAL}_i$.  The
selector is trained to match the distribution of those scores (Eq. 5–7):

$$\mathcal{L} = \frac{1}{|B|}\sum_{x \in B}
  \mathrm{KL}\Big(\operatorname{softmax}_i(\mathrm{EVAL}_i / \tau_t) \,\Big\|\,
  \operatorname{softmax}_i S_w(R_i, x)\Big).$$

The EVAL scores are computed once, before training (the LLM is frozen), and passed
in as :class:`RSPGItem` records.  :class:`RSPGTrainer` runs AdamW with a linear
warm-up / decay schedule, gradient accumulation and clipping, logs every step
(``log.jsonl`` and a tqdm bar) and checkpoints through
:mod:`personakit.training.checkpoint`; a stopped run resumes where it stopped and
ends exactly where the uninterrupted run would have.

Evaluation (:meth:`RSPGTrainer.evaluate`) reports the paper's selection success rate
(Table 4), the mean EVAL of the chosen retrievers (Table 3), the best single retriever,
and the oracle bounds (Table 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator

from personakit.functional.selector import (
    best_single_retriever,
    oracle_bounds,
    selected_performance,
    selection_success_rate,
)
from personakit.losses.selector import SelectorKLLoss
from personakit.retrieval.selector import RetrieverSelector
from personakit.training.callbacks import FunctionCallback
from personakit.training.schedules import linear_warmup_decay_schedule, warmup_steps_from_ratio
from personakit.training.trainer import PlateauConfig, Trainer, TrainingConfig, TrainingPlan

__all__ = ["RSPGItem", "RSPGTrainer", "RSPGTrainerConfig", "RSPGTrainOutput", "as_rspg_items"]


@dataclass
class RSPGItem:
    """One training / evaluation input of the retriever selector.

    Attributes:
        prompts: The prompt built from each retriever's results, one per retriever (same order in every item).
        evals: $\\mathrm{EVAL}(y, M(\\text{prompt}_i))$ per retriever (higher is better).
        outputs: The LLM's output for each prompt (required for RSPG-Post).
        id: Optional identifier (used in error messages).
    """

    prompts: list[str]
    evals: list[float]
    outputs: Optional[list[str]] = None
    id: Optional[str] = None


def as_rspg_items(items: Iterable[RSPGItem | Mapping[str, Any]], *, source: str = "items") -> list[RSPGItem]:
    """Validate ``items`` (``RSPGItem`` or mappings with ``prompts``, ``evals``, optional ``outputs``, ``id``).

    Raises:
        ValueError: naming the item (position and id) and the field that is malformed,
            or items with different numbers of retrievers.
    """
    out: list[RSPGItem] = []
    n_retrievers: Optional[int] = None
    for k, raw in enumerate(items):
        where = f"{source}[{k}]"
        if isinstance(raw, RSPGItem):
            prompts, evals, outputs, ident = raw.prompts, raw.evals, raw.outputs, raw.id
        elif isinstance(raw, Mapping):
            unknown = set(raw) - {"prompts", "evals", "outputs", "id"}
            if unknown:
                raise ValueError(f"{where}: unknown fields {sorted(unknown)} (expected prompts, evals, outputs, id)")
            for name in ("prompts", "evals"):
                if name not in raw:
                    raise ValueError(f"{where}: field {name!r} is missing")
            prompts, evals, outputs, ident = raw["prompts"], raw["evals"], raw.get("outputs"), raw.get("id")
        else:
            raise ValueError(f"{where}: expected an RSPGItem or a mapping; got {type(raw).__name__}")
        if ident is not None:
            where += f" (id {ident!r})"
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ValueError(f"{where}: field 'prompts' must be a non-empty list of strings (one per retriever)")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(f"{where}: field 'prompts'[{i}] must be a string; got {type(p).__name__}")
        if isinstance(evals, str) or not isinstance(evals, Sequence) or len(evals) != len(prompts):
            raise ValueError(f"{where}: field 'evals' must be a list of {len(prompts)} numbers (one per prompt)")
        clean_evals = []
        for i, e in enumerate(evals):
            try:
                value = float(e)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: field 'evals'[{i}] is not a number: {e!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{where}: field 'evals'[{i}] is not finite: {value}")
            clean_evals.append(value)
        if outputs is not None:
            if isinstance(outputs, str) or not isinstance(outputs, Sequence) or len(outputs) != len(prompts):
                raise ValueError(f"{where}: field 'outputs' must be a list of {len(prompts)} strings (one per prompt)")
            for i, o in enumerate(outputs):
                if not isinstance(o, str):
                    raise ValueError(f"{where}: field 'outputs'[{i}] must be a string; got {type(o).__name__}")
            outputs = list(outputs)
        if n_retrievers is None:
            n_retrievers = len(prompts)
        elif len(prompts) != n_retrievers:
            raise ValueError(f"{where}: {len(prompts)} prompts, but earlier items have {n_retrievers} (one per retriever)")
        out.append(RSPGItem(prompts=list(prompts), evals=clean_evals, outputs=outputs,
                            id=None if ident is None else str(ident)))
    return out


class RSPGTrainerConfig(PlateauConfig):
    """Config of :class:`RSPGTrainer` (defaults from the paper, §6.1: Adam, lr $10^{-5}$, 5% warm-up,
    gradient clipping 1, 20 epochs, effective batch 64 = 8 × 8 accumulation).

    Training to a plateau uses the shared fields of
    :class:`~personakit.training.trainer.PlateauConfig` with dev items passed as
    ``train(items, eval_items=dev)``: :meth:`RSPGTrainer.evaluate` runs every ``eval_steps``
    steps and ``metric_for_best_model`` defaults to the dev KL loss (``"loss"``).  The paper
    trains a fixed 20 epochs; early stopping is off by default.

    Example:
        >>> cfg = RSPGTrainerConfig(eval_steps=25, early_stopping_patience=4, load_best_model_at_end=True)
        >>> cfg.training_config().early_stopping_patience, cfg.best_is_greater
        (4, False)
    """

    _renamed_: ClassVar[dict[str, str]] = {"num_epochs": "epochs", "save_every": "save_steps",
                                            "log_every": "logging_steps", "eval_every": "eval_steps",
                                            "progress_bar": "progress"}

    epochs: int = Field(20, ge=1, description="Passes over the training items (paper: 20).")
    max_steps: Optional[int] = Field(None, ge=1, description=(
        "If set, the total number of optimizer steps (the schedule spans it); epochs repeat as needed."))
    batch_size: int = Field(8, ge=1, description=(
        "Inputs per micro-batch; each contributes one text per retriever to the encoder pass."))
    gradient_accumulation_steps: int = Field(8, ge=1, description=(
        "Micro-batches per optimizer step (effective batch = batch_size × this; paper: 8 × 8)."))
    learning_rate: float = Field(1e-5, gt=0.0, description="Peak learning rate (paper: 1e-5).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay; 0 gives the paper's Adam.")
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0, description=(
        "Fraction of the optimizer steps spent warming up linearly (paper: 5%): $w = \\lfloor r T \\rfloor$ "
        "steps with factor $(s+1)/(w+1)$ (:func:`~personakit.training.schedules.warmup_factor`); then linear "
        "decay to 0."))
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description=(
        "Gradient clipping by global norm (paper: 1); ``None`` disables it."))
    target_temperature: float = Field(1.0, gt=0.0, description=(
        "Temperature $\\tau_t$ of the target $\\operatorname{softmax}(\\mathrm{EVAL}/\\tau_t)$ (paper: 1)."))
    target_normalization: Literal["none", "range"] = Field("none", description=(
        "Per-input rescaling of the EVALs before the target softmax (:func:`~personakit.losses.selector."
        "normalize_evals`): ``\"none\"`` (paper) or ``\"range\"`` ($(\\mathrm{EVAL} - \\max)/(\\max - \\min) "
        "\\in [-1, 0]$ per input, so ROUGE-sized differences of 0.01–0.05 still give a sharp target; use it with "
        "``target_temperature`` about 0.1)."))
    head_learning_rate: Optional[float] = Field(None, gt=0.0, description=(
        "Peak learning rate of the linear head, which starts from random weights while the encoder is "
        "pretrained; ``None`` uses ``learning_rate`` (the paper's single rate).  With few optimizer steps "
        "(small training splits) the head barely moves at an encoder-sized rate; 1e-3 suits such runs."))
    shuffle: bool = Field(True, description=(
        "Shuffle every epoch, with an order that depends only on ``seed`` and the epoch (so resuming is "
        "exact)."))
    seed: int = Field(0, ge=0, description=(
        "Seed of the data order and, at the start of a fresh run, of Python, NumPy and torch."))
    output_dir: Optional[str] = Field(None, description=(
        "Folder for ``checkpoint-*`` folders and ``log.jsonl``; ``None`` keeps nothing on disk."))
    save_steps: Optional[int] = Field(None, ge=1, description=(
        "Checkpoint every this many optimizer steps (a final checkpoint is always written with "
        "``output_dir``)."))
    keep_last: int = Field(2, ge=1, description="How many checkpoints to keep (newest first).")
    resume: bool = Field(True, description=(
        "Resume from the newest complete checkpoint in ``output_dir`` when there is one."))
    logging_steps: int = Field(1, ge=1, description="Write a log record every this many optimizer steps.")
    eval_batch_size: int = Field(32, ge=1, description="Inputs per encoder pass in :meth:`RSPGTrainer.evaluate`.")
    progress: bool = Field(True, description="Show a tqdm progress bar.")
    device: Optional[str] = Field(None, description="Device to train on (``None``: wherever the selector is).")

    @model_validator(mode="after")
    def _check(self) -> "RSPGTrainerConfig":
        if self.save_steps is not None and self.output_dir is None:
            raise ValueError("save_steps needs output_dir (where the checkpoints go)")
        return self

    def training_config(self) -> TrainingConfig:
        """These settings as the shared loop's :class:`~personakit.training.trainer.TrainingConfig`.

        Checkpoints hold the whole selector; a fresh start (``resume=False`` or no
        checkpoint yet) replaces older checkpoints in ``output_dir``.
        """
        return TrainingConfig(
            output_dir=self.output_dir, overwrite_output_dir=True, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, epochs=self.epochs, max_steps=self.max_steps,
            batch_size=self.batch_size, gradient_accumulation_steps=self.gradient_accumulation_steps,
            max_grad_norm=self.max_grad_norm, seed=self.seed, logging_steps=self.logging_steps,
            eval_at_epoch_end=False, save_steps=self.save_steps, **self.plateau_settings(),
            keep_last=self.keep_last, checkpoint_weights="all", progress=self.progress,
            learning_rate_multipliers=({} if self.head_learning_rate is None
                                       else {"head.*": self.head_learning_rate / self.learning_rate}))


@dataclass
class RSPGTrainOutput:
    """Result of :meth:`RSPGTrainer.train`.

    Attributes:
        global_step: Optimizer steps done in total (including those before a resume).
        history: The log records of this call (one dict per logged step).
        resumed_from: The checkpoint the run resumed from, if any.
        last_checkpoint: The last checkpoint written, if any.
        eval_metrics: The final evaluation on ``eval_items``, if given.
        eval_history: The evaluations of the whole run (``step``, ``epoch`` and the metrics).
        train_seconds: Wall time of training over the whole run, the runs it resumed included.
        train_cpu_seconds: The process's CPU time over the same training loops
            (:attr:`~personakit.training.trainer.TrainResult.train_cpu_seconds`).
    """

    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: Optional[Path] = None
    last_checkpoint: Optional[Path] = None
    eval_metrics: Optional[dict[str, float]] = None
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0


class RSPGTrainer(Trainer):
    r"""Trains a :class:`~personakit.retrieval.RetrieverSelector` by KL distillation from downstream EVAL scores.

    Implements the RSPG objective of Salemi et al. (SIGIR 2024), Eq. (7), with the
    paper's optimisation (§6.1) as defaults (see :class:`RSPGTrainerConfig`), on the
    shared loop of :class:`~personakit.training.trainer.Trainer` (atomic checkpoints, an
    fsynced ``log.jsonl``, resumption checked against the config and a digest of the items).

    **Departures from the paper.**  The paper uses Adam; this uses AdamW, identical
    with the default ``weight_decay=0`` (weight decay, when set, applies to weight matrices only).
    Two options, off by default, are not in the paper: ``target_normalization="range"``
    rescales each input's EVALs to $[-1, 0]$ before the target softmax
    (:func:`~personakit.losses.selector.normalize_evals`), and ``head_learning_rate`` gives
    the freshly initialised linear head its own rate.

    **Small training splits.**  The paper trains on thousands of inputs for 20 epochs
    (thousands of updates).  With tens of inputs and a few dozen updates at an
    encoder-sized rate, the selector only learns the retriever that is best most often
    and picks it for every input: its success rate is then that retriever's share of
    (tied-)best inputs, at most the majority-choice rate of
    :func:`~personakit.retrieval.selector_diagnostics`.  With ROUGE-sized EVAL differences (0.10 vs 0.12) the paper's target
    is also nearly uniform, so what signal there is is weak.  For such runs give it
    hundreds of updates (more epochs, smaller effective batches), a larger rate for the
    head (``head_learning_rate``) and ``target_normalization="range"`` with
    ``target_temperature`` about 0.1, and check the fit with
    :func:`~personakit.retrieval.selector_diagnostics` on the training split.

    Args:
        selector: The selector to train (in place).
        config: Training settings (default :class:`RSPGTrainerConfig()`).
        **overrides: Config fields to change, e.g. ``RSPGTrainer(sel, epochs=3)``.

    Example:
        >>> trainer = RSPGTrainer(selector, output_dir="runs/rspg", epochs=20)  # doctest: +SKIP
        >>> items = [RSPGItem(prompts=[p_bm25, p_recency], evals=[0.31, 0.52])]  # doctest: +SKIP
        >>> trainer.train(items, eval_items=dev_items).eval_metrics["success_rate"]  # doctest: +SKIP

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
    """

    name = "rspg"
    log_file = "log.jsonl"
    checkpoint_key = "selector"
    count_key = "n_items"
    digest_key = "items_digest"
    resume_fields = ("epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                     "weight_decay", "warmup_ratio", "target_temperature", "target_normalization",
                     "head_learning_rate", "shuffle", "seed")
    reseed_every_step = False

    def __init__(self, selector: RetrieverSelector, config: Optional[RSPGTrainerConfig] = None, **overrides: Any):
        if not isinstance(selector, RetrieverSelector):
            raise TypeError(f"RSPGTrainer: selector must be a RetrieverSelector; got {type(selector).__name__}")
        config = config or RSPGTrainerConfig()
        if overrides:
            config = RSPGTrainerConfig.from_dict({**config.model_dump(), **overrides}, source="RSPGTrainer overrides")
        if config.device is not None:
            selector.to(config.device)
        super().__init__(selector, config.training_config(), config=config, wrap_model=False)
        self.selector = selector
        self.loss_fn = SelectorKLLoss(temperature=config.target_temperature, normalization=config.target_normalization)

    # ----------------------------------------------------------------- helpers
    def _batch_inputs(self, batch: Sequence[RSPGItem]) -> tuple[list[list[str]], Optional[list[list[str]]]]:
        prompts = [it.prompts for it in batch]
        if self.selector.mode == "post":
            missing = [it.id or str(k) for k, it in enumerate(batch) if it.outputs is None]
            if missing:
                raise ValueError(f"RSPG-Post needs the LLM outputs of every item; items without 'outputs': {missing[:5]}")
            return prompts, [it.outputs for it in batch]  # type: ignore[misc]
        return prompts, None

    def _evals(self, batch: Sequence[RSPGItem]) -> torch.Tensor:
        return torch.tensor([it.evals for it in batch], dtype=torch.float32, device=self.selector.device)  # (B, R)

    def steps_per_epoch(self, n_items: int) -> int:
        """Optimizer steps in one epoch over ``n_items`` items."""
        return self.plan(n_items).steps_per_epoch

    def total_steps(self, n_items: int) -> int:
        """Optimizer steps of the whole run (``max_steps`` or epochs × steps per epoch)."""
        return self.plan(n_items).total_steps

    # ----------------------------------------------------------------- loop hooks
    def epoch_order(self, epoch: int) -> np.ndarray:
        """The shared seeded permutation of the epoch, or the given order with ``shuffle=False``."""
        if not self.config.shuffle:
            return np.arange(len(self.train_data))
        return super().epoch_order(epoch)

    def compute_loss(self, batch: list[RSPGItem]) -> tuple[torch.Tensor, dict[str, float]]:
        """KL loss of the selector's scores against the EVAL targets; logs ``loss`` and ``success_rate``."""
        prompts, outputs = self._batch_inputs(batch)
        evals = self._evals(batch)  # (b, R)
        scores = self.selector(prompts, outputs)  # (b, R)
        parts = self.loss_fn.forward_with_parts(scores, evals)
        return parts.loss, {"loss": parts.loss.item(),
                            "success_rate": selection_success_rate(scores.detach().argmax(-1), evals)}

    def build_scheduler(self, optimizer: torch.optim.Optimizer, plan: TrainingPlan
                        ) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up over ``floor(warmup_ratio * total)`` steps, then linear decay towards 0."""
        warmup = warmup_steps_from_ratio(self.config.warmup_ratio, plan.total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay_schedule(plan.total_steps, warmup))

    # ------------------------------------------------------------------- train
    def train(self, items: Iterable[RSPGItem | Mapping[str, Any]],  # type: ignore[override]
              eval_items: Optional[Iterable[RSPGItem | Mapping[str, Any]]] = None,
              callback: Optional[Callable[[dict[str, Any]], None]] = None, *,
              stop_after_step: Optional[int] = None) -> RSPGTrainOutput:
        """Train the selector on ``items``; resume from ``output_dir`` when a checkpoint is there (``resume``).

        Args:
            items: Training inputs (:class:`RSPGItem` or mappings; validated by :func:`as_rspg_items`).
            eval_items: Optional held-out inputs, evaluated every ``eval_steps`` steps and at the end.
            callback: Called with every log record (e.g. to report to an experiment tracker);
                an exception it raises stops training (the last checkpoint stays valid).
            stop_after_step: Stop once this global step is done (a time budget), keeping the
                schedule of the full run; a checkpoint is written there (with ``output_dir``).

        Returns:
            :class:`RSPGTrainOutput`.
        """
        cfg = self.config
        items = as_rspg_items(items, source="items")
        if not items:
            raise ValueError("RSPGTrainer.train: no training items")
        eval_list = as_rspg_items(eval_items, source="eval_items") if eval_items is not None else None
        self._batch_inputs(items[:1])  # fail early on Post items without outputs
        self.train_data, self.eval_data = items, eval_list or None
        extra = [FunctionCallback(callback)] if callback is not None else []
        self.callbacks.extend(extra)
        try:
            result = super().train(resume_from="latest" if cfg.output_dir is not None and cfg.resume else None,
                                   stop_after_step=stop_after_step)
        finally:
            for cb in extra:
                self.callbacks.remove(cb)
        self.selector.eval()
        start = 0 if self.resumed_from is None else int(self.resumed_from.name.rsplit("-", 1)[-1])
        return RSPGTrainOutput(global_step=result.global_step, history=[r for r in result.history if r["step"] > start],
                               resumed_from=self.resumed_from, last_checkpoint=result.checkpoint or self.resumed_from,
                               eval_metrics=result.final_metrics or None, eval_history=result.eval_history,
                               train_seconds=result.train_seconds, train_cpu_seconds=result.train_cpu_seconds)

    # ---------------------------------------------------------------- evaluate
    @torch.no_grad()
    def predict(self, items: Iterable[RSPGItem | Mapping[str, Any]], batch_size: Optional[int] = None) -> torch.Tensor:
        """Selector scores ``[B, R]`` (eval mode, no gradient) for ``items``."""
        items = as_rspg_items(items, source="items")
        self.selector.eval()
        bs = batch_size or self.config.eval_batch_size
        parts = []
        for i in range(0, len(items), bs):
            prompts, outputs = self._batch_inputs(items[i:i + bs])
            parts.append(self.selector.score(prompts, outputs).float().cpu())
        return torch.cat(parts, 0) if parts else torch.zeros(0, 0)

    def evaluate(self, items: Iterable[RSPGItem | Mapping[str, Any]], batch_size: Optional[int] = None
                 ) -> dict[str, float]:
        """Selection quality on ``items`` (the selector is left in eval mode).

        Returns:
            ``success_rate`` (Table 4), ``selected_eval`` (mean EVAL of the chosen
            retrievers, Table 3), ``loss`` (mean KL), ``best_single_eval`` and
            ``best_single_index`` (the best retriever used for every input),
            ``oracle_lower`` / ``oracle_upper`` (Table 5).
        """
        items = as_rspg_items(items, source="items")
        if not items:
            raise ValueError("RSPGTrainer.evaluate: no items")
        scores = self.predict(items, batch_size=batch_size)  # (B, R)
        evals = torch.tensor([it.evals for it in items], dtype=torch.float64)  # (B, R)
        chosen = scores.argmax(-1)
        lower, upper = oracle_bounds(evals)
        best_i, best_mean = best_single_retriever(evals)
        loss = SelectorKLLoss(temperature=self.config.target_temperature,
                              normalization=self.config.target_normalization)(scores.double(), evals)
        return {"success_rate": selection_success_rate(chosen, evals), "selected_eval": selected_performance(chosen, evals),
                "loss": float(loss), "best_single_eval": best_mean, "best_single_index": float(best_i),
                "oracle_lower": lower, "oracle_upper": upper}
