r"""Config of the retrieved-persona recipe (:func:`~personakit.recipes.retrieved_persona.run_retrieved_persona_recipe`).

Example:
    >>> cfg = RetrievedPersonaRecipeConfig(k=1, systems=["full", "bm25", "rspg"])
    >>> cfg.system_labels()["bm25"], cfg.needed_sources()
    ('BM25 top-1', ['full', 'bm25', 'dense', 'none'])
    >>> RetrievedPersonaRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from personakit.backbones.peft import LoraSettings
from personakit.config import BaseConfig
from personakit.recipes.base import PathField, RecipeConfig

__all__ = [
    "PERSONA_SOURCES",
    "SELECTION_SYSTEMS",
    "RetrievedPersonaDataConfig",
    "RetrievedPersonaTestSet",
    "RetrievedPersonaProfileConfig",
    "RetrievedPersonaInputConfig",
    "RetrievedPersonaTrainingConfig",
    "RetrievedPersonaRSPGConfig",
    "RetrievedPersonaEvalConfig",
    "RetrievedPersonaRecipeConfig",
]

PERSONA_SOURCES = ("full", "none", "random", "bm25", "dense", "rrf")
"""Ways of choosing the persona items of one example: the whole persona, nothing, ``k`` random items,
the top ``k`` by BM25, by a dense encoder, or by reciprocal-rank fusion of BM25 and dense."""

SELECTION_SYSTEMS = ("rspg", "oracle")
"""Systems that pick one source per example: the trained RSPG selector, and the oracle that picks the
source under which the GRAG model gives the reference the highest likelihood (an upper bound: it reads
the reference)."""


class RetrievedPersonaTestSet(BaseConfig):
    """An extra named test set, scored beside ``test`` with every system.

    Example:
        >>> RetrievedPersonaTestSet(name="spc-csv", path="test.csv").agent is None
        True
    """

    name: str = Field(..., min_length=1, description="The test set's name in results.md and predictions.jsonl.")
    path: str = PathField(..., description="A dialogue file read with personakit.data.read_dataset (SPC jsonl or "
                                           "CSV, ConvAI2, ...): relative to the config file's folder.")
    format: Optional[str] = Field(None, description="read_dataset format (None: detected from the file).")
    agent: Optional[str] = Field(None, description="Responding speaker (None: data.agent).")
    max_examples: Optional[int] = Field(None, ge=1, description="Seeded sample of this many examples "
                                                                "(None: data.max_test).")

    @field_validator("name")
    @classmethod
    def _not_test(cls, value: str) -> str:
        if value.strip() == "test":
            raise ValueError("'test' is the main test set's name; choose another")
        return value.strip()


class RetrievedPersonaDataConfig(BaseConfig):
    """Train, dev and test examples: one per turn of the responding speaker, its persona as the profile.

    ``source: spc`` reads ``train_file`` (training), ``dev_file`` (the RSPG feedback split) and
    ``test_file`` from ``path`` (Synthetic-Persona-Chat JSON lines); ``source: builtin`` uses the
    built-in corpus (its train split for training and, split by dialogue, for dev; its test split
    for testing), which needs no data files.  ``max_train`` / ``max_dev`` / ``max_test`` take a
    seeded sample of that many dialogues first, then that many examples from their turns, so the
    examples spread over many personas.
    """

    source: Literal["spc", "builtin"] = Field("spc", description="'spc' (files under path) or 'builtin'.")
    path: Optional[str] = PathField("${PERSONAKIT_DATA}/spc", description=(
        "SPC folder holding train_file, dev_file and test_file (source spc)."))
    train_file: str = Field("train.jsonl", description="Training dialogues (in path).")
    dev_file: str = Field("valid.jsonl", description="Dev dialogues: the RSPG selector's training feedback (in path).")
    test_file: str = Field("test.jsonl", description="Test dialogues (in path).")
    agent: Optional[str] = Field(None, description="Responding speaker (None: 'User 2' for SPC, 'agent' builtin).")
    max_history_turns: Optional[int] = Field(4, ge=1, description="Keep the last N history turns per example.")
    max_train: Optional[int] = Field(None, ge=1, description="Seeded sample of this many training examples.")
    max_dev: Optional[int] = Field(None, ge=1, description="Seeded sample of this many dev examples.")
    max_test: Optional[int] = Field(None, ge=1, description="Seeded sample of this many test examples.")
    test_sets: list[RetrievedPersonaTestSet] = Field(default_factory=list, description=(
        "Extra named test sets ({name, path, format, agent, max_examples}), scored beside 'test'."))

    @model_validator(mode="after")
    def _check(self) -> "RetrievedPersonaDataConfig":
        if self.source == "spc" and not self.path:
            raise ValueError("source 'spc' needs path (the folder of train.jsonl, valid.jsonl, test.jsonl)")
        names = [t.name for t in self.test_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"test_sets: names must be unique, got {names}")
        return self

    @property
    def responder(self) -> str:
        """The responding speaker."""
        return self.agent or ("User 2" if self.source == "spc" else "agent")


class RetrievedPersonaProfileConfig(BaseConfig):
    """What the retrievers rank (the profile) and what they rank it for (the query)."""

    query_turns: int = Field(1, ge=1, description="The query: the last N history turns, joined.")
    include_own_turns: bool = Field(False, description=(
        "Add the responder's earlier turns of the history to the profile (the persona facts always are)."))
    keep_profile_order: bool = Field(True, description=(
        "Show retrieved items in profile order (False: in rank order)."))


class RetrievedPersonaInputConfig(BaseConfig):
    """Token budgets of the GRAG model's inputs (:class:`~personakit.models.grag.GRAGCollator` options)."""

    max_persona_tokens: int = Field(96, ge=1, description="Tokens of the persona P.")
    max_history_tokens: int = Field(128, ge=1, description="Tokens of the history H (its end is kept).")
    max_response_tokens: int = Field(48, ge=1, description="Tokens of the response R_P.")


