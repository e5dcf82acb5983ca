r"""End-to-end ROPG / RSPG recipe: train retrievers from LLM feedback, select one per input, compare them all.

Salemi, Kallumadi and Zamani, "Optimization Methods for Personalizing Large Language
Models through Retrieval Augmentation" (SIGIR 2024).  :func:`run_ropg_recipe` runs the
paper's whole experiment (its Tables 3–5) on one LaMP-style task:

1. **Data.** The task's train / dev / test splits of
   :class:`~personakit.types.ProfileExample`: PFG-LaMP built from Persuasion-for-Good
   (:func:`~personakit.data.pfg_lamp.build_pfg_lamp_task`), LaMP files
   (:func:`~personakit.data.read_lamp`), or the built-in corpus (a tiny PFG-LaMP-style
   task whose recurring agents are the "persuaders"; for demos and tests), subsampled
   with a seed.
2. **LLM feedback (ROPG).** The initial retriever (the untrained dense retriever, MiniLM
   by default, as the paper starts from Contriever) ranks each training input's profile;
   the frozen LLM answers one prompt per top-$l$ document, $\phi_p(x, [d])$, and each
   answer is scored, $\mathrm{EVAL}(y, M(\phi_p(x,[d])))$
   (:class:`~personakit.training.feedback.LLMFeedbackScorer`, batched, behind a
   persistent response cache: a rerun never generates a prompt twice).
3. **ROPG.** Two copies of the initial dense retriever are trained:
   :class:`~personakit.training.ROPGRLTrainer` (policy gradient, reward relative to the
   initial top document) and :class:`~personakit.training.ROPGKDTrainer` (KL to the
   softmax of the EVAL scores).  Checkpoints go to ``output_dir``; a rerun resumes them.
4. **The pool.** Every retriever of the pool (``none``, ``recency``, ``bm25``,
   ``dense``, ``rrf`` (BM25 + recency + dense), ``ropg-rl``, ``ropg-kd``) retrieves
   ``k`` (4, as in the paper) entries for every dev / test input; the prompts are built
   with :class:`~personakit.retrieval.lamp_prompts.LaMPPromptBuilder` and answered by
   the LLM in one batched, cached call.
5. **RSPG.** Two :class:`~personakit.retrieval.RetrieverSelector` (``pre``: prompts only;
   ``post``: prompt + the LLM's output) are trained with
   :class:`~personakit.training.rspg.RSPGTrainer` on the dev split (the paper trains on
   train; ``rspg.train_split="train"`` does that, at the price of the pool's outputs on
   train).
6. **Evaluation** on test: per system ROUGE-1 and ROUGE-L (generation tasks; accuracy
   for LaMP-1/2, the normalised score and MAE for LaMP-3), a two-sided paired t-test of
   every system against the best single retriever (the paper's test, $p < 0.05$), the
   selectors' success rate (paper Table 4) and the oracle lower / upper bounds of the
   pool (Table 5).  :meth:`ROPGResults.save` writes ``results.json`` and ``results.md``
   atomically.

Departures from the paper, all for a CPU budget (and all configurable): SmolLM2-135M
instead of FlanT5-XXL, greedy decoding instead of beam search 4, prompts of
``prompt.max_tokens`` (256) instead of 512, MiniLM instead of Contriever and of
Longformer, few epochs, and a policy temperature of 0.05 (MiniLM's scores are cosines in
$[-1, 1]$; with the paper's temperature 1 the policy would be almost uniform).

Example:
    >>> from personakit.recipes.ropg import ROPGRecipeConfig, run_ropg_recipe
    >>> config = ROPGRecipeConfig.from_yaml("examples/configs/ropg_tiny.yaml")  # doctest: +SKIP
    >>> results = run_ropg_recipe(config)  # doctest: +SKIP
    >>> print(results.table)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Sequence

from pydantic import Field, field_validator, model_validator

from personakit.recipes._common import StageLog, jsonable
from personakit.config import BaseConfig, Fraction, atomic_write_text
from personakit.training.rspg import RSPGTrainerConfig
from personakit.training.ropg import ROPGTrainerConfig

__all__ = [
    "POOL_RETRIEVERS",
    "ROPGDataConfig",
    "ROPGPoolConfig",
    "ROPGPromptConfig",
    "ROPGLLMConfig",
    "ROPGTrainingConfig",
    "RSPGRecipeConfig",
    "ROPGRecipeConfig",
    "ROPGResults",
    "load_recipe_splits",
    "builtin_pfg_dialogues",
    "run_ropg_recipe",
]

POOL_RETRIEVERS = ("none", "recency", "bm25", "dense", "rrf", "ropg-rl", "ropg-kd")
"""The retrievers the recipe knows: the paper's baselines and its two trained retrievers."""

