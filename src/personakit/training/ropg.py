r"""ROPG trainers: train a differentiable retriever from a frozen LLM's feedback.

Salemi, Kallumadi and Zamani (SIGIR 2024), §4: the retriever $R_\theta$ is a policy
over the top-$l$ candidates $P_{x,l}$ of the *initial* retriever,
$\pi_\theta(d \mid x) = \mathrm{softmax}_{d \in P_{x,l}}(R_\theta(\phi_q(x), d) / \tau)$, and
the LLM $M$ grades every candidate once, up front:
$e_d = \mathrm{EVAL}(y, M(\phi_p(x, [d])))$.

* :class:`ROPGRLTrainer` (ROPG-RL, Eqs. 2–3): sample one $d \sim \pi_\theta$ per input,
  reward $e_d - e_{d_b}$ ($d_b$: the initial retriever's top document, candidate 0),
  minimise $-r \log \pi_\theta(d \mid x)$ (:class:`~personakit.losses.ROPGRLLoss`).
* :class:`ROPGKDTrainer` (ROPG-KD, Eqs. 4–5): minimise
  $\mathrm{KL}(\mathrm{softmax}(e / \tau_t) \,\|\, \pi_\theta)$
  (:class:`~personakit.losses.ROPGKDLoss`).

Data flow:

1. :func:`prepare_ropg_items` (or :meth:`ROPGTrainer.prepare`) ranks each input's profile
   with the initial retriever (BM25, the untrained dense retriever, ...), keeps the top
   $l$ (16) entries, and attaches their EVAL scores: a precomputed list of arrays, or a
   feedback callable such as ``LLMFeedbackScorer.score_candidates`` from
   :mod:`personakit.training.feedback` (batched and cached there).
2. :meth:`ROPGTrainer.train` optimises the retriever (AdamW, linear warm-up and decay,
   gradient clipping, gradient accumulation), logs every step, and checkpoints through
   :func:`personakit.training.checkpoint.save_checkpoint`; ``resume_from="latest"``
   continues a stopped run and gives the same final weights as an uninterrupted one.

The retriever may be a :class:`~personakit.retrieval.DenseRetriever` (scores are dot
products of :meth:`~personakit.retrieval.DenseRetriever.encode_queries` and
:meth:`~personakit.retrieval.DenseRetriever.encode_documents`; its ``.module`` is
trained), or any ``nn.Module`` with
``score_candidates(queries: list[str], docs: list[list[str]]) -> Tensor [B, l]``
(rows may be padded to the longest candidate list; padding is masked out).

Defaults follow the paper's §6.1: Adam(W) with learning rate $10^{-5}$, 5% linear
warm-up then linear decay, gradient clipping at 1, 10 epochs, effective batch size 64
(batch 8 × 8 accumulation steps), $l = 16$, temperatures 1.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from personakit.functional.ropg import policy_log_probs
from personakit.losses.base import BaseLoss, LossOutput
from personakit.losses.ropg import ROPGKDLoss, ROPGRLLoss
from personakit.training.schedules import linear_warmup_decay_schedule, warmup_steps_from_ratio
from personakit.training.trainer import PlateauConfig, Trainer, TrainingConfig, TrainingPlan, TrainResult

__all__ = [
    "ROPGItem",
    "ROPGTrainerConfig",
    "ROPGTrainer",
    "ROPGRLTrainer",
    "ROPGKDTrainer",
    "prepare_ropg_items",
    "score_candidate_lists",
]

FeedbackFn = Callable[[Sequence[Any], list[list[Any]]], Sequence[Any]]
"""``feedback(examples, candidates) -> list of (len(candidates[i]),) EVAL arrays``."""


# ----------------------------------------------------------------------------- data
@dataclass
class ROPGItem:
    """One training input for ROPG: a query, its candidates and their EVAL scores.

    Attributes:
        query: The retrieval query $\\phi_q(x)$.
        candidates: Texts of the top-$l$ profile entries of the *initial* retriever,
            best first (``candidates[0]`` is $d_b$, the RL baseline document).
        evals: ``(len(candidates),)`` EVAL scores $\\mathrm{EVAL}(y, M(\\phi_p(x,[d])))$
            of each candidate used alone in the prompt.
        id: Optional identifier (used in error messages).
    """

    query: str
    candidates: list[str]
    evals: np.ndarray
    id: Optional[str] = None

    def __post_init__(self) -> None:
        where = f"ROPGItem {self.id!r}" if self.id is not None else "ROPGItem"
        if not isinstance(self.query, str):
            raise TypeError(f"{where}: field 'query' must be a str, got {type(self.query).__name__}")
        self.candidates = list(self.candidates)
        if not self.candidates:
            raise ValueError(f"{where}: field 'candidates' is empty; every input needs at least one candidate")
        for j, c in enumerate(self.candidates):
            if not isinstance(c, str):
                raise TypeError(f"{where}: field 'candidates'[{j}] must be a str, got {type(c).__name__}")
        self.evals = np.asarray(self.evals, dtype=np.float64).reshape(-1)
        if self.evals.shape[0] != len(self.candidates):
            raise ValueError(f"{where}: field 'evals' has {self.evals.shape[0]} scores for "
                             f"{len(self.candidates)} candidates")
        if not np.all(np.isfinite(self.evals)):
            raise ValueError(f"{where}: field 'evals' holds a non-finite score: {self.evals.tolist()}")


def prepare_ropg_items(
    queries: Sequence[str],
    profiles: Any,
    *,
    initial_retriever: Any,
    top_l: int = 16,
    evals: Sequence[Any] | None = None,
    feedback: FeedbackFn | None = None,
    examples: Sequence[Any] | None = None,
    ids: Sequence[str] | None = None,
) -> list[ROPGItem]:
    """Rank each profile with the initial retriever once and attach the LLM's EVAL scores.

    Args:
        queries: ``N`` query strings $\\phi_q(x)$.
        profiles: ``N`` profiles (``UserProfile``, list of ``ProfileItem`` or of str) or
            one profile shared by all queries, as in
            :meth:`personakit.retrieval.Retriever.retrieve_batch`.
        initial_retriever: Any :class:`~personakit.retrieval.Retriever` (BM25, the
            untrained dense retriever, ...); defines the candidates and $d_b$.
        top_l: Candidates kept per input ($l$; paper: 16).
        evals: Precomputed EVAL scores, one array per input aligned with the
            candidates (so they must have been computed on the same ranking).
        feedback: Instead of ``evals``: a callable ``feedback(examples, candidates)``
            returning one ``(len(candidates[i]),)`` array per input, where
            ``candidates[i]`` is the list of :class:`~personakit.types.ProfileItem`
            retrieved for input ``i`` (e.g. ``LLMFeedbackScorer(...).score_candidates``).
        examples: What ``feedback`` receives as its first argument: the task inputs
            with their targets (``ProfileExample`` list for
            ``LLMFeedbackScorer.score_candidates``); defaults to ``queries``.
        ids: Optional ``N`` identifiers.

    Returns:
        ``N`` :class:`ROPGItem`.

    Raises:
        ValueError: lengths differ, or an input's scores do not match its candidates
            (naming the input).
    """
    queries = list(queries)
    if (evals is None) == (feedback is None):
        raise ValueError("prepare_ropg_items: pass exactly one of `evals` (precomputed) and `feedback` (a callable)")
    if top_l < 1:
        raise ValueError(f"top_l must be >= 1, got {top_l}")
    if ids is not None and len(ids) != len(queries):
        raise ValueError(f"got {len(ids)} ids for {len(queries)} queries")
    ranked = initial_retriever.retrieve_batch(queries, profiles, k=top_l)
    candidates = [[r.item for r in row] for row in ranked]
    for i, row in enumerate(candidates):
        if not row:
            name = ids[i] if ids is not None else i
            raise ValueError(f"input {name}: the profile is empty, so there is no candidate to train on")
    if feedback is not None:
        ex = list(examples) if examples is not None else queries
        if len(ex) != len(queries):
            raise ValueError(f"got {len(ex)} examples for {len(queries)} queries")
        evals = list(feedback(ex, candidates))
    assert evals is not None
    if len(evals) != len(queries):
        raise ValueError(f"got {len(evals)} EVAL arrays for {len(queries)} queries")
    items = []
    for i, (q, row, e) in enumerate(zip(queries, candidates, evals)):
        item_id = str(ids[i]) if ids is not None else str(i)
        e = np.asarray(e, dtype=np.float64).reshape(-1)
        if e.shape[0] != len(row):
            raise ValueError(f"input {item_id}: {e.shape[0]} EVAL scores for {len(row)} candidates "
                             f"(top_l={top_l}; the scores must follow the initial retriever's ranking)")
        items.append(ROPGItem(query=q, candidates=[it.text for it in row], evals=e, id=item_id))
    return items


def _items_digest(items: Sequence[ROPGItem]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for it in items:
        for text in (it.query, *it.candidates):
            b = text.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        h.update(np.ascontiguousarray(it.evals, dtype=np.float64).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- config
class ROPGTrainerConfig(PlateauConfig):
    """Settings shared by :class:`ROPGRLTrainer` and :class:`ROPGKDTrainer` (paper §6.1 defaults).

    Training to a plateau uses the shared fields of
    :class:`~personakit.training.trainer.PlateauConfig` with dev items passed as
    ``train(items, eval_items=dev)``: :meth:`ROPGTrainer.evaluate` runs every
    ``eval_steps`` steps and ``metric_for_best_model`` defaults to the dev objective
    ``f"{eval_metric}@expected"`` (the expected EVAL of a document drawn from the policy,
    higher is better).  The paper trains a fixed 10 epochs; early stopping is off by default.

    Example:
        >>> cfg = ROPGTrainerConfig(eval_metric="rouge1", eval_steps=20, early_stopping_patience=3)
        >>> cfg.metric_for_best_model, cfg.best_is_greater
        ('rouge1@expected', True)
    """

    _renamed_: ClassVar[dict[str, str]] = {"lr": "learning_rate", "checkpoint_dir": "output_dir",
                                            "save_every": "save_steps"}

    learning_rate: float = Field(1e-5, gt=0.0, description="Peak learning rate of AdamW (paper: Adam, $10^{-5}$).")
    weight_decay: float = Field(0.0, ge=0.0, description=(
        "Decoupled weight decay of AdamW (0 reproduces the paper's Adam)."))
    epochs: int = Field(10, ge=1, description="Passes over the training items (paper: 10).")
    batch_size: int = Field(8, ge=1, description="Inputs per forward pass (paper: 8).")
    gradient_accumulation_steps: int = Field(8, ge=1, description=(
        "Forward passes per optimizer step (paper: 8, for an effective batch of 64)."))
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description=(
        "Share of optimizer steps with linear warm-up; then linear decay to 0 (paper: 5%)."))
    max_grad_norm: Optional[float] = Field(1.0, gt=0.0, description=(
        "Clip the global gradient norm to this value (paper: 1); ``None`` disables clipping."))
    max_steps: Optional[int] = Field(None, ge=1, description=(
        "Total optimizer steps; ``None`` derives it from ``epochs`` and the data size."))
    top_l: int = Field(16, ge=1, description=(
        "Candidates per input $l$ (longer candidate lists are cut to the first ``top_l``)."))
    temperature: float = Field(1.0, gt=0.0, description=(
        "Policy temperature $\\tau$: $\\pi = \\mathrm{softmax}(\\text{scores}/\\tau)$ (paper: 1; use e.g. "
        "0.05 for a retriever with cosine scores)."))
    target_temperature: float = Field(1.0, gt=0.0, description=(
        "ROPG-KD only: $p_t = \\mathrm{softmax}(\\mathrm{EVAL}/\\tau_t)$ (paper: 1)."))
    seed: int = Field(0, ge=0, description=(
        "Seeds the data order (per epoch), the RL sampler (per step) and, on a fresh start, the global "
        "``random`` / NumPy / torch generators (as ``transformers.Trainer`` does)."))
    eval_metric: str = Field("eval", min_length=1, description=(
        "Name of the metric the EVAL scores were computed with (``\"rouge1\"``, ``\"accuracy\"``, ...); "
        "recorded in checkpoints and used as the prefix of :meth:`ROPGTrainer.evaluate`'s keys."))
    output_dir: Optional[str] = Field(None, description=(
        "Folder for ``checkpoint-*`` subfolders; ``None`` disables checkpointing."))
    save_steps: Optional[int] = Field(None, ge=1, description=(
        "Save every ``save_steps`` optimizer steps; ``None``: at the end of every epoch. The last step is "
        "always saved."))
    keep_last: Optional[int] = Field(2, ge=1, description=(
        "How many checkpoints to keep (newest first); ``None`` keeps all."))
    progress: bool = Field(True, description="Show a tqdm progress bar.")

    metric_for_best_model: str = Field("", description=(
        "The key of :meth:`ROPGTrainer.evaluate` that early stopping and ``load_best_model_at_end`` watch; "
        "empty (the default): ``f\"{eval_metric}@expected\"``, the expected dev EVAL of the policy."))

    @model_validator(mode="after")
    def _check(self) -> "ROPGTrainerConfig":
        if self.save_steps is not None and self.output_dir is None:
            raise ValueError("save_steps is set but output_dir is None; set output_dir to save checkpoints")
        if not self.metric_for_best_model:
            self.__dict__["metric_for_best_model"] = f"{self.eval_metric}@expected"
        return self

    def training_config(self) -> TrainingConfig:
        """These settings as the shared loop's :class:`~personakit.training.trainer.TrainingConfig`.

        One log record per step; checkpoints (``output_dir``) hold the whole retriever
        module; a fresh start replaces older checkpoints there.
        """
        return TrainingConfig(
            output_dir=self.output_dir, overwrite_output_dir=True, learning_rate=self.learning_rate,
            weight_decay=self.weight_decay, epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps, max_grad_norm=self.max_grad_norm,
            seed=self.seed, logging_steps=1, eval_at_epoch_end=False, save_steps=self.save_steps,
            keep_last=self.keep_last, checkpoint_weights="all", progress=self.progress, **self.plateau_settings())


# -------------------------------------------------------------------------- scoring
def _trainable_module(retriever: Any) -> nn.Module:
    if isinstance(retriever, nn.Module):
        return retriever
    module = getattr(retriever, "module", None)
    if isinstance(module, nn.Module):
        return module
    raise TypeError(
        f"{type(retriever).__name__} is not trainable: pass an nn.Module with score_candidates(queries, docs) "
        "or a DenseRetriever (encode_queries / encode_documents and .module)"
    )


def score_candidate_lists(retriever: Any, queries: list[str], docs: list[list[str]]) -> tuple[Tensor, Tensor]:
    """Differentiable scores of each query's candidates, padded, with the padding mask.

    Uses ``retriever.score_candidates`` when present, else the dot product of
    ``encode_queries`` and ``encode_documents`` (a :class:`~personakit.retrieval.DenseRetriever`).

    Returns:
        ``(scores [B, L], mask [B, L])`` with ``L`` the longest candidate list; padding
        scores are 0 and masked out.
    """
    lengths = [len(d) for d in docs]
    width = max(lengths)
    if hasattr(retriever, "score_candidates"):
        scores = retriever.score_candidates(queries, docs)
        if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] != len(queries) \
                or scores.shape[1] < width:
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(f"{type(retriever).__name__}.score_candidates returned {shape}; "
                             f"expected a tensor [{len(queries)}, >= {width}]")
        scores = scores[:, :width]
    elif hasattr(retriever, "encode_queries") and hasattr(retriever, "encode_documents"):
        q = retriever.encode_queries(queries)  # (B, D)
        flat = [t for row in docs for t in row]
        d = retriever.encode_documents(flat)  # (sum l_b, D)
        rows = []
        for b, part in enumerate(torch.split(d, lengths)):
            s = part @ q[b]  # (l_b,)
            rows.append(torch.nn.functional.pad(s, (0, width - s.shape[0])))
        scores = torch.stack(rows)  # (B, L)
    else:
        raise TypeError(f"{type(retriever).__name__} has neither score_candidates nor encode_queries/encode_documents")
    mask = torch.zeros(len(docs), width, dtype=torch.bool, device=scores.device)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return scores, mask


# -------------------------------------------------------------------------- trainer
class ROPGTrainer(Trainer):
    r"""Shared base of the ROPG trainers on :class:`~personakit.training.trainer.Trainer`; subclasses supply the loss.

    The loop (AdamW, :func:`~personakit.training.schedules.linear_warmup_decay_schedule`
    with ``floor(warmup_ratio * total_steps)`` warm-up steps, gradient accumulation and
    clipping, atomic checkpoints, exact resumption checked against the config and a digest
    of the items) is the shared one; the loss of a micro-batch of :class:`ROPGItem` is
    :meth:`batch_loss` on the retriever's scores of their candidates.

    Args:
        retriever: What is trained: a :class:`~personakit.retrieval.DenseRetriever`
            (its ``.module`` holds the parameters) or an ``nn.Module`` with
            ``score_candidates(queries, docs) -> Tensor [B, l]``.
        config: :class:`ROPGTrainerConfig` (default: the paper's settings).
        initial_retriever: Ranks profiles in :meth:`prepare` (default: ``retriever``
            itself before training, when it can retrieve).
        feedback: Callable ``feedback(examples, candidates) -> list[np.ndarray]`` used by
            :meth:`prepare` (e.g. ``LLMFeedbackScorer.score_candidates``).
        callback: Called with each step's log dict after the step.

    Attributes:
        history: One dict per optimizer step: ``step``, ``epoch``, ``lr``, ``loss``,
            ``entropy`` (mean entropy of $\pi_\theta$), ``grad_norm`` and the
            trainer's own terms (``reward`` for RL, ``target_entropy`` for KD).
    """

    name: ClassVar[str] = "ropg"
    checkpoint_key: ClassVar[str] = "retriever"
    count_key: ClassVar[str] = "n_items"
    digest_key: ClassVar[str] = "items_digest"
    resume_fields: ClassVar[tuple[str, ...]] = ("batch_size", "gradient_accumulation_steps", "epochs", "max_steps",
                                                "seed", "top_l", "learning_rate", "warmup_ratio")
    reseed_every_step: ClassVar[bool] = False

    def __init__(self, retriever: Any, config: ROPGTrainerConfig | None = None, *,
                 initial_retriever: Any | None = None, feedback: FeedbackFn | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None):
        module = _trainable_module(retriever)
        config = config if config is not None else ROPGTrainerConfig()
        if not isinstance(config, ROPGTrainerConfig):
            raise TypeError(f"config must be a ROPGTrainerConfig, got {type(config).__name__}")
        super().__init__(module, config.training_config(), config=config,
                         callbacks=[callback] if callback is not None else None, wrap_model=False)
        self.retriever = retriever
        self.module = module
        self.initial_retriever = initial_retriever
        self.feedback = feedback
        self.callback = callback
        self.loss_fn = self.build_loss()
        self.train_result: Optional[TrainResult] = None  # the last train()'s, with train_seconds

    # ---------------------------------------------------------------- subclass hooks
    def build_loss(self) -> BaseLoss:
        """The loss module (from the config)."""
        raise NotImplementedError

    def batch_loss(self, items: Sequence[ROPGItem], scores: Tensor, mask: Tensor, evals: Tensor, *,
                   step: int, micro: int) -> LossOutput:
        """Loss output for one micro-batch (``scores``/``mask``/``evals``: ``[B, L]``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- loop hooks
    def compute_loss(self, batch: list[ROPGItem]) -> tuple[Tensor, dict[str, float]]:
        """:meth:`batch_loss` on the retriever's scores of the micro-batch's candidates."""
        scores, mask, evals = self._batch_tensors(batch)
        out = self.batch_loss(batch, scores, mask, evals, step=self.global_step, micro=self.micro_step)
        return out.loss, {key: float(value) for key, value in out.to_dict().items()}

    def build_optimizer(self, plan: TrainingPlan) -> torch.optim.Optimizer:
        """AdamW over the retriever's trainable parameters (one group; the paper's Adam when ``weight_decay=0``)."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(self.retriever).__name__} has no trainable parameters")
        return torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, plan: TrainingPlan
                        ) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up over ``floor(warmup_ratio * total)`` steps, then linear decay towards 0."""
        warmup = warmup_steps_from_ratio(self.config.warmup_ratio, plan.total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay_schedule(plan.total_steps, warmup))

    def data_digest(self, items: Sequence[ROPGItem]) -> str:
        """Digest of the items' queries, candidates and EVAL scores."""
        return _items_digest(items)

    def _generator(self, step: int, micro: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.config.seed, step, micro]).generate_state(1, dtype=np.uint64)[0])
        return torch.Generator().manual_seed(seed % (2**63))

    # ---------------------------------------------------------------------- data
    def prepare(self, queries: Sequence[str], profiles: Any, *, examples: Sequence[Any] | None = None,
                evals: Sequence[Any] | None = None, ids: Sequence[str] | None = None) -> list[ROPGItem]:
        """Candidates from the initial retriever and their EVAL scores (see :func:`prepare_ropg_items`).

        Uses ``self.feedback`` unless ``evals`` is given, and ``self.initial_retriever``
        (else the retriever being trained, which must then be able to ``retrieve_batch``).
        """
        initial = self.initial_retriever if self.initial_retriever is not None else self.retriever
        if not hasattr(initial, "retrieve_batch"):
            raise TypeError("prepare needs an initial_retriever with retrieve_batch (e.g. BM25Retriever)")
        if evals is None and self.feedback is None:
            raise ValueError("prepare needs precomputed `evals` or a trainer built with `feedback=`")
        return prepare_ropg_items(queries, profiles, initial_retriever=initial, top_l=self.config.top_l,
                                  evals=evals, feedback=None if evals is not None else self.feedback,
                                  examples=examples, ids=ids)

    def _batch_tensors(self, items: Sequence[ROPGItem]) -> tuple[Tensor, Tensor, Tensor]:
        l = self.config.top_l
        queries = [it.query for it in items]
        docs = [it.candidates[:l] for it in items]
        scores, mask = score_candidate_lists(self.retriever, queries, docs)  # (B, L) each
        evals = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
        for b, it in enumerate(items):
            e = torch.as_tensor(it.evals[:l], dtype=scores.dtype, device=scores.device)
            evals[b, : e.shape[0]] = e
        return scores, mask, evals


    # ---------------------------------------------------------------------- train
    def train(self, items: Sequence[ROPGItem], *,  # type: ignore[override]
              eval_items: Sequence[ROPGItem] | None = None,
              resume_from: str | os.PathLike[str] | None = None,
              stop_after_step: int | None = None) -> list[dict[str, Any]]:
        """Train the retriever on ``items``.

        Args:
            items: :class:`ROPGItem` list (from :meth:`prepare` or :func:`prepare_ropg_items`).
            eval_items: Dev items (other inputs than ``items``), evaluated with
                :meth:`evaluate` every ``config.eval_steps`` steps and at the end; needed
                for ``early_stopping_patience`` and ``load_best_model_at_end``.  The
                evaluations are in ``train_result.eval_history``.
            resume_from: ``None`` (fresh start), ``"latest"`` (the newest checkpoint in
                ``config.output_dir``; a fresh start if there is none) or a
                checkpoint folder.  Weights, optimizer, scheduler, RNG streams and the
                history are restored; the run then continues as if never stopped.
            stop_after_step: Stop once this global step is done (e.g. a time budget),
                keeping the schedule of the full run; a checkpoint is written there.
                Resume later with ``resume_from="latest"``.

        Returns:
            :attr:`history`, one log dict per optimizer step (the whole
            :class:`~personakit.training.trainer.TrainResult`, with ``train_seconds``, is
            kept as ``train_result``).
        """
        items = list(items)
        if not items:
            raise ValueError("train: no items")
        for name, rows in (("items", items), ("eval_items", list(eval_items or ()))):
            for i, it in enumerate(rows):
                if not isinstance(it, ROPGItem):
                    raise TypeError(f"train: {name}[{i}] is a {type(it).__name__}, expected ROPGItem")
        if eval_items is not None:
            self.eval_data = list(eval_items) or None
        self.train_data = items
        try:
            self.train_result = super().train(resume_from=resume_from, stop_after_step=stop_after_step)
        finally:
            clear = getattr(self.retriever, "clear_cache", None)
            if callable(clear):  # cached profile embeddings are stale now
                clear()
        return self.history

    # ------------------------------------------------------------------- inspect
    @torch.no_grad()
    def policy(self, items: Sequence[ROPGItem], batch_size: int | None = None) -> list[np.ndarray]:
        r"""$\pi_\theta(\cdot \mid x)$ over each item's candidates (``(len(candidates[:top_l]),)`` arrays)."""
        bs = batch_size or self.config.batch_size
        was_training = self.module.training
        self.module.eval()
        out: list[np.ndarray] = []
        try:
            for start in range(0, len(items), bs):
                batch = list(items[start:start + bs])
                scores, mask, _ = self._batch_tensors(batch)
                probs = policy_log_probs(scores, mask, self.config.temperature).exp()  # (B, L)
                out.extend(probs[b, : int(mask[b].sum())].double().cpu().numpy() for b in range(len(batch)))
        finally:
            self.module.train(was_training)
        return out

    def evaluate(self, items: Sequence[ROPGItem], batch_size: int | None = None) -> dict[str, float]:
        r"""How well the policy picks the documents the LLM does best with.

        Returns (``m`` is ``config.eval_metric``):
            ``{m}@top1``: mean EVAL of the policy's top document;
            ``{m}@expected``: mean $\mathbb{E}_{d \sim \pi_\theta}[\mathrm{EVAL}(d)]$;
            ``{m}@initial``: mean EVAL of the initial retriever's top document $d_b$;
            ``{m}@oracle``: mean of the best candidate's EVAL;
            ``entropy``: mean entropy of $\pi_\theta$.
        """
        m = self.config.eval_metric
        probs = self.policy(items, batch_size)
        l = self.config.top_l
        ev = [it.evals[:l] for it in items]
        return {
            f"{m}@top1": float(np.mean([e[int(np.argmax(p))] for p, e in zip(probs, ev)])),
            f"{m}@expected": float(np.mean([float(p @ e) for p, e in zip(probs, ev)])),
            f"{m}@initial": float(np.mean([e[0] for e in ev])),
            f"{m}@oracle": float(np.mean([e.max() for e in ev])),
            "entropy": float(np.mean([-(p[p > 0] * np.log(p[p > 0])).sum() for p in probs])),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(retriever={type(self.retriever).__name__}, loss={self.loss_fn!r})"


class ROPGRLTrainer(ROPGTrainer):
    r"""ROPG-RL: policy-gradient training of a retriever from LLM rewards (Salemi et al., 2024, §4.1).

    Per input, one candidate $d \sim \pi_\theta(\cdot \mid x)$ is sampled (a generator
    seeded by ``(config.seed, step, micro-batch)``, so runs and resumed runs are
    reproducible) and rewarded with $\mathrm{EVAL}(d) - \mathrm{EVAL}(d_b)$, $d_b$ being
    candidate 0 (the initial retriever's top document); the loss is
    $-r \log \pi_\theta(d \mid x)$ (:class:`~personakit.losses.ROPGRLLoss`).  The log
    adds ``reward`` (mean reward of the sampled documents) and ``log_prob``.

    Example:
        >>> import numpy as np, torch
        >>> from personakit.training import ROPGItem, ROPGRLTrainer, ROPGTrainerConfig
        >>> class Toy(torch.nn.Module):  # one learnable score per candidate position
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.bias = torch.nn.Parameter(torch.zeros(3))
        ...     def score_candidates(self, queries, docs):
        ...         return self.bias.expand(len(queries), 3)
        >>> items = [ROPGItem("q", ["a", "b", "c"], np.array([0.0, 1.0, 0.0]))] * 4
        >>> cfg = ROPGTrainerConfig(learning_rate=0.5, epochs=20, batch_size=4, gradient_accumulation_steps=1,
        ...                         warmup_ratio=0.0, progress=False)
        >>> trainer = ROPGRLTrainer(Toy(), cfg)
        >>> _ = trainer.train(items)
        >>> int(np.argmax(trainer.policy(items[:1])[0]))
        1
    """

    name: ClassVar[str] = "ropg-rl"

    def build_loss(self) -> BaseLoss:
        return ROPGRLLoss(temperature=self.config.temperature)

    def sample(self, scores: Tensor, mask: Tensor, *, step: int, micro: int) -> Tensor:
        """One candidate index per input drawn from $\\pi_\\theta$ (no gradient) ``[B]``."""
        with torch.no_grad():
            probs = policy_log_probs(scores.detach().double(), mask, self.config.temperature).exp()  # (B, L)
            probs = probs.masked_fill(~mask, 0.0).cpu()
            return torch.multinomial(probs, 1, generator=self._generator(step, micro)).squeeze(1).to(scores.device)

    def batch_loss(self, items: Sequence[ROPGItem], scores: Tensor, mask: Tensor, evals: Tensor, *,
                   step: int, micro: int) -> LossOutput:
        sampled = self.sample(scores, mask, step=step, micro=micro)  # (B,)
        return self.loss_fn.forward_with_parts(scores, sampled, evals=evals, baseline_index=0, mask=mask)


class ROPGKDTrainer(ROPGTrainer):
    r"""ROPG-KD: distil the LLM's per-document EVAL scores into the retriever (Salemi et al., 2024, §4.2).

    Minimises $\mathrm{KL}(\mathrm{softmax}(\mathrm{EVAL}/\tau_t) \,\|\, \pi_\theta)$ over the
    top-$l$ candidates (:class:`~personakit.losses.ROPGKDLoss`); $\tau_t$ is
    ``config.target_temperature`` (paper: 1).  The log adds ``target_entropy``.

    Example:
        >>> import numpy as np, torch
        >>> from personakit.training import ROPGItem, ROPGKDTrainer, ROPGTrainerConfig
        >>> toy = torch.nn.Module()  # one learnable score per candidate position
        >>> toy.bias = torch.nn.Parameter(torch.zeros(3))
        >>> toy.score_candidates = lambda queries, docs: toy.bias.expand(len(queries), 3)
        >>> items = [ROPGItem("q", ["a", "b", "c"], np.array([0.0, 1.0, 0.0]))] * 4
        >>> cfg = ROPGTrainerConfig(learning_rate=0.5, epochs=20, batch_size=4, gradient_accumulation_steps=1,
        ...                         warmup_ratio=0.0, target_temperature=0.1, progress=False)
        >>> trainer = ROPGKDTrainer(toy, cfg)
        >>> history = trainer.train(items)
        >>> history[-1]["loss"] < history[0]["loss"]
        True
    """

    name: ClassVar[str] = "ropg-kd"

    def build_loss(self) -> BaseLoss:
        return ROPGKDLoss(temperature=self.config.temperature, target_temperature=self.config.target_temperature)

    def batch_loss(self, items: Sequence[ROPGItem], scores: Tensor, mask: Tensor, evals: Tensor, *,
                   step: int, micro: int) -> LossOutput:
        return self.loss_fn.forward_with_parts(scores, evals, mask)
