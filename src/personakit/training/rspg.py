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

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator

from personakit.config import BaseConfig, atomic_write_text
from personakit.functional.selector import (
    best_single_retriever,
    oracle_bounds,
    selected_performance,
    selection_success_rate,
)
from personakit.losses.selector import SelectorKLLoss
from personakit.retrieval.selector import RetrieverSelector
from personakit.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["RSPGItem", "RSPGTrainer", "RSPGTrainerConfig", "RSPGTrainOutput", "as_rspg_items"]

_LOG_FILE = "log.jsonl"


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


class RSPGTrainerConfig(BaseConfig):
    """Config of :class:`RSPGTrainer` (defaults from the paper, §6.1: Adam, lr $10^{-5}$, 5% warm-up,
    gradient clipping 1, 20 epochs, effective batch 64 = 8 × 8 accumulation)."""

    num_epochs: int = Field(20, ge=1, description="Passes over the training items.")
    """Passes over the training items (paper: 20)."""
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    """If set, the total number of optimizer steps (the schedule spans it); epochs repeat as needed."""
    batch_size: int = Field(8, ge=1, description="Inputs per micro-batch (each has R texts).")
    """Inputs per micro-batch; each contributes one text per retriever to the encoder pass."""
    gradient_accumulation_steps: int = Field(8, ge=1, description="Micro-batches per optimizer step.")
    """Micro-batches per optimizer step (effective batch = batch_size × this; paper: 8 × 8)."""
    learning_rate: float = Field(1e-5, gt=0.0, description="Peak learning rate.")
    """Peak learning rate (paper: 1e-5)."""
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay (0: Adam, as in the paper).")
    """AdamW weight decay; 0 gives the paper's Adam."""
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0, description="Fraction of steps with linear warm-up.")
    """Fraction of the optimizer steps spent warming up linearly (paper: 5%); then linear decay to 0."""
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description="Gradient clipping norm (None: off).")
    """Gradient clipping by global norm (paper: 1); ``None`` disables it."""
    target_temperature: float = Field(1.0, gt=0.0, description="Temperature of the EVAL target softmax.")
    """Temperature $\\tau_t$ of the target $\\operatorname{softmax}(\\mathrm{EVAL}/\\tau_t)$ (paper: 1)."""
    shuffle: bool = Field(True, description="Shuffle the items every epoch (seeded).")
    """Shuffle every epoch, with an order that depends only on ``seed`` and the epoch (so resuming is exact)."""
    seed: int = Field(0, description="Seed of the data order and, for a fresh run, of the torch RNG.")
    """Seed of the data order and, at the start of a fresh run, of Python, NumPy and torch."""
    output_dir: Optional[str] = Field(None, description="Folder for checkpoints and log.jsonl (None: none).")
    """Folder for ``checkpoint-*`` folders and ``log.jsonl``; ``None`` keeps nothing on disk."""
    save_every: Optional[int] = Field(None, ge=1, description="Checkpoint every this many steps (and at the end).")
    """Checkpoint every this many optimizer steps (a final checkpoint is always written with ``output_dir``)."""
    keep_last: int = Field(2, ge=1, description="Checkpoints to keep.")
    """How many checkpoints to keep (newest first)."""
    resume: bool = Field(True, description="Resume from the latest checkpoint in output_dir.")
    """Resume from the newest complete checkpoint in ``output_dir`` when there is one."""
    log_every: int = Field(1, ge=1, description="Log every this many steps.")
    """Write a log record every this many optimizer steps."""
    eval_every: Optional[int] = Field(None, ge=1, description="Evaluate on eval_items every this many steps.")
    """Evaluate on ``eval_items`` every this many steps (and at the end, when eval items are given)."""
    eval_batch_size: int = Field(32, ge=1, description="Inputs per encoder pass when evaluating.")
    """Inputs per encoder pass in :meth:`RSPGTrainer.evaluate`."""
    progress_bar: bool = Field(True, description="Show a tqdm progress bar.")
    """Show a tqdm progress bar."""
    device: Optional[str] = Field(None, description="Move the selector to this device (None: leave it).")
    """Device to train on (``None``: wherever the selector is)."""

    @model_validator(mode="after")
    def _check(self) -> "RSPGTrainerConfig":
        if self.save_every is not None and self.output_dir is None:
            raise ValueError("save_every needs output_dir (where the checkpoints go)")
        return self


