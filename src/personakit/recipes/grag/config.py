"""Config classes of the GRAG recipe (``personakit run grag``); see :mod:`personakit.recipes.grag`."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from personakit.augment.templates import DEFAULT_GENERIC_MODEL, DEFAULT_MAX_NEW_TOKENS, AugmentTemplate
from personakit.backbones.peft import LoraSettings
from personakit.config import BaseConfig
from personakit.recipes.base import PathField, RecipeConfig
from personakit.training.grag import GRAGTrainingConfig

__all__ = [
    "GRAG_RECIPE_KINDS",
    "GRAG_TEXT_METRICS",
    "MODEL_ROW_METRICS",
    "GRAGDataConfig",
    "GRAGTestSetConfig",
    "GRAGAugmentConfig",
    "GRAGInputConfig",
    "GRAGModelSpec",
    "GRAGICLConfig",
    "GRAGEvalConfig",
    "GRAGRecipeConfig",
]

GRAG_RECIPE_KINDS = ("presft-hist", "presft-tst", "pregrag", "postgrag")
"""Model kinds the recipe trains (:func:`~personakit.models.grag.build_grag_model` names)."""

GRAG_TEXT_METRICS = ("char_f1", "rouge", "bleu", "meteor")
"""The text-overlap metrics of SPEC §8 (``rouge`` gives ``rouge1``, ``rouge2``, ``rougeL``)."""

MODEL_ROW_METRICS = ("bpc", "persona_use")
"""Recipe metrics computed from each trained model's likelihood rather than from its replies."""

LABELS = {"presft-hist": "PreSFT(Hist)", "presft-tst": "PreSFT(TST)", "pregrag": "PreGRAG", "postgrag": "PostGRAG"}
_KIND_ALIASES = {"hist": "presft-hist", "presft(hist)": "presft-hist", "tst": "presft-tst",
                 "presft(tst)": "presft-tst"}
_METRIC_OF = {"char_f1": "char_f1", "rouge1": "rouge", "rouge2": "rouge", "rougeL": "rouge", "meteor": "meteor"}
PER_EXAMPLE_KEYS = tuple(_METRIC_OF)
"""Per-example scores usable for the paired comparison (``eval.significance_metric``)."""