_SELECTORS = {"pre": "RSPG-Pre", "post": "RSPG-Post"}
_DISPLAY = {"none": "No retrieval", "recency": "Recency", "bm25": "BM25", "dense": "Dense (MiniLM)",
            "rrf": "RRF", "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD"}


# --------------------------------------------------------------------------- configs
class ROPGDataConfig(BaseConfig):
    """Where the task comes from and how much of it to use."""

    source: Literal["pfg", "lamp", "builtin"] = Field(
        "builtin", description="'pfg' (Persuasion-for-Good FullData folder), 'lamp' (LaMP files) or 'builtin'.")
    """``"pfg"``: PFG-LaMP from the Persuasion-for-Good ``FullData`` folder at ``path``; ``"lamp"``: a folder
    with ``{train,dev,test}_questions.json`` and ``*_outputs.json`` (test optional: without it the dev split
    is cut in two halves, dev and test); ``"builtin"``: the built-in dialogue corpus as a tiny PFG-LaMP-style task."""
    path: Optional[str] = Field(None, description="Data folder (pfg, lamp); relative paths from the working directory.")
    """The ``FullData`` folder (``pfg``) or the LaMP task folder (``lamp``)."""
    task: Optional[str] = Field(None, description="LaMP task name for source='lamp' (default: from the files).")
    """``"LaMP-4"`` etc. for ``source="lamp"``; by default read from the outputs files or the folder name."""
    history_turns: int = Field(3, ge=1, description="PFG: merged turns of history in each input.")
    """PFG-LaMP: merged turns of conversation in each input."""
    max_profile_items: Optional[int] = Field(None, ge=1, description="PFG: keep the most recent profile entries.")
    """PFG-LaMP: keep only the most recent entries of each profile."""
    split_by: Literal["time", "global"] = Field("time", description="PFG/builtin: per-user time split or one date cut.")
    """PFG-LaMP: ``"time"`` (per user: last target dialogue → test, the one before → dev, the rest → train)
    or ``"global"`` (one date cut over all target dialogues by ``split_fractions``)."""
    split_fractions: tuple[Fraction, Fraction, Fraction] = Field((0.8, 0.1, 0.1), description="Fractions for split_by='global'.")
    """Train / dev / test fractions of the target dialogues for ``split_by="global"``."""
    max_users: Optional[int] = Field(None, ge=1, description="PFG/builtin: a seeded sample of this many users.")
    """PFG-LaMP: keep a seeded random sample of this many persuaders."""
    max_examples_per_user: Optional[int] = Field(None, ge=1, description="PFG/builtin: examples per user and split.")
    """PFG-LaMP: at most this many examples per user and split."""
    max_train: Optional[int] = Field(None, ge=1, description="Seeded sample of this many train examples (ROPG).")
    """Keep a seeded random sample of this many training examples (the ROPG training inputs)."""
    max_dev: Optional[int] = Field(None, ge=1, description="Seeded sample of this many dev examples (RSPG).")
    """Keep a seeded random sample of this many dev examples (the RSPG training inputs by default)."""
    max_test: Optional[int] = Field(None, ge=1, description="Seeded sample of this many test examples.")
    """Keep a seeded random sample of this many test examples (where everything is evaluated)."""
    seed: int = Field(0, description="Seed of every subsampling.")
    """Seed of the subsampling (and of the run)."""

    @model_validator(mode="after")
    def _check(self) -> "ROPGDataConfig":
        if self.source in ("pfg", "lamp") and not self.path:
            raise ValueError(f"source={self.source!r} needs `path` (the data folder)")
        return self


