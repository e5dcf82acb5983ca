"""Config classes of the questioner-aware recipe (``personakit run questioner``).

Example:
    >>> cfg = QuestionerRecipeConfig(systems=[{"kind": "lora"}, {"kind": "dual-tower", "settings": {"rank": 4}}])
    >>> [s.label for s in cfg.systems]
    ['LoRA', 'Dual-tower']
    >>> cfg.data.source
    'builtin'
    >>> QuestionerRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from personakit.config import BaseConfig
from personakit.data.pfg_questioner import PFGQuestionerConfig
from personakit.modules.question_clusterer import QuestionClustererConfig
from personakit.recipes.base import PathField, RecipeConfig
from personakit.training.questioner import QuestionerTrainingConfig

__all__ = [
    "QUESTIONER_SYSTEM_KINDS",
    "QUESTIONER_SOURCES",
    "QuestionerTestSetConfig",
    "QuestionerDataConfig",
    "QuestionerInputConfig",
    "QuestionerSystemSpec",
    "QuestionerEvalConfig",
    "QuestionerRecipeConfig",
]

QUESTIONER_SYSTEM_KINDS = ("dual-tower", "lora", "persona-prompt")
"""System kinds of the recipe."""
QUESTIONER_SOURCES = ("builtin", "pfg", "mqdialog", "examples")
"""Data sources of the recipe (:class:`QuestionerDataConfig`)."""
_LABELS = {"dual-tower": "Dual-tower", "lora": "LoRA", "persona-prompt": "Persona-in-prompt"}


class QuestionerTestSetConfig(BaseConfig):
    """An extra named test set: a file of examples, or another split of the main data source.

    A bare path stands for ``{path: PATH}`` (``test_sets: {extra: extra.jsonl}``).

    Example:
        >>> QuestionerTestSetConfig.model_validate("dev.jsonl").path
        'dev.jsonl'
        >>> QuestionerTestSetConfig(split="dev").split
        'dev'
    """

    path: Optional[str] = PathField(None, description="File of test examples: JSON lines of ResponseExample "
                                                      "(format 'examples') or an MQDialog file (format 'mqdialog').")
    format: Literal["examples", "mqdialog"] = Field("examples", description="How to read path.")
    split: Optional[Literal["train", "dev", "test"]] = Field(
        None, description="Instead of a file: this split of the main data source ('dev' for pfg; 'train' of any "
                          "source scores how well the training data was fitted).")
    max_examples: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many examples.")

    @model_validator(mode="before")
    @classmethod
    def _bare_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> "QuestionerTestSetConfig":
        if (self.path is None) == (self.split is None):
            raise ValueError("give either path (a file of examples) or split (of the main data source)")
        return self


class QuestionerDataConfig(BaseConfig):
    """Where the examples come from.

    ``source``: ``"builtin"``: the built-in sample corpus (40 dialogues shipped with
    personakit, no files needed): every agent reply answering a user gives an example
    (questioner: the user, responder: the agent, persona: the user's record); the last
    reply of every dialogue is the test set and the earlier ones train, so every test
    questioner has training examples. ``"pfg"``: PFG-Questioner built from the
    Persuasion-for-Good ``FullData`` folder ``path``. ``"mqdialog"``: MQDialog-format
    ``train_path`` / ``test_path``. ``"examples"``: JSON lines of ResponseExample.

    Example:
        >>> QuestionerDataConfig(source="pfg", path="FullData", pfg={"split_by": "turn"}).pfg.split_by
        'turn'
        >>> QuestionerDataConfig(source="builtin", test_sets={"train": {"split": "train"}}).test_sets["train"].split
        'train'
    """

    source: Literal["builtin", "pfg", "mqdialog", "examples"] = Field(
        "pfg", description="'builtin' (the built-in corpus), 'pfg' (path), 'mqdialog' or 'examples' "
                           "(train_path / test_path).")
    path: Optional[str] = PathField(None, description="Persuasion-for-Good FullData folder (pfg).")
    train_path: Optional[str] = PathField(None, description="Training file (mqdialog / examples).")
    test_path: Optional[str] = PathField(None, description="Test file (mqdialog / examples).")
    pfg: PFGQuestionerConfig = Field(default_factory=PFGQuestionerConfig, description="PFG-Questioner options.")
    test_split: Literal["dev", "test"] = Field("test", description="PFG split used as the main test set ('test').")
    max_train: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many training examples.")
    max_test: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many test examples.")
    test_sets: dict[str, QuestionerTestSetConfig] = Field(
        default_factory=dict,
        description="Extra named test sets, scored and reported beside the main one ('test'): name -> FILE (ResponseExample "
                    "JSON lines), {path: FILE, format: examples|mqdialog, max_examples: N} (JSON lines or an "
                    "MQDialog file) or {split: dev|train} of the main source (e.g. "
                    "{dev: {split: dev}} for pfg). "
                    "The questioner diversity is measured on the main test set only.")

    @field_validator("test_sets")
    @classmethod
    def _names(cls, value: dict[str, QuestionerTestSetConfig]) -> dict[str, QuestionerTestSetConfig]:
        for name in value:
            if not name.strip() or name == "test":
                raise ValueError(f"test set name {name!r}: use a non-empty name other than 'test' (the main test set)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "QuestionerDataConfig":
        if self.source == "pfg" and not self.path:
            raise ValueError("source='pfg' needs path (the Persuasion-for-Good FullData folder)")
        if self.source in ("mqdialog", "examples") and (not self.train_path or not self.test_path):
            raise ValueError(f"source={self.source!r} needs train_path and test_path")
        if self.source == "builtin" and (self.path or self.train_path or self.test_path):
            raise ValueError("source='builtin' reads no file: drop path / train_path / test_path "
                             "(or set source to pfg, mqdialog or examples)")
        for name, ts in self.test_sets.items():
            if ts.split == "dev" and self.source != "pfg":
                raise ValueError(f"test_sets.{name}: split 'dev' exists for source 'pfg' only "
                                 f"(source {self.source!r} has train and test)")
        return self


class QuestionerInputConfig(BaseConfig):
    """Prompt budgets (:class:`~personakit.models.questioner.QuestionerCollator` options)."""

    max_prompt_tokens: int = Field(192, ge=1, description="Prompt tokens (its end is kept).")
    max_response_tokens: int = Field(48, ge=1, description="Target tokens.")
    max_history_turns: Optional[int] = Field(None, ge=1, description="History turns in the prompt (None: all).")
    include_persona: bool = Field(False, description="Put example.persona (the questioner's record) in the prompt.")


class QuestionerSystemSpec(BaseConfig):
    """One system of the comparison.

    Example:
        >>> QuestionerSystemSpec(kind="dual-tower", name="rank 4", settings={"rank": 4}).label
        'rank 4'
    """

    kind: str = Field(..., description="dual-tower, lora or persona-prompt.")
    name: Optional[str] = Field(None, description="Row label (default from the kind).")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="DualTowerConfig fields (rank, num_views, contrastive_weight, use_clusters, queue_size, "
                    "lora...); checked when the config loads.")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        key = value.strip().lower().replace("_", "-")
        if key not in QUESTIONER_SYSTEM_KINDS:
            raise ValueError(f"unknown kind {value!r}; use one of {', '.join(QUESTIONER_SYSTEM_KINDS)}")
        return key

    @model_validator(mode="after")
    def _check(self) -> "QuestionerSystemSpec":
        if self.kind == "persona-prompt" and self.settings:
            raise ValueError("persona-prompt takes no settings")
        if self.settings:
            from personakit.models.questioner.config import DualTowerConfig

            DualTowerConfig.check_settings(self.settings, where=f"{self.label}: settings",
                                           reserved=("use_specific", "questioners"))
        return self

    @property
    def label(self) -> str:
        return self.name or _LABELS[self.kind]


class QuestionerEvalConfig(BaseConfig):
    """Evaluation options."""

    metrics: list[str] = Field(default_factory=lambda: ["rouge", "bleu", "reply_stats"], min_length=1,
                               description="evaluate_texts metric names.")
    diversity_inputs: int = Field(16, ge=0, description="Test inputs of the diversity measure (0: off).")
    diversity_questioners: int = Field(4, ge=2, description="Questioners per input in the diversity measure.")
    prompt_batch_size: int = Field(8, ge=1, description="Prompts per batch of the persona-in-prompt baseline.")
    baseline: Optional[str] = Field(
        None, description="Label of the system the others are compared with (paired t-test, bootstrap CI); "
                          "None: the first lora system, else no comparison.")
    compare: list[str] = Field(default_factory=lambda: ["rougeL"],
                               description="Metric keys compared per example against the baseline.")
    significance_level: float = Field(0.05, gt=0, lt=1, description="Level of the paired tests.")


def _default_systems() -> list[QuestionerSystemSpec]:
    return [QuestionerSystemSpec(kind="lora"), QuestionerSystemSpec(kind="dual-tower"),
            QuestionerSystemSpec(kind="persona-prompt")]


class QuestionerRecipeConfig(RecipeConfig):
    """The whole recipe: ``personakit run questioner --config tiny|default|FILE``.

    The shipped configs are ``personakit/recipes/configs/questioner/{tiny,default}.yaml``
    (``tiny``: the built-in corpus; ``default``: PFG-Questioner under ``${PERSONAKIT_DATA}``).
    ``seed`` also picks the questioners of the diversity measure.
    """

    recipe: ClassVar[str] = "questioner"

    data: QuestionerDataConfig = Field(default_factory=lambda: QuestionerDataConfig(source="builtin"),
                                       description="Data source and extra test sets.")
    backbone: str = Field("smollm2", description="Causal LM of every system (embedded name or folder).")
    dtype: str = Field(
        "auto", description="Dtype of the frozen backbone weights (LoRA adapters and the dual tower's specific "
                            "encoders stay fp32; persona-in-prompt runs the whole model in it): 'auto': bf16 on a CPU "
                            "with AMX or AVX512-BF16 and on a GPU with bf16, fp32 elsewhere "
                            "(personakit.backbones.resolve_dtype).")
    clusterer: QuestionClustererConfig = Field(default_factory=QuestionClustererConfig,
                                               description="Question clustering.")
    systems: list[QuestionerSystemSpec] = Field(default_factory=_default_systems, min_length=1,
                                                description="Systems to compare.")
    inputs: QuestionerInputConfig = Field(default_factory=QuestionerInputConfig, description="Prompt budgets.")
    training: QuestionerTrainingConfig = Field(
        default_factory=lambda: QuestionerTrainingConfig(epochs=2, batch_size=8, learning_rate=2e-4,
                                                         max_new_tokens=32, eval_metrics=["loss"]),
        description="Trainer settings shared by every trained system (its progress bar shows unless "
                    "progress: false or --no-progress).")
    eval: QuestionerEvalConfig = Field(default_factory=QuestionerEvalConfig, description="Evaluation.")
    save_checkpoints: bool = Field(False, description="Checkpoint each system's training under "
                                                      "output_dir/models/<system> (resumable).")
    save_models: bool = Field(False, description="save_pretrained each trained model to "
                                                 "output_dir/models/<system>/final (DualTowerResponder.from_pretrained "
                                                 "loads it).")

    @model_validator(mode="after")
    def _unique(self) -> "QuestionerRecipeConfig":
        labels = [s.label for s in self.systems]
        if len(set(labels)) != len(labels):
            raise ValueError(f"systems: labels must be unique, got {labels}")
        if self.eval.baseline is not None and self.eval.baseline not in labels:
            raise ValueError(f"eval.baseline {self.eval.baseline!r} is not a system label; the systems are {labels}")
        return self
