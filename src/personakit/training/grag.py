r"""Training loop of the GRAG models (PreSFT, PreGRAG, PostGRAG) on Hugging Face Accelerate.

GRAG (Liu et al., 2026, §4.3) trains every model with AdamW, the learning rate
decaying linearly to 50% of its initial value by the final step, and minimises

$$L = L_P + \alpha L_G + \beta L_{CJEPA}$$

(PreSFT: $L = L_P$; PreGRAG: $\alpha = 0$).  :class:`GRAGTrainer` runs that recipe on the
shared loop of :class:`~personakit.training.trainer.Trainer` (it adds the GRAG inputs,
evaluation and generation):

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

import copy
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from personakit.training.callbacks import TrainerCallback
from personakit.training.logging import LOG_FILE
from personakit.training.schedules import linear_decay_schedule
from personakit.training.trainer import Trainer, TrainingConfig, TrainingPlan, TrainResult
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

MODEL_METRICS = ("bpc", "loss")
"""Evaluation metrics computed from the model's teacher-forced pass (not from generated text):
``"bpc"`` (bits per character of the references) and ``"loss"`` (the loss terms)."""


# --------------------------------------------------------------------------- config
class GRAGTrainingConfig(TrainingConfig):
    """Settings of :class:`GRAGTrainer`: the loop's :class:`~personakit.training.trainer.TrainingConfig`
    (paper defaults where the paper gives one) and the evaluation and generation settings.

    Example:
        >>> cfg = GRAGTrainingConfig(max_steps=100, eval_metrics=["rouge", "bpc"])
        >>> cfg.final_lr_fraction, cfg.learning_rate
        (0.5, 0.0001)
    """

    learning_rate: float = Field(1e-4, gt=0.0, description=(
        "Initial (peak) learning rate of AdamW (paper grid: $10^{-3}$, $10^{-4}$, $10^{-5}$)."))
    final_lr_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "The learning rate decays linearly to this fraction of its initial value at the final step (paper: "
        "50%); see :func:`~personakit.training.schedules.linear_decay_schedule`."))
    warmup_steps: int = Field(0, ge=0, description=(
        "Optimizer steps of linear warm-up before the decay (not in the paper: 0)."))
    epochs: int = Field(20, ge=1, description=(
        "Passes over the training examples (paper: 20); ignored when ``max_steps`` is set."))
    eval_metrics: list[str] = Field(["char_f1", "rouge", "bleu"], min_length=1,
                                    description=(
        "Names understood by :func:`~personakit.eval.evaluate_texts` (``\"char_f1\"``, ``\"rouge\"``, "
        "``\"bleu\"``, ``\"meteor\"``, ``\"bertscore\"``, ...) plus ``\"bpc\"`` (bits per character of the "
        "references under the model) and ``\"loss\"`` (teacher-forced loss terms)."))
    eval_metric_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description=(
        "Options per text metric, e.g. ``{\"bertscore\": {\"model\": \"minilm\"}}``."))
    eval_batch_size: int = Field(16, ge=1, description="Examples per batch during evaluation and prediction.")
    max_new_tokens: int = Field(32, ge=1, description=(
        "Maximum generated tokens per response (evaluation and :meth:`GRAGTrainer.predict`)."))
    num_beams: int = Field(1, ge=1, description="Beam width of evaluation generation (1: greedy).")
    generation_options: dict[str, Any] = Field(default_factory=dict,
                                               description=(
        "Extra keyword arguments for the model's ``generate`` (``no_repeat_ngram_size``, ...)."))
    metric_for_best_model: str = Field("loss_p", description=(
        "The evaluation metric that early stopping and ``load_best_model_at_end`` watch (``\"loss_p\"``: the "
        "teacher-forced $L_P$ on ``eval_examples``, which needs ``\"loss\"`` in ``eval_metrics``; "
        "``\"bpc\"``, ``\"rouge1\"``...)."))
    ddp_find_unused_parameters: bool = Field(
        True, description=(
        "Passed to DDP: needed when some parameters get no gradient in a step (PostGRAG's null-style "
        "extractor when $\\alpha = 0$); set ``False`` for a little speed when every parameter is used."))

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


# --------------------------------------------------------------------------- helpers
def _check_examples(examples: Any, what: str) -> list[ResponseExample]:
    if examples is None:
        raise ValueError(f"GRAGTrainer: {what} is None")
    items = list(examples)
    for i, ex in enumerate(items):
        if not isinstance(ex, ResponseExample):
            raise TypeError(f"GRAGTrainer: {what}[{i}] is a {type(ex).__name__}, expected ResponseExample")
    return items


# --------------------------------------------------------------------------- trainer
class GRAGTrainer(Trainer):
    r"""Train a GRAG model (:class:`~personakit.models.grag.PreSFT`, ``PreGRAG``, ``PostGRAG``).

    GRAG §4.3: AdamW on $L = L_P + \alpha L_G + \beta L_{CJEPA}$ with the learning rate
    decaying linearly to 50% of its initial value (see the module docstring for logging,
    checkpoints, determinism and multi-process behaviour).  The loop, checkpoints and
    resumption are those of :class:`~personakit.training.trainer.Trainer`; the loss is the
    model's own (``model(**collator(examples)).loss``).

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
        history: training records (restored on resume), as in :class:`TrainResult`.
        eval_history: evaluation records (restored on resume).
        global_step: optimizer steps done.
        accelerator: the Accelerate object (``num_processes``, ``process_index``, ``device``).

    Example:
        >>> trainer = GRAGTrainer(model, GRAGTrainingConfig(max_steps=10, output_dir="run"),
        ...                       train_examples=train)  # doctest: +SKIP
        >>> result = trainer.train(stop_after_step=4)  # doctest: +SKIP
        >>> result = trainer.train(resume_from="latest")  # same weights as one 10-step run  # doctest: +SKIP
    """

    name = "grag"
    config_class: type = GRAGTrainingConfig

    def __init__(self, model: nn.Module, config: Optional[GRAGTrainingConfig] = None, *,
                 train_examples: Sequence[ResponseExample],
                 eval_examples: Optional[Sequence[ResponseExample]] = None,
                 collator: Optional[Callable[[list[ResponseExample]], dict[str, Tensor]]] = None,
                 callbacks: Optional[Sequence[Union[TrainerCallback, Callable[[dict[str, Any]], Any]]]] = None,
                 accelerator: Any = None):
        who = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(f"{who}: model must be an nn.Module (a GRAG model), got {type(model).__name__}")
        config = config if config is not None else self.config_class()
        if not isinstance(config, GRAGTrainingConfig):
            raise TypeError(f"{who}: config must be a GRAGTrainingConfig, got {type(config).__name__}")
        train = _check_examples(train_examples, "train_examples")
        if not train:
            raise ValueError(f"{who}: train_examples is empty")
        dev = None if eval_examples is None else _check_examples(eval_examples, "eval_examples")
        if collator is None:
            make = getattr(model, "make_collator", None)
            if not callable(make):
                raise ValueError(f"{who}: give a collator (the model has no make_collator())")
            collator = make()
        self.collator = collator
        super().__init__(model, config, train_data=train, eval_data=dev, callbacks=callbacks,
                         accelerator=accelerator)

    @property
    def train_examples(self) -> list[ResponseExample]:
        """The training examples (:attr:`train_data`)."""
        return self.train_data

    @property
    def eval_examples(self) -> Optional[list[ResponseExample]]:
        """The dev examples (:attr:`eval_data`)."""
        return self.eval_data

    # ------------------------------------------------------------------ hooks
    def collate(self, items: list[ResponseExample]) -> dict[str, Any]:
        """``collator(items)`` on the training device."""
        return self._to_device(self.collator(items))

    def checkpoint_identity(self) -> dict[str, Any]:
        """The model class (a checkpoint of another GRAG model is refused)."""
        return {"model_class": type(self.model).__name__}

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
            losses = getattr(out, "losses", None)
            terms = losses() if callable(losses) else {"loss": float(out.loss)}
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value * len(chunk) / len(examples)
            labels = getattr(out, "labels", None)
            labels = labels if labels is not None else batch["labels"]  # (B, T): aligned with the logits
            logits = out.logits  # (B, T, V)
            if not encdec:  # position t predicts token t + 1
                logits, labels = logits[:, :-1], labels[:, 1:]
            scored = labels != -100  # (B, T); only these positions need a log-softmax over the vocabulary
            rows = scored.nonzero(as_tuple=True)
            target = labels[rows]  # (N,)
            token_lp = torch.log_softmax(logits[rows].float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            per_example = torch.zeros(labels.shape[0], dtype=torch.float64, device=labels.device)
            per_example.index_add_(0, rows[0], token_lp.double())  # (B,)
            lls += [float(v) for v in per_example.cpu()]
        return lls, sums

    def reference_log_likelihoods(self, examples: Sequence[ResponseExample]) -> list[float]:
        """Per-example natural-log likelihood of ``example.response`` under the model (teacher forcing).

        The tokens scored are those the training loss counts (the collator's ``labels``),
        the same numbers :meth:`evaluate`'s ``"bpc"`` sums; the model is in eval mode
        meanwhile (no dropout) and goes back to its mode afterwards.  A per-example score
        for paired tests, or a reward (the retrieved-persona recipe trains its RSPG
        selector on it).
        """
        examples = _check_examples(examples, "examples")
        model = self.model
        was_training = model.training
        model.eval()
        try:
            return self._teacher_forced(examples)[0]
        finally:
            model.train(was_training)

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
            raise ValueError(f"{type(self).__name__}.evaluate: no examples")
        return self.on_main_process(lambda: self._evaluate_local(examples))

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
        return (f"{type(self).__name__}(model={type(self.model).__name__}, examples={plan.n_examples}, "
                f"steps={plan.total_steps}, world_size={plan.world_size})")