class ROPGPoolConfig(BaseConfig):
    """The retrievers compared (and selected between)."""

    retrievers: list[str] = Field(default_factory=lambda: list(POOL_RETRIEVERS), min_length=2,
                                  description="Pool members, from none, recency, bm25, dense, rrf, ropg-rl, ropg-kd.")
    """Pool members, in table order: any of ``none``, ``recency``, ``bm25``, ``dense``, ``rrf``
    (BM25 + recency + dense), ``ropg-rl``, ``ropg-kd``."""
    k: Optional[int] = Field(4, ge=1, description="Entries retrieved per prompt (paper: 4; None: as many as fit).")
    """Profile entries retrieved per prompt (the paper: 4); entries that do not fit the budget are skipped."""
    rrf_members: list[str] = Field(default_factory=lambda: ["bm25", "recency", "dense"], min_length=1,
                                   description="Members of the RRF retriever.")
    """Members of ``rrf`` (the paper fuses BM25, recency and Contriever)."""
    rrf_k: float = Field(60, ge=0, description="RRF constant.")
    """The RRF constant $k$ (60)."""

    @field_validator("retrievers", "rrf_members")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        for n in names:
            if n not in POOL_RETRIEVERS:
                raise ValueError(f"unknown retriever {n!r}; known: {', '.join(POOL_RETRIEVERS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"repeated retriever in {value}")
        return names


class ROPGPromptConfig(BaseConfig):
    """Prompt construction ($\\phi_p$, paper Table 2)."""

    max_tokens: int = Field(256, ge=8, description="Token budget of a whole prompt (paper: 512).")
    """Budget of the whole prompt (the paper: 512 tokens)."""
    count_with: Literal["llm", "words"] = Field("llm", description="Count tokens with the LLM's tokenizer or words.")
    """``"llm"``: the LLM's tokenizer (when the generator has one, else words); ``"words"``: whitespace words."""


class ROPGLLMConfig(BaseConfig):
    """The frozen LLM $M$ that answers every prompt."""

    model: str = Field("smollm2", description="Embedded name, local folder or hub id of the causal LM.")
    """The causal LM (embedded ``"smollm2"`` = SmolLM2-135M-Instruct, a folder, or a hub id)."""
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    """Prompts per generation batch."""
    max_new_tokens: int = Field(32, ge=1, description="Output length in tokens.")
    """Maximum output length in tokens (greedy decoding)."""
    stop: list[str] = Field(default_factory=lambda: ["\n"], description="Stop sequences.")
    """Stop sequences (the output is cut before the first one)."""
    cache_path: Optional[str] = Field(None, description="Response cache file (None: output_dir/llm_cache.jsonl).")
    """JSON-lines response cache; ``None``: ``{output_dir}/llm_cache.jsonl``.  Shared by every stage."""
    dtype: Optional[str] = Field(None, description="Model dtype ('bfloat16' on a GPU; None: float32).")
    """Weights dtype (``None``: float32)."""


class ROPGTrainingConfig(BaseConfig):
    """ROPG: the initial retriever, the candidates and the two trainers."""

    encoder: str = Field("minilm", description="Encoder of the dense retrievers (initial and trained).")
    """Bi-encoder of ``dense``, ``ropg-rl`` and ``ropg-kd`` (embedded ``"minilm"`` or a folder); the trained
    retrievers start from it."""
    top_l: int = Field(8, ge=2, description="Candidates per input scored by the LLM (paper: 16).")
    """Candidates per training input, the initial retriever's top $l$ (paper: 16)."""
    rl: ROPGTrainerConfig = Field(
        default_factory=lambda: ROPGTrainerConfig(learning_rate=2e-5, epochs=2, batch_size=8, gradient_accumulation_steps=1,
                                                  temperature=0.05, eval_metric="eval"),
        description="ROPG-RL trainer settings.")
    """:class:`~personakit.training.ROPGTrainerConfig` of ROPG-RL (``output_dir`` defaults to
    ``{output_dir}/ropg-rl``; ``top_l`` is taken from this config)."""
    kd: ROPGTrainerConfig = Field(
        default_factory=lambda: ROPGTrainerConfig(learning_rate=2e-5, epochs=2, batch_size=8, gradient_accumulation_steps=1,
                                                  temperature=0.05, target_temperature=0.1, eval_metric="eval"),
        description="ROPG-KD trainer settings.")
    """:class:`~personakit.training.ROPGTrainerConfig` of ROPG-KD (``output_dir`` defaults to
    ``{output_dir}/ropg-kd``)."""


class RSPGRecipeConfig(BaseConfig):
    """RSPG: the selectors and their training."""

    encoder: str = Field("minilm", description="Selector encoder (paper: Longformer-base).")
    """Encoder of both selectors (embedded ``"minilm"``, a folder or hub id)."""
    modes: list[Literal["pre", "post"]] = Field(default_factory=lambda: ["pre", "post"], min_length=1,
                                                description="Selectors to train: pre and/or post.")
    """Which selectors to train and evaluate."""
    max_length: int = Field(256, ge=8, description="Selector input length (paper: 1024).")
    """Tokens per selector input."""
    pooling: Literal["cls", "mean", "last"] = Field("mean", description="Pooling of the encoder states.")
    """Pooling of the final layer (``"mean"`` suits MiniLM, trained with mean pooling)."""
    train_split: Literal["dev", "train"] = Field("dev", description="Split the selectors are trained on.")
    """``"dev"`` (default, cheap) or ``"train"`` (the paper; needs the pool's outputs on train)."""
    trainer: RSPGTrainerConfig = Field(
        default_factory=lambda: RSPGTrainerConfig(epochs=5, batch_size=4, gradient_accumulation_steps=2,
                                                  learning_rate=5e-5, target_temperature=0.1),
        description="RSPG trainer settings.")
    """:class:`~personakit.training.rspg.RSPGTrainerConfig` (``output_dir`` defaults to ``{output_dir}/rspg-{mode}``)."""


class ROPGRecipeConfig(BaseConfig):
    """The whole ROPG / RSPG recipe, loadable from YAML (``ROPGRecipeConfig.from_yaml(path)``).

    Example:
        >>> cfg = ROPGRecipeConfig(data={"source": "builtin"}, output_dir="runs/ropg")
        >>> ROPGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
        True
    """

    _renamed_: ClassVar[dict[str, str]] = {"alpha": "significance_level"}

    data: ROPGDataConfig = Field(default_factory=ROPGDataConfig, description="Task and subsampling.")
    pool: ROPGPoolConfig = Field(default_factory=ROPGPoolConfig, description="The retriever pool.")
    prompt: ROPGPromptConfig = Field(default_factory=ROPGPromptConfig, description="Prompt construction.")
    llm: ROPGLLMConfig = Field(default_factory=ROPGLLMConfig, description="The frozen LLM.")
    ropg: ROPGTrainingConfig = Field(default_factory=ROPGTrainingConfig, description="ROPG training.")
    rspg: RSPGRecipeConfig = Field(default_factory=RSPGRecipeConfig, description="RSPG training.")
    output_dir: str = Field("runs/ropg", description="Where caches, checkpoints and results go.")
    """Folder of the response cache, the checkpoints, the saved selectors and ``results.{json,md}``."""
    device: Optional[str] = Field(None, description="Device of the LLM, encoders and selectors (None: CPU).")
    """``"cuda"`` to run the LLM, the retrievers and the selectors on a GPU; ``None``: CPU."""
    significance_level: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired t-tests.")
    """Significance level of the two-sided paired t-tests (paper: 0.05); ``alpha``, its old name, is still read."""
    save_models: bool = Field(True, description="Save the trained selectors (the ROPG checkpoints are always kept).")
    """Save each selector with ``save_pretrained`` under ``{output_dir}/selector-{mode}``."""

    @model_validator(mode="after")
    def _check(self) -> "ROPGRecipeConfig":
        if self.data.source in ("pfg", "lamp") and not self.data.path:
            raise ValueError(f"data.source={self.data.source!r} needs data.path")
        return self


# ----------------------------------------------------------------------------- data
def builtin_pfg_dialogues() -> list:
    """The built-in corpus as Persuasion-for-Good-style dialogues (agent → persuader, one day apart).

    The agents who talk in several dialogues (three of them) become users with profiles.
    """
    from personakit.data import load_builtin_corpus

    rename = {"agent": "persuader", "user": "persuadee"}
    start = datetime(2024, 1, 1)
    out = []
    for i, d in enumerate(load_builtin_corpus()):
        out.append(d.model_copy(update={
            "turns": [t.model_copy(update={"speaker": rename.get(t.speaker, t.speaker)}) for t in d.turns],
            "participants": {rename.get(k, k): v for k, v in d.participants.items()},
            "personas": {rename.get(k, k): v for k, v in d.personas.items()},
            "metadata": {**d.metadata, "date": (start + timedelta(days=i)).isoformat()},
        }))
    return out


def _sample(examples: list, n: Optional[int], seed: int) -> list:
    if n is None or len(examples) <= n:
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def _read_lamp_split(folder: Path, split: str, task: Optional[str]) -> Optional[list]:
    from personakit.data import read_lamp

    questions = folder / f"{split}_questions.json"
    if not questions.is_file():
        return None
    outputs = folder / f"{split}_outputs.json"
    return read_lamp(questions, outputs if outputs.is_file() else None, task=task)


def load_recipe_splits(data: ROPGDataConfig) -> tuple[str, dict[str, list]]:
    """``(task, {"train", "dev", "test"})`` of :class:`~personakit.types.ProfileExample` per the data config.

    Raises:
        FileNotFoundError: the data folder (or a required LaMP file) is missing.
        ValueError: a split is empty, or an example has no target.
    """
    from personakit.data.pfg_lamp import PFG_LAMP_TASK, build_pfg_lamp_task

    if data.source == "lamp":
        folder = Path(str(data.path))
        if not folder.is_dir():
            raise FileNotFoundError(f"data.path {folder}: no such LaMP folder")
        splits = {s: _read_lamp_split(folder, s, data.task) for s in ("train", "dev", "test")}
        for s in ("train", "dev"):
            if splits[s] is None:
                raise FileNotFoundError(f"{folder / f'{s}_questions.json'}: missing (the LaMP recipe needs train and dev)")
        if splits["test"] is None:  # LaMP's test outputs are not public: dev is cut in two halves
            dev = splits["dev"]
            half = len(dev) // 2
            splits["dev"], splits["test"] = dev[:half], dev[half:]
        task = splits["train"][0].task if splits["train"] else str(data.task)
    else:
        source = builtin_pfg_dialogues() if data.source == "builtin" else Path(str(data.path))
        if isinstance(source, Path) and not source.exists():
            raise FileNotFoundError(f"data.path {source}: no such Persuasion-for-Good folder")
        splits = build_pfg_lamp_task(source, history_turns=data.history_turns,
                                     max_profile_items=data.max_profile_items, max_users=data.max_users,
                                     max_examples_per_user=data.max_examples_per_user, seed=data.seed,
                                     split_by=data.split_by, split_fractions=data.split_fractions)
        task = PFG_LAMP_TASK
    limits = {"train": data.max_train, "dev": data.max_dev, "test": data.max_test}
    out = {}
    for s, rows in splits.items():
        rows = [ex for ex in (rows or []) if ex.profile.items]  # retrieval needs a profile
        out[s] = _sample(rows, limits[s], data.seed + {"train": 0, "dev": 1, "test": 2}[s])
        for ex in out[s]:
            if ex.target is None:
                raise ValueError(f"{s} example {ex.id!r} has no target (field 'target'); the recipe scores outputs")
        if not out[s]:
            raise ValueError(f"the {s} split is empty after filtering (examples need a non-empty profile)")
    return task, out


# --------------------------------------------------------------------------- results
@dataclass
class ROPGResults:
    """What :func:`run_ropg_recipe` returns (and writes as ``results.json`` / ``results.md``).

    Attributes:
        task: The task name (``"PFG-LaMP"``, ``"LaMP-4"``, ...).
        metrics: ``{system: {metric: mean over test}}`` for every pool member and selector.
        per_example: ``{system: {metric: [value per test example]}}``.
        primary_metric: The metric the selectors and the t-tests use first (``rouge1`` for generation).
        best_single: The pool member with the best mean primary metric on test.
        significance: ``{system: {metric: {"p_value", "t", "mean_difference", "significant"}}}``,
            paired two-sided t-tests against ``best_single``.
        selectors: ``{"RSPG-Pre": {"success_rate", "selected_eval", "chosen": {retriever: count}, ...}}``.
        oracle: ``{"lower": ..., "upper": ...}`` of the primary metric over the pool (paper Table 5).
        ropg: Training summaries of ROPG-RL / ROPG-KD (steps, final loss, policy quality on the train items).
        sizes: Examples per split, users, profile sizes, prompts generated and cache hits.
        timings: Seconds per stage and in total.
        config: The recipe config as a dict.
        table: The markdown results table.
    """

    task: str
    metrics: dict[str, dict[str, float]]
    per_example: dict[str, dict[str, list[float]]]
    primary_metric: str
    best_single: str
    significance: dict[str, dict[str, dict[str, Any]]]
    selectors: dict[str, dict[str, Any]]
    oracle: dict[str, float]
    ropg: dict[str, dict[str, Any]]
    sizes: dict[str, Any]
    timings: dict[str, float]
    config: dict[str, Any]
    table: str = ""
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def systems(self) -> list[str]:
        return list(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "primary_metric": self.primary_metric, "best_single": self.best_single,
                "metrics": self.metrics, "significance": self.significance, "selectors": self.selectors,
                "oracle": self.oracle, "ropg": self.ropg, "sizes": self.sizes, "timings": self.timings,
                "environment": self.environment, "config": self.config, "per_example": self.per_example,
                "table": self.table}

    def to_markdown(self) -> str:
        """The table plus the selector, oracle and size summaries."""
        lines = [f"## {self.task}: retrievers and selectors on test ({self.sizes.get('test', '?')} examples)", "",
                 self.table, ""]
        if self.selectors:
            lines += ["| selector | success rate | mean EVAL of the choice | choices |", "| --- | ---: | ---: | --- |"]
            for name, s in self.selectors.items():
                chosen = ", ".join(f"{k} {v}" for k, v in s["chosen"].items() if v)
                lines.append(f"| {name} | {s['success_rate']:.3f} | {s['selected_eval']:.4f} | {chosen} |")
            lines.append("")
        lines.append(f"Oracle over the pool ({self.primary_metric}): lower bound {self.oracle['lower']:.4f}, "
                     f"upper bound {self.oracle['upper']:.4f}.")
        return "\n".join(lines) + "\n"

    def save(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``results.json`` and ``results.md`` into ``directory`` (atomically)."""
        d = Path(directory)
        j = atomic_write_text(d / "results.json", json.dumps(jsonable(self.to_dict()), indent=2) + "\n")
        m = atomic_write_text(d / "results.md", self.to_markdown())
        return j, m

    def __str__(self) -> str:
        return self.to_markdown()




def _format_table(metrics: dict[str, dict[str, float]], significance: dict, best: str, metric_names: list[str]
                  ) -> str:
    header = "| system | " + " | ".join(metric_names) + " |"
    lines = [header, "| --- | " + " | ".join("---:" for _ in metric_names) + " |"]
    for name, row in metrics.items():
        cells = []
        for m in metric_names:
            value = row.get(m)
            text = "–" if value is None else f"{value:.4f}"
            sig = significance.get(name, {}).get(m)
            if sig is not None and sig.get("significant"):
                text += "↑" if sig["mean_difference"] > 0 else "↓"
            cells.append(text)
        label = f"{name} (best single)" if name == best else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("↑ / ↓: significantly better / worse than the best single retriever (two-sided paired t-test).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- metrics
def _metric_fns(task: str) -> tuple[list[str], Any]:
    """Metric names and a function ``(predictions, targets) -> {name: per-example list}`` for a task."""
    from personakit.eval.lamp import lamp_eval_fn, lamp_eval_name, parse_rating

    name = lamp_eval_name(task)
    if name == "rouge1":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)

        def fn(preds: Sequence[str], targets: Sequence[str]) -> dict[str, list[float]]:
            scores = [scorer.score(t, p) for p, t in zip(preds, targets)]
            return {"rouge1": [s["rouge1"].fmeasure for s in scores], "rougeL": [s["rougeL"].fmeasure for s in scores]}

        return ["rouge1", "rougeL"], fn
    eval_fn = lamp_eval_fn(task)
    if name == "lamp3_score":
        def fn3(preds: Sequence[str], targets: Sequence[str]) -> dict[str, list[float]]:
            ae = []
            for p, t in zip(preds, targets):
                y, y_hat = float(parse_rating(t) or 0.0), parse_rating(p)
                y_hat = min(5.0, max(1.0, y_hat)) if y_hat is not None else (1.0 if abs(y - 1) > abs(y - 5) else 5.0)
                ae.append(abs(y - y_hat))
            return {"lamp3_score": [eval_fn(p, t) for p, t in zip(preds, targets)], "mae": ae}

        return ["lamp3_score", "mae"], fn3

    def fn_acc(preds: Sequence[str], targets: Sequence[str]) -> dict[str, list[float]]:
        return {"accuracy": [eval_fn(p, t) for p, t in zip(preds, targets)]}

    return ["accuracy"], fn_acc


# ----------------------------------------------------------------------------- run


def _token_counter(generator: Any, mode: str) -> Any:
    tok = getattr(getattr(generator, "generator", generator), "tokenizer", None)
    if mode != "llm" or tok is None:
        return None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def run_ropg_recipe(config: ROPGRecipeConfig, *, generator: Any = None, encoder: Any = None,
                    selector_encoder: Any = None, progress: bool = True) -> ROPGResults:
    """Run the ROPG / RSPG recipe (see the module docstring) and write ``results.{json,md}`` to ``output_dir``.

    Args:
        config: The recipe config.
        generator: A :class:`~personakit.llm.TextGenerator` to use as the frozen LLM
            (default: ``config.llm.model`` through :class:`~personakit.llm.HFGenerator`).
            It is always put behind the response cache.
        encoder: The dense retrievers' encoder: anything
            :class:`~personakit.retrieval.DenseRetriever` accepts (a name, a
            ``SentenceTransformer``, a ``(model, tokenizer)`` pair, a
            :class:`~personakit.retrieval.TextEncoder`); default ``config.ropg.encoder``.
            The trained retrievers get deep copies, so it must have trainable parameters.
        selector_encoder: The selectors' encoder (a name or a ``(model, tokenizer)``
            pair); default ``config.rspg.encoder``.  Each selector gets a deep copy.
        progress: Print each stage and show progress bars.

    Returns:
        :class:`ROPGResults`.
    """
    import numpy as np
    import torch

    from personakit.eval.lamp import lamp_eval_name
    from personakit.eval.significance import paired_ttest
    from personakit.functional.selector import oracle_bounds, selected_performance, selection_success_rate
    from personakit.llm import GenerationSettings, HFGenerator
    from personakit.retrieval import (BM25Retriever, DenseRetriever, NoRetrieval, RecencyRetriever, RRFRetriever,
                                      as_text_encoder)
    from personakit.retrieval.lamp_prompts import LaMPPromptBuilder
    from personakit.retrieval.selector import RetrieverSelector
    from personakit.training.feedback import LLMFeedbackScorer
    from personakit.training.ropg import ROPGKDTrainer, ROPGRLTrainer, prepare_ropg_items
    from personakit.training.rspg import RSPGItem, RSPGTrainer

    if not isinstance(config, ROPGRecipeConfig):
        raise TypeError(f"config must be a ROPGRecipeConfig, got {type(config).__name__}")
    log = StageLog(progress, "ropg", width=7)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = config.data.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    # 1. data --------------------------------------------------------------------
    task, splits = load_recipe_splits(config.data)
    rspg_split = config.rspg.train_split
    log(f"{task}: " + ", ".join(f"{s} {len(v)}" for s, v in splits.items()))
    timings["data_s"] = time.perf_counter() - t0

    # 2. LLM and prompts ---------------------------------------------------------------
    t = time.perf_counter()
    if generator is None:
        generator = HFGenerator.from_pretrained(config.llm.model, batch_size=config.llm.batch_size,
                                                dtype=config.llm.dtype, device=config.device)
    builder = LaMPPromptBuilder(task, max_tokens=config.prompt.max_tokens,
                                tokenizer=_token_counter(generator, config.prompt.count_with))
    cache_path = Path(config.llm.cache_path) if config.llm.cache_path else out_dir / "llm_cache.jsonl"
    settings = GenerationSettings(max_new_tokens=config.llm.max_new_tokens, temperature=0.0, stop=config.llm.stop)
    scorer = LLMFeedbackScorer(generator, builder, cache=cache_path, settings=settings,
                               batch_size=config.llm.batch_size, progress=progress)
    timings["llm_load_s"] = time.perf_counter() - t

    # encoders
    base_encoder = as_text_encoder(encoder if encoder is not None else config.ropg.encoder, device=config.device)
    base_encoder.eval()
    needed = set(config.pool.retrievers) | (set(config.pool.rrf_members) if "rrf" in config.pool.retrievers else set())
    dense = DenseRetriever(encoder=copy.deepcopy(base_encoder))

    # 3. ROPG -----------------------------------------------------------------------
    ropg_summary: dict[str, dict[str, Any]] = {}
    trained: dict[str, DenseRetriever] = {}
    want = [n for n in ("ropg-rl", "ropg-kd") if n in needed]
    if want:
        t = time.perf_counter()
        train = splits["train"]
        top_l = config.ropg.top_l
        log(f"ROPG feedback: {len(train)} inputs x top-{top_l} candidates of the initial dense retriever")
        items = prepare_ropg_items([builder.query(ex) for ex in train], [ex.profile for ex in train],
                                   initial_retriever=dense, top_l=top_l, feedback=scorer.score_candidates,
                                   examples=train, ids=[ex.id for ex in train])
        timings["ropg_feedback_s"] = time.perf_counter() - t
        for name in want:
            t = time.perf_counter()
            key = "rl" if name == "ropg-rl" else "kd"
            base_cfg: ROPGTrainerConfig = getattr(config.ropg, key)
            tcfg = base_cfg.model_copy(update={
                "top_l": top_l, "progress": progress,
                "output_dir": base_cfg.output_dir or str(out_dir / name)})
            retriever = DenseRetriever(encoder=copy.deepcopy(base_encoder))
            cls = ROPGRLTrainer if key == "rl" else ROPGKDTrainer
            trainer = cls(retriever, tcfg)
            before = trainer.evaluate(items)
            history = trainer.train(items, resume_from="latest")
            after = trainer.evaluate(items)
            retriever.module.eval()
            trained[name] = retriever
            ropg_summary[_DISPLAY[name]] = {
                "steps": len(history), "final_loss": history[-1]["loss"] if history else None,
                "train_items": len(items), "before": before, "after": after,
            }
            timings[f"{name}_train_s"] = time.perf_counter() - t
            m = tcfg.eval_metric
            log(f"{name}: {len(history)} steps, top-1 EVAL on train {before[f'{m}@top1']:.4f} -> "
                f"{after[f'{m}@top1']:.4f} (initial {after[f'{m}@initial']:.4f}, oracle {after[f'{m}@oracle']:.4f})")

    # 4. the pool -------------------------------------------------------------------
    members: dict[str, Any] = {"none": NoRetrieval(), "recency": RecencyRetriever(), "bm25": BM25Retriever(),
                               "dense": dense, **trained}
    if "rrf" in config.pool.retrievers:
        members["rrf"] = RRFRetriever([members[m] for m in config.pool.rrf_members], k=config.pool.rrf_k)
    pool_names = list(config.pool.retrievers)
    labels = [_DISPLAY[n] for n in pool_names]

    def pool_outputs(examples: list) -> tuple[list[list[str]], list[list[str]], np.ndarray]:
        queries = [builder.query(ex) for ex in examples]
        item_lists: list[list[list[Any]]] = [[] for _ in examples]
        for n in pool_names:
            ranked = members[n].retrieve_batch(queries, [ex.profile for ex in examples], k=config.pool.k)
            for i, row in enumerate(ranked):
                item_lists[i].append([r.item for r in row])
        scored = scorer.score_item_lists(examples, item_lists)
        return scored.prompts, scored.outputs, np.stack(scored.scores)  # (N, R) EVAL

    t = time.perf_counter()
    need_splits = ["test"] + ([rspg_split] if config.rspg.modes else [])
    pool: dict[str, tuple[list[list[str]], list[list[str]], np.ndarray]] = {}
    for s in dict.fromkeys(need_splits):
        log(f"pool on {s}: {len(splits[s])} inputs x {len(pool_names)} retrievers")
        pool[s] = pool_outputs(splits[s])
    timings["pool_generation_s"] = time.perf_counter() - t

    # 5. RSPG -----------------------------------------------------------------------
    chosen: dict[str, list[int]] = {}
    selector_summary: dict[str, dict[str, Any]] = {}
    for mode in config.rspg.modes:
        t = time.perf_counter()
        label = _SELECTORS[mode]
        prompts, outputs, evals = pool[rspg_split]
        train_items = [RSPGItem(prompts=p, evals=e.tolist(), outputs=o, id=ex.id)
                       for p, o, e, ex in zip(prompts, outputs, evals, splits[rspg_split])]
        enc = selector_encoder if selector_encoder is not None else config.rspg.encoder
        if isinstance(enc, tuple):
            enc = (copy.deepcopy(enc[0]), copy.deepcopy(enc[1]))
        torch.manual_seed(seed)
        selector = RetrieverSelector(enc, mode=mode, max_length=config.rspg.max_length, pooling=config.rspg.pooling,
                                     retriever_names=labels)
        if config.device is not None:
            selector = selector.to(config.device)
        rcfg = config.rspg.trainer.model_copy(update={
            "output_dir": config.rspg.trainer.output_dir or str(out_dir / f"rspg-{mode}"),
            "progress": progress})
        trainer = RSPGTrainer(selector, rcfg)
        out = trainer.train(train_items)
        t_prompts, t_outputs, t_evals = pool["test"]
        test_items = [RSPGItem(prompts=p, evals=e.tolist(), outputs=o) for p, o, e in zip(t_prompts, t_outputs, t_evals)]
        scores = trainer.predict(test_items)  # (N, R)
        choice = scores.argmax(-1).tolist()
        chosen[label] = choice
        selector_summary[label] = {
            "success_rate": selection_success_rate(choice, t_evals),
            "selected_eval": selected_performance(choice, t_evals),
            "chosen": {lab: int(sum(1 for c in choice if c == j)) for j, lab in enumerate(labels)},
            "train_split": rspg_split, "train_items": len(train_items), "steps": out.global_step,
            "train_success_rate": selection_success_rate(trainer.predict(train_items).argmax(-1).tolist(), evals),
        }
        if config.save_models:
            selector.save_pretrained(out_dir / f"selector-{mode}")
        timings[f"rspg_{mode}_s"] = time.perf_counter() - t
        log(f"{label}: success rate {selector_summary[label]['success_rate']:.3f} on test")

    # 6. evaluation -----------------------------------------------------------------
    test = splits["test"]
    targets = [str(ex.target) for ex in test]
    metric_names, metric_fn = _metric_fns(task)
    eval_name = lamp_eval_name(task)
    primary = metric_names[0]
    _, t_outputs, t_evals = pool["test"]
    per_example: dict[str, dict[str, list[float]]] = {}
    for j, lab in enumerate(labels):
        per_example[lab] = metric_fn([o[j] for o in t_outputs], targets)
    for label, choice in chosen.items():
        per_example[label] = metric_fn([o[c] for o, c in zip(t_outputs, choice)], targets)
    lower_is_better = {"mae"}
    metrics = {s: {m: float(np.mean(v)) for m, v in row.items()} for s, row in per_example.items()}
    best = max(labels, key=lambda lab: metrics[lab][primary])
    significance: dict[str, dict[str, dict[str, Any]]] = {}
    for s in per_example:
        if s == best:
            continue
        significance[s] = {}
        for m in metric_names:
            r = paired_ttest(per_example[s][m], per_example[best][m])
            diff = float(r.details["mean_difference"])
            better = diff < 0 if m in lower_is_better else diff > 0
            significance[s][m] = {"p_value": r.p_value, "t": r.statistic, "mean_difference": diff,
                                  "significant": bool(r.significant(config.significance_level)), "better": better}
    lower, upper = oracle_bounds(t_evals)
    table = _format_table(metrics, significance, best, metric_names)
    timings["total_s"] = time.perf_counter() - t0

    sizes = {s: len(v) for s, v in splits.items()}
    sizes.update({
        "users": len({ex.profile.user_id for v in splits.values() for ex in v}),
        "mean_profile_items_test": float(np.mean([len(ex.profile.items) for ex in test])),
        "ropg_train_items": len(splits["train"]) if want else 0,
        "llm_prompts_requested": scorer.requested, "llm_prompts_generated": scorer.generated,
        "llm_cache_entries": len(scorer.cache) if scorer.cache is not None else None,
        "eval_metric": eval_name,
    })
    results = ROPGResults(
        task=task, metrics=metrics, per_example=per_example, primary_metric=primary, best_single=best,
        significance=significance, selectors=selector_summary, oracle={"lower": lower, "upper": upper,
                                                                        "metric": eval_name},
        ropg=ropg_summary, sizes=sizes, timings=timings, config=config.to_dict(), table=table,
        environment={"python": platform.python_version(), "platform": platform.platform(),
                     "torch": torch.__version__, "generator": getattr(generator, "model_id", type(generator).__name__),
                     "cpu_count": os.cpu_count(),
                     "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    )
    results.save(out_dir)
    log(f"done in {timings['total_s']:.1f} s; results in {out_dir / 'results.md'}")
    return results