class RetrievedPersonaTrainingConfig(BaseConfig):
    """Training of PreSFT(Hist) on the full persona (:class:`~personakit.training.GRAGTrainer`)."""

    epochs: int = Field(1, ge=1, description="Passes over the training examples.")
    batch_size: int = Field(8, ge=1, description="Examples per optimizer step.")
    learning_rate: float = Field(3e-4, gt=0.0, description="Initial AdamW learning rate (decays linearly to 50%).")
    max_new_tokens: int = Field(32, ge=1, description="Generated tokens per response at test time (greedy).")
    eval_batch_size: int = Field(16, ge=1, description="Examples per generation / likelihood batch.")
    generation_options: dict[str, Any] = Field(default_factory=lambda: {"no_repeat_ngram_size": 3},
                                               description="Extra generate() options.")
    progress: bool = Field(False, description="Progress bars during training and generation.")
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "Other GRAGTrainingConfig fields (warmup_steps, weight_decay, gradient_accumulation_steps...)."))

    @model_validator(mode="after")
    def _check_options(self) -> "RetrievedPersonaTrainingConfig":
        self.trainer_config()  # an unknown or invalid option fails here, at load time
        return self

    def trainer_config(self, **update: Any) -> Any:
        """The :class:`~personakit.training.GRAGTrainingConfig` of these settings (plus ``update``)."""
        from personakit.training.grag import GRAGTrainingConfig

        mine = {k: v for k, v in self.model_dump().items() if k != "options"}
        clash = sorted(set(self.options) & set(mine))
        if clash:
            raise ValueError(f"options: set {clash} with the fields themselves, not in options")
        data = {**mine, **self.options, "eval_metrics": ["loss"], "eval_at_epoch_end": False, **update}
        return GRAGTrainingConfig.from_dict(data, source="training")


class RetrievedPersonaRSPGConfig(BaseConfig):
    """The RSPG-Pre selector, trained on the dev split with the GRAG model's likelihood as the reward.

    For each dev example and each candidate source, EVAL is the log-likelihood (nats) of the
    reference response under the trained PreSFT(Hist) model reading that source's persona; the
    selector (an encoder + linear head over ``persona: ... query: ...`` per candidate) learns
    ``softmax(EVAL / target_temperature)`` by KL (Salemi et al., 2024, Eq. 7).
    """

    candidates: list[str] = Field(default_factory=lambda: ["full", "bm25", "dense", "none"], min_length=2,
                                  description="Persona sources the selector chooses among.")
    encoder: str = Field("minilm", description="Selector encoder: embedded name, local folder or hub id.")
    max_length: int = Field(256, ge=4, description="Selector token budget per candidate text.")
    pooling: Literal["cls", "mean", "last"] = Field("mean", description="Pooling of the encoder's final layer.")
    epochs: int = Field(10, ge=1, description="Passes over the dev items.")
    batch_size: int = Field(8, ge=1, description="Dev items per micro-batch (each with one text per candidate).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(5e-5, gt=0.0, description="Peak learning rate (paper: 1e-5 over 20 epochs).")
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0, description="Share of steps with linear warm-up.")
    target_temperature: float = Field(1.0, gt=0.0, description="Temperature of softmax(EVAL) (EVAL in nats).")

    @field_validator("candidates")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        out = [v.strip().lower() for v in value]
        bad = [v for v in out if v not in PERSONA_SOURCES]
        if bad:
            raise ValueError(f"unknown candidate {bad[0]!r}; use persona sources from {list(PERSONA_SOURCES)}")
        if len(set(out)) != len(out):
            raise ValueError(f"candidates must be unique, got {out}")
        return out