# --------------------------------------------------------------------------- configs
class GRAGTestSetConfig(BaseConfig):
    """One extra named test set given as a mapping (``data.test_sets: {name: {path: ..., ...}}``).

    Example:
        >>> GRAGTestSetConfig(path="convai2_test.txt", source="dataset", format="convai2", agent="agent").format
        'convai2'
    """

    path: str = PathField(..., description="The test file: JSON lines of ResponseExamples, or a dialogue dataset.")
    source: Optional[Literal["examples", "dataset"]] = Field(
        None, description="'examples' (JSON-lines ResponseExamples) or 'dataset' (read_dataset); None: as data.source "
                          "('builtin' counts as 'examples').")
    format: Optional[str] = Field(None, description="read_dataset format (dataset; None: data.format, else from the file).")
    agent: Optional[str] = Field(None, description="Responding speaker (dataset; None: data.agent).")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class GRAGDataConfig(BaseConfig):
    """Where the train and test examples come from.

    ``source`` ``"builtin"``: the built-in corpus (train / test splits); ``"examples"``:
    JSON-lines files of :class:`~personakit.types.ResponseExample` (``personakit augment``
    output; a filled ``generic_response`` is kept); ``"dataset"``: dialogue files read with
    :func:`~personakit.data.read_dataset` and turned into examples for ``agent``.

    Example:
        >>> GRAGDataConfig(source="examples", train_path="train.jsonl", test_path="test.jsonl").source
        'examples'
        >>> GRAGDataConfig(test_sets={"convai2": "/data/convai2_test.jsonl"}).test_sets["convai2"].path
        '/data/convai2_test.jsonl'
    """

    source: Literal["builtin", "examples", "dataset"] = Field(
        "builtin", description="'builtin' (the built-in corpus), 'examples' (JSON-lines ResponseExamples, e.g. "
                               "personakit augment output; a filled generic_response is kept) or 'dataset' "
                               "(dialogue files read with read_dataset, one example per turn of `agent`).")
    train_path: Optional[str] = PathField(None, description="Training file (source 'examples' or 'dataset').")
    test_path: Optional[str] = PathField(None, description="Test file (source 'examples' or 'dataset').")
    test_sets: dict[str, GRAGTestSetConfig] = Field(
        default_factory=dict,
        description="Extra named test sets, scored and reported beside the main one (named 'test'): "
                    "{name: path} or {name: {path, source, format, agent}}. A path is read like test_path "
                    "(as JSON-lines ResponseExamples when source is 'builtin'); max_test and max_history_turns "
                    "apply, and examples without a generic response are augmented like the main test set. "
                    "Relative paths resolve against the config file's folder.")
    format: Optional[str] = Field(
        None, description="Reader of source 'dataset' (a key of personakit.data.DATASET_READERS, e.g. 'spc_jsonl'; "
                          "None: from the file).")
    agent: Optional[str] = Field(
        None, description="The responding speaker of source 'dataset' (e.g. 'User 2' for SPC; see "
                          "personakit.data.DEFAULT_AGENTS).")
    max_history_turns: Optional[int] = Field(
        None, ge=1, description="Keep only the last N turns of each example's history (None: all).")
    max_train: Optional[int] = Field(None, ge=1, description="Seeded random subsample of this many training examples.")
    max_test: Optional[int] = Field(
        None, ge=1, description="Seeded random subsample of this many test examples (of each test set).")

    @field_validator("test_sets")
    @classmethod
    def _names(cls, value: dict[str, GRAGTestSetConfig]) -> dict[str, GRAGTestSetConfig]:
        for name in value:
            if not name or not name.strip() or name == "test":
                raise ValueError(f"test set name {name!r}: give each extra test set a non-empty name other than "
                                 "'test' (the main test set)")
        return value

    @model_validator(mode="after")
    def _check(self) -> "GRAGDataConfig":
        if self.source != "builtin" and (not self.train_path or not self.test_path):
            raise ValueError(f"source={self.source!r} needs train_path and test_path")
        if self.source == "dataset" and not self.agent:
            raise ValueError("source='dataset' needs agent (the responding speaker, e.g. 'User 2' for SPC)")
        for name, ts in self.test_sets.items():
            if (ts.source or self.source) == "dataset" and not (ts.agent or self.agent):
                raise ValueError(f"test_sets.{name}: a dataset file needs agent (here or data.agent)")
        return self


class GRAGAugmentConfig(BaseConfig):
    """Generic-response augmentation (GRAG §3.1) and the generic LLM (also the ICL baseline's LLM).

    The defaults of ``model``, ``template`` and ``max_new_tokens`` are those of ``personakit
    augment`` (:data:`~personakit.augment.DEFAULT_GENERIC_MODEL`,
    :func:`~personakit.augment.default_template`, :data:`~personakit.augment.DEFAULT_MAX_NEW_TOKENS`).

    Example:
        >>> GRAGAugmentConfig(model="smollm2", max_new_tokens=24).template is None
        True
    """

    enabled: bool = Field(
        True, description="Write R_G for every example without a generic_response. When false every example must "
                          "already carry one (TST, PreGRAG and PostGRAG read it).")
    overwrite: bool = Field(False, description="Also replace generic responses the data already has.")
    model: str = Field(
        DEFAULT_GENERIC_MODEL, description="The generic LLM behind HFGenerator: an embedded name, a local folder or a "
                                           "hub id (ignored when run_grag_recipe is given a generator).")
    template: Union[str, AugmentTemplate, None] = Field(
        None, description="Prompt template: a shipped name ('builtin-chat', 'spc-chat', ...: the history as chat "
                          "turns, for small instruct models; 'builtin', 'spc', 'convai2', 'empathetic', 'pfg': the "
                          "paper's layout, for large LLMs), a YAML path or an inline template. None: "
                          "personakit.augment.default_template of the data's dataset and `model` (the chat layout "
                          "for an embedded model, e.g. 'builtin-chat' on the built-in corpus), as personakit augment.")
    cache: bool = Field(True, description="Keep a JSON-lines response cache, shared by augmentation and the ICL "
                                          "baseline: a rerun generates nothing it already has.")
    cache_path: Optional[str] = PathField(
        None, description="The response cache file (None: {output_dir}/llm_cache.jsonl).")
    max_new_tokens: int = Field(
        DEFAULT_MAX_NEW_TOKENS, ge=1, description="Maximum generic-response length in tokens (greedy decoding; "
                                                  "default as personakit augment, 32).")
    stop: list[str] = Field(default_factory=lambda: ["\n"],
                            description="Stop sequences of the generic LLM (the reply is cut before the first).")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch (and per durable cache write).")
    max_history_turns: Optional[int] = Field(
        None, ge=1, description="Show the generic LLM only the last N history turns (None: all).")
    dtype: Optional[str] = Field(
        "auto", description="Weights dtype of the generic LLM: 'auto': bf16 where the hardware has a fast bf16 path "
                            "(a CPU with AMX or AVX512-BF16, a GPU with bf16), fp32 elsewhere; None: float32.")
    empty_retries: int = Field(
        2, ge=0, description="A reply that cleans up to nothing (a bare role label, an echo) is asked again up to "
                             "this many times, sampling; counted in sizes['empty_generic'] and sizes['retried'].")
    empty_fallback: Optional[str] = Field(
        "Okay.", description="R_G of a reply still empty after the retries (counted in sizes['fallback_generic']); "
                             "None keeps it empty, and the models that read R_G then refuse the example.")

    @model_validator(mode="before")
    @classmethod
    def _old_cache(cls, data: Any) -> Any:
        """``cache: auto`` / ``cache: null`` / ``cache: FILE``, the old form, still read."""
        old_form = isinstance(data, dict) and (
            (isinstance(data.get("cache"), str) and data["cache"].strip().lower() not in _BOOL_WORDS)
            or ("cache" in data and data["cache"] is None))
        if old_form:
            data = dict(data)
            old = data.pop("cache")
            data["cache"] = old is not None
            if old not in (None, "auto"):
                data.setdefault("cache_path", old)
        return data


