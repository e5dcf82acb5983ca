"""The ROPG / RSPG recipe's config: one section per component, loadable from YAML.

``personakit run ropg --config tiny|default|FILE.yaml [--set key=value ...]`` reads it
through :func:`~personakit.recipes.base.load_recipe_config`; every key is checked at load,
and relative paths in a file resolve against the file's folder.

Example:
    >>> from personakit.recipes.base import load_recipe_config
    >>> config = load_recipe_config("ropg", "tiny", overrides=["pool.k=3"])
    >>> config.data.source, config.pool.k
    ('builtin', 3)
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from personakit.config import BaseConfig, Fraction
from personakit.recipes.base import PathField, RecipeConfig
from personakit.training.ropg import ROPGTrainerConfig
from personakit.training.rspg import RSPGTrainerConfig

__all__ = [
    "POOL_RETRIEVERS",
    "ROPGTestSetConfig",
    "ROPGDataConfig",
    "ROPGPoolConfig",
    "ROPGPromptConfig",
    "ROPGLLMConfig",
    "ROPGTrainingConfig",
    "RSPGRecipeConfig",
    "ROPGRecipeConfig",
]

POOL_RETRIEVERS = ("none", "recency", "bm25", "dense", "rrf", "ropg-rl", "ropg-kd")
"""The retrievers the recipe knows: the paper's baselines and its two trained retrievers."""


class ROPGTestSetConfig(BaseConfig):
    """An extra named test set: a file of examples of the recipe's task, scored like the main test split.

    Every system (the pool and the selectors trained on the recipe's splits) answers it;
    it gets its own table, significance tests against its own best single retriever,
    selector summary and oracle bounds, and its own records in ``predictions.jsonl``.
    """

    path: str = PathField(..., description=(
        "The examples: a LaMP questions file (*.json, LaMP-1..7; gold outputs from `outputs`, else the "
        "*_outputs.json beside it, else each question's 'output') or JSON lines of ProfileExample records "
        "(*.jsonl: id, task, input, profile {user_id, items}, target; any task, PFG-LaMP included). "
        "The examples' task must be the recipe's."))
    outputs: Optional[str] = PathField(None, description=(
        "LaMP outputs file of `path` (None: the *_outputs.json beside it when there is one)."))
    max_examples: Optional[int] = Field(None, ge=1, description="Seeded sample of this many examples (None: all).")