class RetrievedPersonaEvalConfig(BaseConfig):
    """Scoring: text metrics, BPC of the references, paired tests against the baseline."""

    metrics: list[str] = Field(default_factory=lambda: ["rouge", "bleu"], min_length=1,
                               description="Text metrics (evaluate_texts names).")
    bpc: bool = Field(True, description="Bits per character of the reference under each system's persona.")
    baseline: str = Field("full", description="The system every other is compared with.")
    compare: list[str] = Field(default_factory=lambda: ["rougeL"], description="Metric keys of the paired tests.")
    significance_level: float = Field(0.05, gt=0.0, lt=1.0, description="p below this is significant.")


class RetrievedPersonaRecipeConfig(RecipeConfig):
    r"""The retrieved-persona recipe: retrievers and the RSPG selector choose the persona a GRAG model reads.

    ``systems`` name the rows: persona sources (:data:`PERSONA_SOURCES`) and selectors
    (:data:`SELECTION_SYSTEMS`); ``k`` is the number of persona items a retriever keeps.
    """

    recipe: ClassVar[str] = "retrieved-persona"

    data: RetrievedPersonaDataConfig = Field(default_factory=RetrievedPersonaDataConfig,
                                             description="Train / dev / test examples.")
    profile: RetrievedPersonaProfileConfig = Field(default_factory=RetrievedPersonaProfileConfig,
                                                   description="The profile and the query of the retrievers.")
    k: int = Field(2, ge=1, description="Persona items a retriever (and random) keeps.")
    systems: list[str] = Field(
        default_factory=lambda: ["full", "none", "random", "bm25", "dense", "rspg", "oracle"], min_length=1,
        description="Rows: persona sources (full, none, random, bm25, dense, rrf) and selectors (rspg, oracle).")
    dense_encoder: str = Field("minilm", description="Encoder of the dense retriever (embedded name, folder, hub id).")
    backbone: str = Field("smollm2", description="GRAG backbone: embedded name, local folder or hub id.")
    lora: Optional[LoraSettings] = Field(default_factory=LoraSettings, description=(
        "LoRA adapters on a decoder-only backbone (None: train every weight)."))
    dtype: Optional[str] = Field("auto", description=(
        "Frozen weights' dtype under LoRA ('auto': bf16 where the hardware has a fast bf16 path)."))
    inputs: RetrievedPersonaInputConfig = Field(default_factory=RetrievedPersonaInputConfig,
                                                description="Token budgets of the model inputs.")
    training: RetrievedPersonaTrainingConfig = Field(default_factory=RetrievedPersonaTrainingConfig,
                                                     description="PreSFT(Hist) training on the full persona.")
    rspg: RetrievedPersonaRSPGConfig = Field(default_factory=RetrievedPersonaRSPGConfig,
                                             description="The RSPG selector and its training.")
    eval: RetrievedPersonaEvalConfig = Field(default_factory=RetrievedPersonaEvalConfig,
                                             description="Metrics and paired tests.")
    save_model: bool = Field(False, description="Save the trained model and selector under output_dir/models.")

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, value: list[str]) -> list[str]:
        out = [v.strip().lower() for v in value]
        bad = [v for v in out if v not in PERSONA_SOURCES + SELECTION_SYSTEMS]
        if bad:
            raise ValueError(f"unknown system {bad[0]!r}; use {list(PERSONA_SOURCES + SELECTION_SYSTEMS)}")
        if len(set(out)) != len(out):
            raise ValueError(f"systems must be unique, got {out}")
        return out

    @model_validator(mode="after")
    def _check(self) -> "RetrievedPersonaRecipeConfig":
        if self.eval.baseline not in self.systems:
            raise ValueError(f"eval.baseline {self.eval.baseline!r} is not among the systems {self.systems}")
        return self

    @property
    def selects(self) -> bool:
        """Whether a selection system (RSPG, oracle) is a row, so every candidate is needed."""
        return any(s in SELECTION_SYSTEMS for s in self.systems)

    def needed_sources(self) -> list[str]:
        """The persona sources to run on a test set: the rows' and, with a selector row, the candidates."""
        out = [s for s in self.systems if s in PERSONA_SOURCES]
        if self.selects:
            out += [c for c in self.rspg.candidates if c not in out]
        return out

    def system_labels(self) -> dict[str, str]:
        """``{system: row label}``."""
        k = self.k
        labels = {"full": "Full persona", "none": "No persona", "random": f"Random {k}",
                  "bm25": f"BM25 top-{k}", "dense": f"Dense top-{k}", "rrf": f"RRF(BM25+dense) top-{k}",
                  "rspg": "RSPG selector", "oracle": "Oracle selection"}
        return {s: labels[s] for s in PERSONA_SOURCES + SELECTION_SYSTEMS}