@dataclass
class RSPGTrainOutput:
    """Result of :meth:`RSPGTrainer.train`.

    Attributes:
        global_step: Optimizer steps done in total (including those before a resume).
        history: The log records of this call (one dict per logged step).
        resumed_from: The checkpoint the run resumed from, if any.
        last_checkpoint: The last checkpoint written, if any.
        eval_metrics: The final evaluation on ``eval_items``, if given.
    """

    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: Optional[Path] = None
    last_checkpoint: Optional[Path] = None
    eval_metrics: Optional[dict[str, float]] = None


class RSPGTrainer:
    r"""Trains a :class:`~personakit.retrieval.RetrieverSelector` by KL distillation from downstream EVAL scores.

    Implements the RSPG objective of Salemi et al. (SIGIR 2024), Eq. (7), with the
    paper's optimisation (§6.1) as defaults (see :class:`RSPGTrainerConfig`).

    **Departure from the paper.**  The paper uses Adam; this uses AdamW, identical
    with the default ``weight_decay=0``.

    Args:
        selector: The selector to train (in place).
        config: Training settings (default :class:`RSPGTrainerConfig()`).
        **overrides: Config fields to change, e.g. ``RSPGTrainer(sel, num_epochs=3)``.

    Example:
        >>> trainer = RSPGTrainer(selector, output_dir="runs/rspg", num_epochs=20)  # doctest: +SKIP
        >>> items = [RSPGItem(prompts=[p_bm25, p_recency], evals=[0.31, 0.52])]  # doctest: +SKIP
        >>> trainer.train(items, eval_items=dev_items).eval_metrics["success_rate"]  # doctest: +SKIP

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
    """

    def __init__(self, selector: RetrieverSelector, config: Optional[RSPGTrainerConfig] = None, **overrides: Any):
        if not isinstance(selector, RetrieverSelector):
            raise TypeError(f"RSPGTrainer: selector must be a RetrieverSelector; got {type(selector).__name__}")
        config = config or RSPGTrainerConfig()
        if overrides:
            config = RSPGTrainerConfig.from_dict({**config.model_dump(), **overrides}, source="RSPGTrainer overrides")
        self.config = config
        self.selector = selector
        if config.device is not None:
            self.selector.to(config.device)
        self.loss_fn = SelectorKLLoss(temperature=config.target_temperature)

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

    def _epoch_order(self, n: int, epoch: int) -> list[int]:
        if not self.config.shuffle:
            return list(range(n))
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen).tolist()

    def _step_groups(self, n: int, epoch: int) -> list[list[list[int]]]:
        """Optimizer steps of one epoch: each a list of micro-batches of item indices."""
        order = self._epoch_order(n, epoch)
        bs, acc = self.config.batch_size, self.config.gradient_accumulation_steps
        micro = [order[i:i + bs] for i in range(0, n, bs)]
        return [micro[i:i + acc] for i in range(0, len(micro), acc)]

    def steps_per_epoch(self, n_items: int) -> int:
        """Optimizer steps in one epoch over ``n_items`` items."""
        micro = math.ceil(n_items / self.config.batch_size)
        return math.ceil(micro / self.config.gradient_accumulation_steps)

    def total_steps(self, n_items: int) -> int:
        """Optimizer steps of the whole run (``max_steps`` or epochs × steps per epoch)."""
        return self.config.max_steps or self.config.num_epochs * self.steps_per_epoch(n_items)

    def _make_scheduler(self, optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
        warmup = int(math.ceil(self.config.warmup_ratio * total))

        def factor(step: int) -> float:
            if warmup > 0 and step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # ------------------------------------------------------------------- train
    def train(self, items: Iterable[RSPGItem | Mapping[str, Any]],
              eval_items: Optional[Iterable[RSPGItem | Mapping[str, Any]]] = None,
              callback: Optional[Callable[[dict[str, Any]], None]] = None) -> RSPGTrainOutput:
        """Train the selector on ``items``; resume from ``output_dir`` when a checkpoint is there.

        Args:
            items: Training inputs (:class:`RSPGItem` or mappings; validated by :func:`as_rspg_items`).
            eval_items: Optional held-out inputs, evaluated every ``eval_every`` steps and at the end.
            callback: Called with every log record (e.g. to report to an experiment tracker);
                an exception it raises stops training (the last checkpoint stays valid).

        Returns:
            :class:`RSPGTrainOutput`.
        """
        cfg = self.config
        items = as_rspg_items(items, source="items")
        if not items:
            raise ValueError("RSPGTrainer.train: no training items")
        eval_list = as_rspg_items(eval_items, source="eval_items") if eval_items is not None else None
        self._batch_inputs(items[:1])  # fail early on Post items without outputs
        n = len(items)
        per_epoch = self.steps_per_epoch(n)
        total = self.total_steps(n)
        selector = self.selector
        params = [p for p in selector.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = self._make_scheduler(optimizer, total)
        out_dir = Path(cfg.output_dir) if cfg.output_dir is not None else None

        step = 0
        resumed_from: Optional[Path] = None
        if out_dir is not None and cfg.resume:
            ckpt = latest_checkpoint(out_dir)
            if ckpt is not None:
                state = load_checkpoint(ckpt, modules={"selector": selector}, optimizer=optimizer, scheduler=scheduler)
                saved_n = state["extra"].get("n_items")
                if saved_n is not None and saved_n != n:
                    raise ValueError(f"{ckpt}: the checkpoint was trained on {saved_n} items, not {n}; use another "
                                     "output_dir or resume=False")
                step, resumed_from = state["step"], ckpt
        if resumed_from is None:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            torch.manual_seed(cfg.seed)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._trim_log(out_dir / _LOG_FILE, step)

        history: list[dict[str, Any]] = []
        last_ckpt: Optional[Path] = resumed_from
        eval_metrics: Optional[dict[str, float]] = None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, disable=not cfg.progress_bar, desc="RSPG", dynamic_ncols=True)
        try:
            selector.train()
            while step < total:
                epoch, k = divmod(step, per_epoch)
                group = self._step_groups(n, epoch)[k]
                n_group = sum(len(mb) for mb in group)
                optimizer.zero_grad(set_to_none=True)
                loss_sum = chosen_ok = agree = 0.0
                for mb in group:
                    batch = [items[j] for j in mb]
                    prompts, outputs = self._batch_inputs(batch)
                    evals = self._evals(batch)  # (b, R)
                    scores = selector(prompts, outputs)  # (b, R)
                    parts = self.loss_fn.forward_with_parts(scores, evals)
                    (parts.loss * (len(mb) / n_group)).backward()
                    loss_sum += parts.loss.item() * len(mb)
                    agree += parts.target_agreement.item() * len(mb)
                    chosen_ok += selection_success_rate(scores.detach().argmax(-1), evals) * len(mb)
                if cfg.max_grad_norm is not None:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
                else:
                    grad_norm = float(torch.sqrt(sum((p.grad.detach().float() ** 2).sum() for p in params
                                                     if p.grad is not None)))
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update(1)
                record: Optional[dict[str, Any]] = None
                if step % cfg.log_every == 0 or step == total:
                    record = {"step": step, "epoch": epoch + (k + 1) / per_epoch, "loss": loss_sum / n_group,
                              "success_rate": chosen_ok / n_group, "lr": lr, "grad_norm": grad_norm}
                if eval_list and (step == total or (cfg.eval_every and step % cfg.eval_every == 0)):
                    eval_metrics = self.evaluate(eval_list)
                    selector.train()
                    record = record or {"step": step, "epoch": epoch + (k + 1) / per_epoch}
                    record.update({f"eval_{key}": value for key, value in eval_metrics.items()})
                if out_dir is not None and (step == total or (cfg.save_every and step % cfg.save_every == 0)):
                    last_ckpt = save_checkpoint(out_dir, step=step, modules={"selector": selector}, optimizer=optimizer,
                                                scheduler=scheduler, keep_last=cfg.keep_last,
                                                extra={"n_items": n, "epoch": epoch, "total_steps": total,
                                                       "config": cfg.to_dict()})
                if record is not None:
                    history.append(record)
                    bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
                    if out_dir is not None:
                        with open(out_dir / _LOG_FILE, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(record) + "\n")
                    if callback is not None:
                        callback(record)
        finally:
            bar.close()
        selector.eval()
        if eval_list and eval_metrics is None:
            eval_metrics = self.evaluate(eval_list)
        return RSPGTrainOutput(global_step=step, history=history, resumed_from=resumed_from,
                               last_checkpoint=last_ckpt, eval_metrics=eval_metrics)

    @staticmethod
    def _trim_log(path: Path, step: int) -> None:
        """Drop log records past ``step`` (written after the checkpoint a run resumes from)."""
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))

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
        loss = SelectorKLLoss(temperature=self.config.target_temperature)(scores.double(), evals)
        return {"success_rate": selection_success_rate(chosen, evals), "selected_eval": selected_performance(chosen, evals),
                "loss": float(loss), "best_single_eval": best_mean, "best_single_index": float(best_i),
                "oracle_lower": lower, "oracle_upper": upper}