_BOOL_WORDS = {"yes", "no", "y", "n", "true", "false", "on", "off", "1", "0"}  # not file names: left to the bool check


class GRAGInputConfig(BaseConfig):
    """Token budgets of the model inputs (:class:`~personakit.models.grag.GRAGCollator` options)."""

    max_persona_tokens: int = Field(128, ge=1, description="Tokens of the persona $P$.")
    max_history_tokens: int = Field(256, ge=1, description="Tokens of the history $H$ (its end is kept).")
    max_generic_tokens: int = Field(64, ge=1, description="Tokens of the generic response $R_G$.")
    max_response_tokens: int = Field(64, ge=1, description="Tokens of the target response $R_P$.")
    max_history_turns: Optional[int] = Field(None, ge=1, description="History turns in the input (None: all).")


class GRAGModelSpec(BaseConfig):
    """One model to train: its kind, its row label and its GRAG settings.

    Example:
        >>> GRAGModelSpec(kind="postgrag", alpha=0.5, beta=0.05).label
        'PostGRAG'
        >>> GRAGModelSpec(kind="PreSFT(TST)").kind
        'presft-tst'
    """

    kind: str = Field(..., description="'presft-hist', 'presft-tst', 'pregrag' or 'postgrag' (aliases 'hist', "
                                       "'tst', 'PreSFT(Hist)'...).")
    name: Optional[str] = Field(None, description="Row label in the results (default from the kind: PreSFT(Hist), "
                                                  "PreSFT(TST), PreGRAG, PostGRAG); labels must be unique.")
    alpha: Optional[float] = Field(None, ge=0.0, description="Weight of the style-removal loss L_G (PostGRAG only; "
                                                             "None: the model default, 0.5).")
    beta: Optional[float] = Field(None, ge=0.0, description="Weight of L_CJEPA (PreGRAG, PostGRAG; None: the model "
                                                            "default, 0.05).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Other GRAGConfig fields: extractor_heads, extractor_dropout, lora "
                                          "(LoraSettings as a mapping), encoder_passes, style_init, style_layers, "
                                          "persona_in_history (PostGRAG). Checked at load.")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        key = value.strip().lower().replace("_", "-")
        key = _KIND_ALIASES.get(key, key)
        if key not in GRAG_RECIPE_KINDS:
            raise ValueError(f"unknown kind {value!r}; use one of {', '.join(GRAG_RECIPE_KINDS)}")
        return key

    @model_validator(mode="after")
    def _check(self) -> "GRAGModelSpec":
        if self.kind.startswith("presft") and (self.alpha or self.beta):
            raise ValueError(f"{self.kind}: PreSFT has no L_G or L_CJEPA; leave alpha and beta unset (or 0)")
        if self.kind == "pregrag" and self.alpha:
            raise ValueError("pregrag: PreGRAG has no style removal; leave alpha unset (or 0)")
        from personakit.models.grag.config import GRAGConfig

        method, _, mode = self.kind.partition("-")
        GRAGConfig.check_settings(self.settings, where=f"{self.label}: settings",
                                  reserved=("alpha", "beta", "mode", "method"),
                                  fixed={"method": method, "mode": mode or "hist"})
        return self

    @property
    def label(self) -> str:
        """The row label."""
        return self.name or LABELS[self.kind]

    def model_settings(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~personakit.models.grag.build_grag_model` (besides kind and backbone)."""
        out = dict(self.settings)
        if not self.kind.startswith("presft"):
            if self.beta is not None:
                out["beta"] = self.beta
            if self.kind == "postgrag" and self.alpha is not None:
                out["alpha"] = self.alpha
        return out


def _default_models() -> list[GRAGModelSpec]:
    return [GRAGModelSpec(kind="presft-hist"), GRAGModelSpec(kind="presft-tst"),
            GRAGModelSpec(kind="pregrag", beta=0.05), GRAGModelSpec(kind="postgrag", alpha=0.5, beta=0.05)]


class GRAGICLConfig(BaseConfig):
    """The prompted ICL(Hist) baseline (GRAG §4.2.1), answered by the generic LLM of ``augment``."""

    enabled: bool = Field(False, description="Add the row 'ICL(Hist) {n_shot}-shot'.")
    n_shot: int = Field(2, ge=0, description="Demonstrations per prompt, drawn (seeded) from the training examples.")
    max_new_tokens: int = Field(40, ge=1, description="Maximum reply length in tokens (greedy, stopped at a newline).")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    max_history_turns: Optional[int] = Field(6, ge=1, description="Last history turns shown in the prompt.")


class GRAGEvalConfig(BaseConfig):
    """Evaluation on every test set.

    Example:
        >>> GRAGEvalConfig(metrics=["rouge", "bpc"]).significance_metric
        'rougeL'
    """

    _renamed_: ClassVar[dict[str, str]] = {"alpha": "significance_level"}

    metrics: list[str] = Field(
        default_factory=lambda: [*GRAG_TEXT_METRICS, "bertscore", "bpc", "persona_use", "reply_stats"], min_length=1,
        description="evaluate_texts names (char_f1, rouge, bleu, meteor, bertscore, reply_stats, chrf...) plus 'bpc' "
                    "(bits per character of the references under each trained model) and 'persona_use' "
                    "(bpc_shuffled, the BPC with every test example given another dialogue's persona, and "
                    "persona_use = bpc_shuffled - bpc: above 0 when the model uses the persona).")
    bertscore_model: str = Field("minilm", description="Encoder of BERTScore (embedded 'minilm' or 'mpnet', or a "
                                                       "local folder).")
    significance_metric: Optional[str] = Field(
        "rougeL", description="Per-example score compared against the baseline (paired t-test and bootstrap "
                              "interval): char_f1, rouge1, rouge2, rougeL or meteor; None: no comparison.")
    baseline: Optional[str] = Field(None, description="Row every other row is compared with (None: the first model, "
                                                      "PreSFT(Hist) by default).")
    significance_level: float = Field(
        0.05, gt=0.0, lt=1.0, description="Significance level of the two-sided tests (a '*' marks p below it); "
                                          "'alpha', its old name, is still read (alpha now only means a loss weight).")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from personakit.eval import METRICS

        if len(set(value)) != len(value):
            raise ValueError(f"a metric is listed twice in {value}")
        for name in value:
            if name not in MODEL_ROW_METRICS and name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; use {list(MODEL_ROW_METRICS)} or one of {METRICS.names()}")
        return value

    @field_validator("significance_metric")
    @classmethod
    def _per_example(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in PER_EXAMPLE_KEYS:
            raise ValueError(f"significance_metric must be one of {sorted(PER_EXAMPLE_KEYS)} or None, got {value!r}")
        return value


def _default_training() -> GRAGTrainingConfig:
    return GRAGTrainingConfig(epochs=3, batch_size=8, learning_rate=1e-4, progress=False)


class GRAGRecipeConfig(RecipeConfig):
    """The whole GRAG recipe (``personakit run grag --config tiny|default|FILE``).

    ``training`` applies to every model; its ``output_dir``, ``eval_metrics`` and evaluation
    schedule are set by the recipe (checkpoints go to ``{output_dir}/models/{label}`` when
    ``save_checkpoints`` is on; evaluation follows ``eval``).  Its generation settings
    (``max_new_tokens``, ``num_beams``, ``generation_options``, ``eval_batch_size``) are
    used for the test responses.  ``seed`` seeds the subsampling, the newly initialised
    weights of each model and the ICL shots.

    Example:
        >>> cfg = GRAGRecipeConfig(output_dir="runs/grag")
        >>> [m.label for m in cfg.models]
        ['PreSFT(Hist)', 'PreSFT(TST)', 'PreGRAG', 'PostGRAG']
    """

    recipe: ClassVar[str] = "grag"

    data: GRAGDataConfig = Field(default_factory=GRAGDataConfig, description="Train and test examples.")
    augment: GRAGAugmentConfig = Field(default_factory=GRAGAugmentConfig, description="Generic-response augmentation.")
    inputs: GRAGInputConfig = Field(default_factory=GRAGInputConfig, description="Token budgets of the inputs.")
    models: list[GRAGModelSpec] = Field(default_factory=_default_models, min_length=1, description="Models to train.")
    backbone: str = Field(
        "smollm2", description="Backbone of every model: 'smollm2' (the embedded SmolLM2-135M-Instruct, fluent from "
                              "step 0), 'minilm' (BERT2BERT warm start from the embedded MiniLM: random "
                              "cross-attention, not fluent within a CPU budget), a local folder or a hub id.")
    lora: Union[Literal["auto"], LoraSettings, None] = Field(
        "auto", description="LoRA adapters of every model (a model spec's settings.lora wins): 'auto': LoraSettings "
                            "defaults (r 16, lora_alpha 32) on a decoder-only backbone, full fine-tuning on an "
                            "encoder-decoder one; None: full fine-tuning.")
    dtype: str = Field(
        "auto", description="Dtype of the frozen backbone weights when LoRA is used (adapters and style extractors "
                            "stay fp32): 'auto': bf16 on a CPU with AMX or AVX512-BF16 and on a GPU with bf16, fp32 "
                            "elsewhere. Full fine-tuning always trains in fp32.")
    training: GRAGTrainingConfig = Field(default_factory=_default_training, description="Trainer settings.")
    icl: GRAGICLConfig = Field(default_factory=GRAGICLConfig, description="The ICL(Hist) baseline row.")
    eval: GRAGEvalConfig = Field(default_factory=GRAGEvalConfig, description="Metrics and significance test.")
    save_checkpoints: bool = Field(
        False, description="Write trainer checkpoints under {output_dir}/models/{label}; a rerun resumes them.")
    save_models: bool = Field(
        False, description="Save each trained model with save_pretrained under {output_dir}/models/{label}/final.")

    @model_validator(mode="after")
    def _check(self) -> "GRAGRecipeConfig":
        labels = [m.label for m in self.models]
        if self.icl.enabled:
            labels.append(icl_label(self.icl))
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"models: repeated row label(s) {dupes}; give each model a distinct `name`")
        if self.eval.baseline is not None and self.eval.baseline not in labels:
            raise ValueError(f"eval.baseline {self.eval.baseline!r} is not a row; rows: {labels}")
        key = self.eval.significance_metric
        if key is not None and _METRIC_OF[key] not in self.eval.metrics:
            raise ValueError(f"eval.significance_metric {key!r} needs the metric {_METRIC_OF[key]!r} in eval.metrics "
                             f"{self.eval.metrics}")
        return self


def icl_label(icl: GRAGICLConfig) -> str:
    """The row label of the ICL baseline."""
    return f"ICL(Hist) {icl.n_shot}-shot"