class ROPGDataConfig(BaseConfig):
    """Where the task comes from, how much of it to use, and the extra test sets."""

    source: Literal["pfg", "lamp", "builtin"] = Field("builtin", description=(
        "'pfg': PFG-LaMP from the Persuasion-for-Good FullData folder at `path`; 'lamp': a folder with "
        "{train,dev,test}_questions.json and *_outputs.json (test optional: without it the dev split is cut "
        "in two halves, dev and test); 'builtin': the built-in dialogue corpus as a tiny PFG-LaMP-style task."))
    path: Optional[str] = PathField(None, description="The FullData folder (pfg) or the LaMP task folder (lamp).")
    task: Optional[str] = Field(None, description=(
        "'LaMP-4' etc. for source='lamp' (default: from the outputs files or the folder name)."))
    history_turns: int = Field(3, ge=1, description="PFG-LaMP: merged turns of conversation in each input.")
    max_profile_items: Optional[int] = Field(None, ge=1, description=(
        "PFG-LaMP: keep only the most recent entries of each profile."))
    split_by: Literal["time", "global", "user"] = Field("time", description=(
        "PFG-LaMP: 'time' (per user: last target dialogue -> test, the one before -> dev, the rest -> train), "
        "'global' (one date cut over all target dialogues by split_fractions) or 'user' (held-out users: the "
        "users shuffled by the seed and cut by split_fractions, so no user is in two splits)."))
    split_fractions: tuple[Fraction, Fraction, Fraction] = Field((0.8, 0.1, 0.1), description=(
        "Train / dev / test fractions: of the target dialogues for split_by='global', of the users for 'user'."))
    min_prior_dialogues: int = Field(1, ge=1, description=(
        "PFG-LaMP: earlier dialogues a persuader needs before a dialogue becomes a target (an example)."))
    max_users: Optional[int] = Field(None, ge=1, description="PFG-LaMP: a seeded sample of this many persuaders.")
    max_examples_per_user: Optional[int] = Field(None, ge=1, description=(
        "PFG-LaMP: at most this many examples per user and split."))
    max_train: Optional[int] = Field(None, ge=1, description=(
        "Seeded sample of this many train examples (the ROPG training inputs)."))
    max_dev: Optional[int] = Field(None, ge=1, description=(
        "Seeded sample of this many dev examples (the RSPG training inputs by default)."))
    max_test: Optional[int] = Field(None, ge=1, description="Seeded sample of this many test examples.")
    test_sets: dict[str, ROPGTestSetConfig] = Field(default_factory=dict, description=(
        "Extra named test sets, scored and reported beside the main split (named 'test'): "
        "{name: {path, outputs, max_examples}} or {name: path}, e.g. {lamp4_dev: data/LaMP_4/dev_questions.json}."))

    @field_validator("test_sets", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("test_sets")
    @classmethod
    def _names(cls, value: dict[str, ROPGTestSetConfig]) -> dict[str, ROPGTestSetConfig]:
        for name in value:
            if not name.strip() or name.strip().lower() in ("test", "train", "dev"):
                raise ValueError(f"test set name {name!r}: give another name ('train', 'dev' and 'test' are the "
                                 "recipe's own splits)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "ROPGDataConfig":
        if self.source in ("pfg", "lamp") and not self.path:
            raise ValueError(f"source={self.source!r} needs `path` (the data folder)")
        return self


class ROPGPoolConfig(BaseConfig):
    """The retrievers compared (and selected between)."""

    retrievers: list[str] = Field(default_factory=lambda: list(POOL_RETRIEVERS), min_length=2, description=(
        "Pool members, in table order: any of none, recency, bm25, dense, rrf (BM25 + recency + dense), "
        "ropg-rl, ropg-kd."))
    k: Optional[int] = Field(4, ge=1, description=(
        "Profile entries retrieved per prompt (paper: 4; None: as many as fit); entries that do not fit the "
        "prompt budget are skipped."))
    rrf_members: list[str] = Field(default_factory=lambda: ["bm25", "recency", "dense"], min_length=1,
                                   description="Members of rrf (the paper fuses BM25, recency and Contriever).")
    rrf_k: float = Field(60, ge=0, description="The RRF constant k.")

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
    count_with: Literal["llm", "words"] = Field("llm", description=(
        "Count tokens with the LLM's tokenizer ('llm', when the generator has one, else words) or "
        "whitespace words ('words')."))


class ROPGLLMConfig(BaseConfig):
    """The frozen LLM $M$ that answers every prompt (greedy decoding)."""

    model: str = Field("smollm2", description=(
        "The causal LM: embedded 'smollm2' (SmolLM2-135M-Instruct), a local folder or a hub id."))
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    max_new_tokens: int = Field(32, ge=1, description="Maximum output length in tokens.")
    stop: list[str] = Field(default_factory=lambda: ["\n"], description=(
        "Stop sequences (the output is cut before the first one)."))
    postprocess: bool = Field(True, description=(
        "Apply the task's output post-processing before EVAL (PFG-LaMP: speaker labels stripped, "
        "cut where a new turn begins; LaMP tasks have none)."))
    cache_path: Optional[str] = PathField(None, description=(
        "JSON-lines response cache shared by every stage (None: <output_dir>/llm_cache.jsonl)."))
    dtype: Optional[str] = Field(None, description="Weights dtype ('bfloat16' on a GPU; None: float32).")


class ROPGTrainingConfig(BaseConfig):
    """ROPG: the initial retriever, the candidates and the two trainers."""

    encoder: str = Field("minilm", description=(
        "Bi-encoder of dense, ropg-rl and ropg-kd (embedded 'minilm' or a folder); the trained retrievers "
        "start from it."))
    top_l: int = Field(8, ge=2, description="Candidates per training input, the initial retriever's top l (paper: 16).")
    rl: ROPGTrainerConfig = Field(
        default_factory=lambda: ROPGTrainerConfig(learning_rate=2e-5, epochs=2, batch_size=8, gradient_accumulation_steps=1,
                                                  temperature=0.05, eval_metric="eval"),
        description="ROPG-RL trainer settings (output_dir default: <output_dir>/ropg-rl; top_l comes from this "
                    "section).")
    kd: ROPGTrainerConfig = Field(
        default_factory=lambda: ROPGTrainerConfig(learning_rate=2e-5, epochs=2, batch_size=8, gradient_accumulation_steps=1,
                                                  temperature=0.05, target_temperature=0.1, eval_metric="eval"),
        description="ROPG-KD trainer settings (output_dir default: <output_dir>/ropg-kd).")


class RSPGRecipeConfig(BaseConfig):
    """RSPG: the selectors and their training."""

    encoder: str = Field("minilm", description=(
        "Encoder of both selectors (embedded 'minilm', a folder or a hub id; paper: Longformer-base)."))
    modes: list[Literal["pre", "post"]] = Field(default_factory=lambda: ["pre", "post"], min_length=1,
                                                description="Selectors to train and evaluate: pre and/or post.")
    max_length: int = Field(256, ge=8, description="Tokens per selector input (paper: 1024).")
    pooling: Literal["cls", "mean", "last"] = Field("mean", description=(
        "Pooling of the final layer ('mean' suits MiniLM, trained with mean pooling)."))
    train_split: Literal["dev", "train"] = Field("dev", description=(
        "Split the selectors train on: 'dev' (cheap) or 'train' (the paper; needs the pool's outputs on train)."))
    trainer: RSPGTrainerConfig = Field(
        default_factory=lambda: RSPGTrainerConfig(epochs=5, batch_size=4, gradient_accumulation_steps=2,
                                                  learning_rate=5e-5, target_temperature=0.1),
        description="RSPG trainer settings (output_dir default: <output_dir>/rspg-<mode>).")


class ROPGRecipeConfig(RecipeConfig):
    """The whole ROPG / RSPG recipe (``personakit run ropg``).

    ``output_dir`` holds the response cache, the checkpoints (a rerun resumes them), the
    saved selectors and the results; ``seed`` seeds the subsampling, the initialisations
    and the data order.

    Example:
        >>> cfg = ROPGRecipeConfig(data={"source": "builtin"}, output_dir="runs/ropg")
        >>> ROPGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
        True
    """

    recipe: ClassVar[str] = "ropg"
    _renamed_: ClassVar[dict[str, str]] = {"alpha": "significance_level"}

    data: ROPGDataConfig = Field(default_factory=ROPGDataConfig, description="Task, subsampling and extra test sets.")
    pool: ROPGPoolConfig = Field(default_factory=ROPGPoolConfig, description="The retriever pool.")
    prompt: ROPGPromptConfig = Field(default_factory=ROPGPromptConfig, description="Prompt construction.")
    llm: ROPGLLMConfig = Field(default_factory=ROPGLLMConfig, description="The frozen LLM.")
    ropg: ROPGTrainingConfig = Field(default_factory=ROPGTrainingConfig, description="ROPG training.")
    rspg: RSPGRecipeConfig = Field(default_factory=RSPGRecipeConfig, description="RSPG training.")
    significance_level: float = Field(0.05, gt=0, lt=1, description=(
        "Significance level of the two-sided paired t-tests against the best single retriever (paper: 0.05; "
        "'alpha', its old name, is still read)."))
    save_models: bool = Field(True, description=(
        "Save each selector with save_pretrained under <output_dir>/selector-<mode> (the ROPG checkpoints are "
        "always kept)."))
