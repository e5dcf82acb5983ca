r"""End-to-end GRAG recipe: augment, train PreSFT(Hist), PreSFT(TST), PreGRAG and PostGRAG, evaluate, compare.

Liu et al., "Generic-Response Augmented Generation for persona-consistent dialogue"
(GRAG, 2026).  :func:`run_grag_recipe` runs the paper's main comparison (its Table 3)
on one dataset:

1. **Data.** Train and test :class:`~personakit.types.ResponseExample` lists: the
   built-in corpus, JSON-lines example files (as written by ``personakit augment`` or
   :func:`~personakit.augment.save_examples`), or a dialogue dataset read with
   :func:`~personakit.data.read_dataset`; optionally a seeded subsample of each.
2. **Augmentation** (§3.1). Every example without a generic response $R_G$ gets one
   from a generic LLM that never sees the persona
   (:class:`~personakit.augment.GenericResponseAugmenter`, batched, behind a persistent
   response cache: a rerun generates nothing it already has).
3. **Training** (§4.3). Each model of ``models`` (default: PreSFT(Hist) on $[P; H]$,
   PreSFT(TST) on $[P; R_G]$, PreGRAG on $[P; H; R_G]$ with
   $L = L_P + \beta L_{CJEPA}$, PostGRAG with $L = L_P + \alpha L_G + \beta L_{CJEPA}$)
   is built on a fresh copy of the same backbone (the embedded SmolLM2-135M-Instruct
   with LoRA adapters by default, its frozen weights in bf16 where the hardware has a
   fast bf16 path; the decoder-only GRAG path of the paper's §4.3.2, prompts in the
   model's chat format) and trained with
   :class:`~personakit.training.GRAGTrainer` (AdamW, learning rate decaying linearly to
   50%).
4. **Baseline** (optional). ICL(Hist): the generic LLM prompted with the persona, the
   history and ``n_shot`` training demonstrations
   (:class:`~personakit.models.icl.ICLResponder`).
5. **Evaluation** (§4.4) on the test examples: the text metrics of SPEC §8
   (char-F1, ROUGE-1/2/L, BLEU, METEOR), BERTScore P/R/F1 with a local encoder, bits
   per character of the references under each trained model (lower is better; not
   defined for the prompted baseline), **persona use** (the BPC with every test example
   given another dialogue's persona minus the BPC with its own: how much the model uses
   the persona), the share of distinct replies and of replies that run past one turn
   (:class:`~personakit.eval.ReplyStats`: a collapsed system shows at a glance), and a
   two-sided paired t-test of every system's
   per-example score (ROUGE-L by default) against the PreSFT(Hist) baseline.
   :meth:`GRAGRecipeResults.save` writes ``results.md``, ``results.json`` and
   ``predictions.jsonl`` atomically.

Departures from the paper, all for a CPU budget and all configurable: SmolLM2-135M-Instruct
+ LoRA instead of BART-base (MiniLM BERT2BERT, BART and T5 folders stay selectable with
``backbone``), a handful of epochs instead of 20,
SmolLM2-135M-Instruct instead of Llama-3.1-8B as the generic LLM, greedy decoding.

Example:
    >>> cfg = GRAGRecipeConfig(models=[{"kind": "presft-hist"}, {"kind": "postgrag", "alpha": 0.5, "beta": 0.05}])
    >>> [m.label for m in cfg.models]
    ['PreSFT(Hist)', 'PostGRAG']
    >>> GRAGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
    >>> results = run_grag_recipe(GRAGRecipeConfig.from_yaml("examples/configs/grag_tiny.yaml"))  # doctest: +SKIP
    >>> print(results.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional, Sequence, Union

from pydantic import Field, field_validator, model_validator

from personakit.recipes._common import StageLog, jsonable
from personakit.augment.templates import AugmentTemplate
from personakit.backbones.peft import LoraSettings
from personakit.config import BaseConfig, atomic_write_text
from personakit.training.grag import GRAGTrainingConfig

__all__ = [
    "GRAG_RECIPE_KINDS",
    "GRAG_TEXT_METRICS",
    "GRAGDataConfig",
    "GRAGAugmentConfig",
    "GRAGInputConfig",
    "GRAGModelSpec",
    "GRAGICLConfig",
    "GRAGEvalConfig",
    "GRAGRecipeConfig",
    "GRAGRecipeResults",
    "MODEL_ROW_METRICS",
    "build_recipe_model",
    "load_grag_splits",
    "run_grag_recipe",
]

GRAG_RECIPE_KINDS = ("presft-hist", "presft-tst", "pregrag", "postgrag")
"""Model kinds the recipe trains (:func:`~personakit.models.grag.build_grag_model` names)."""

GRAG_TEXT_METRICS = ("char_f1", "rouge", "bleu", "meteor")
"""The text-overlap metrics of SPEC §8 (``rouge`` gives ``rouge1``, ``rouge2``, ``rougeL``)."""

MODEL_ROW_METRICS = ("bpc", "persona_use")
"""Recipe metrics computed from each trained model's likelihood rather than from its replies."""

_LABELS = {"presft-hist": "PreSFT(Hist)", "presft-tst": "PreSFT(TST)", "pregrag": "PreGRAG", "postgrag": "PostGRAG"}
_KIND_ALIASES = {"hist": "presft-hist", "presft(hist)": "presft-hist", "tst": "presft-tst",
                 "presft(tst)": "presft-tst"}
# per-example metrics usable for the paired t-test: key -> metric family of evaluate_texts
_PER_EXAMPLE = {"char_f1": "char_f1", "rouge1": "rouge", "rouge2": "rouge", "rougeL": "rouge", "meteor": "meteor"}

BackboneFactory = Callable[[], tuple[Any, Any]]


# --------------------------------------------------------------------------- configs
class GRAGDataConfig(BaseConfig):
    """Where the train and test examples come from.

    Example:
        >>> GRAGDataConfig(source="examples", train_path="train.jsonl", test_path="test.jsonl").source
        'examples'
    """

    source: Literal["builtin", "examples", "dataset"] = Field(
        "builtin", description="'builtin', 'examples' (JSON-lines ResponseExamples) or 'dataset' (read_dataset).")
    """``"builtin"``: the built-in corpus (train / test splits); ``"examples"``: JSON-lines files of
    :class:`~personakit.types.ResponseExample` (``personakit augment`` output; a filled
    ``generic_response`` is kept); ``"dataset"``: dialogue files read with
    :func:`~personakit.data.read_dataset` and turned into examples for ``agent``."""
    train_path: Optional[str] = Field(None, description="Training file (examples / dataset).")
    """Training file (``source`` ``"examples"`` or ``"dataset"``)."""
    test_path: Optional[str] = Field(None, description="Test file (examples / dataset).")
    """Test file (``source`` ``"examples"`` or ``"dataset"``)."""
    format: Optional[str] = Field(None, description="read_dataset format (dataset; None: from the file).")
    """Reader of ``source="dataset"`` (a key of :data:`~personakit.data.DATASET_READERS`, e.g. ``"spc_jsonl"``)."""
    agent: Optional[str] = Field(None, description="Responding speaker (dataset; e.g. 'User 2' for SPC).")
    """The responding speaker of ``source="dataset"`` (see :data:`~personakit.data.DEFAULT_AGENTS`)."""
    max_history_turns: Optional[int] = Field(None, ge=1, description="Keep the last N history turns per example.")
    """Keep only the last this many turns of each example's history (``None``: all)."""
    max_train: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many training examples.")
    """Keep a seeded random subsample of this many training examples."""
    max_test: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many test examples.")
    """Keep a seeded random subsample of this many test examples."""

    @model_validator(mode="after")
    def _check(self) -> "GRAGDataConfig":
        if self.source != "builtin" and (not self.train_path or not self.test_path):
            raise ValueError(f"source={self.source!r} needs train_path and test_path")
        if self.source == "dataset" and not self.agent:
            raise ValueError("source='dataset' needs agent (the responding speaker, e.g. 'User 2' for SPC)")
        return self


class GRAGAugmentConfig(BaseConfig):
    """Generic-response augmentation (GRAG §3.1) and the generic LLM (also the ICL baseline's LLM).

    Example:
        >>> GRAGAugmentConfig(model="smollm2", max_new_tokens=24).template
        'builtin'
    """

    enabled: bool = Field(True, description="Augment examples that have no generic response.")
    """Write $R_G$ for every example whose ``generic_response`` is missing.  When ``False`` every
    example must already carry one (TST, PreGRAG and PostGRAG read it)."""
    overwrite: bool = Field(False, description="Regenerate generic responses that the data already has.")
    """Also replace generic responses the data already has."""
    model: str = Field("smollm2", description="Generic LLM: embedded name, local folder or hub id.")
    """The causal LM behind :class:`~personakit.llm.HFGenerator` (ignored when ``run_grag_recipe`` is
    given a ``generator``)."""
    template: Union[str, AugmentTemplate] = Field(
        "builtin-chat", description="Prompt template: a shipped name, a YAML path or an inline template.")
    """A shipped template name (``"builtin-chat"``, ``"spc-chat"``, ... for small instruct models such as
    the embedded SmolLM2: the history as chat turns; ``"builtin"``, ``"spc"``, ``"convai2"``,
    ``"empathetic"``, ``"pfg"``: the paper's layout, for large generic LLMs; see
    :func:`~personakit.augment.recommended_template`), the path of a YAML template, or the template
    itself (:class:`~personakit.augment.AugmentTemplate` fields)."""
    cache: Optional[str] = Field("auto", description="Response cache file ('auto': output_dir/llm_cache.jsonl).")
    """JSON-lines response cache shared by augmentation and the ICL baseline; ``"auto"``:
    ``{output_dir}/llm_cache.jsonl``; ``None``: no cache."""
    max_new_tokens: int = Field(32, ge=1, description="Maximum generic-response length in tokens.")
    """Maximum length of a generic response (greedy decoding)."""
    stop: list[str] = Field(default_factory=lambda: ["\n"], description="Stop sequences of the generic LLM.")
    """Stop sequences (the reply is cut before the first one)."""
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    """Prompts per generation batch (and per durable cache write)."""
    max_history_turns: Optional[int] = Field(None, ge=1, description="History turns shown to the generic LLM.")
    """Show the generic LLM only the last this many turns (``None``: all)."""
    dtype: Optional[str] = Field("auto", description="Weights dtype of the generic LLM ('auto': bf16 where fast).")
    """``"auto"``: bf16 where the hardware has a fast bf16 path (a CPU with AMX or AVX512-BF16, a GPU
    with bf16), fp32 elsewhere (:func:`~personakit.backbones.precision.resolve_dtype`); ``None``: float32."""
    empty_retries: int = Field(2, ge=0, description="Sampled retries of a reply that cleans up to nothing.")
    """A small generic LLM sometimes answers with nothing usable (only a role label, an echo of the
    transcript): such a prompt is asked again up to this many times, sampling (see
    :class:`~personakit.augment.GenericResponseAugmenter`); counted in ``sizes["empty_generic"]``
    (first replies that were empty) and ``sizes["retried"]``."""
    empty_fallback: Optional[str] = Field(
        "Okay.", description="R_G for replies still empty after the retries (None: an error).")
    """An $R_G$ still empty after the retries is replaced by this neutral text (counted in
    ``sizes["fallback_generic"]``). ``None`` keeps them empty, and the models that read $R_G$ then
    refuse the example."""


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

    kind: str = Field(..., description="presft-hist, presft-tst, pregrag or postgrag.")
    """``"presft-hist"``, ``"presft-tst"``, ``"pregrag"`` or ``"postgrag"`` (aliases ``"hist"``, ``"tst"``,
    ``"PreSFT(Hist)"``...)."""
    name: Optional[str] = Field(None, description="Row label (default: PreSFT(Hist), PreSFT(TST), PreGRAG, PostGRAG).")
    """Row label in the results (default from the kind); labels must be unique."""
    alpha: Optional[float] = Field(None, ge=0.0, description="Weight of L_G (PostGRAG; None: model default 0.5).")
    r"""$\alpha$, weight of the style-removal loss $L_G$ (PostGRAG only; ``None``: the model default, 0.5)."""
    beta: Optional[float] = Field(None, ge=0.0, description="Weight of L_CJEPA (PreGRAG/PostGRAG; None: 0.05).")
    r"""$\beta$, weight of $L_{CJEPA}$ (PreGRAG, PostGRAG; ``None``: the model default, 0.05)."""
    settings: dict[str, Any] = Field(default_factory=dict, description="Other GRAGConfig fields (lora, extractor_heads...).")
    """Other :class:`~personakit.models.grag.GRAGConfig` fields: ``extractor_heads``, ``extractor_dropout``,
    ``lora`` (:class:`~personakit.models.grag.LoraSettings` as a dict), ``encoder_passes``."""

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

        GRAGConfig.check_settings(self.settings, where=f"{self.label}: settings",
                                  reserved=("alpha", "beta", "mode", "method"))
        return self

    @property
    def label(self) -> str:
        """The row label."""
        return self.name or _LABELS[self.kind]

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

    enabled: bool = Field(False, description="Add an ICL(Hist) row.")
    """Add the row ``ICL(Hist) {n_shot}-shot``."""
    n_shot: int = Field(2, ge=0, description="Demonstrations per prompt, from the training examples.")
    """Demonstrations per prompt, drawn (seeded) from the training examples."""
    max_new_tokens: int = Field(40, ge=1, description="Maximum reply length in tokens.")
    """Maximum reply length (greedy, stopped at a newline)."""
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    """Prompts per generation batch."""
    max_history_turns: Optional[int] = Field(6, ge=1, description="History turns in the prompt.")
    """Last history turns shown in the prompt."""


class GRAGEvalConfig(BaseConfig):
    """Evaluation on the test examples.

    Example:
        >>> GRAGEvalConfig(metrics=["rouge", "bpc"]).significance_metric
        'rougeL'
    """

    _renamed_: ClassVar[dict[str, str]] = {"alpha": "significance_level"}

    metrics: list[str] = Field(
        default_factory=lambda: [*GRAG_TEXT_METRICS, "bertscore", "bpc", "persona_use", "reply_stats"], min_length=1,
        description="evaluate_texts metric names plus 'bpc' and 'persona_use'.")
    """:func:`~personakit.eval.evaluate_texts` names (``char_f1``, ``rouge``, ``bleu``, ``meteor``, ``bertscore``,
    ``reply_stats``, ``chrf``...) plus ``"bpc"`` (bits per character of the references under each trained
    model) and ``"persona_use"`` (``bpc_shuffled``, the BPC with every test example given another
    dialogue's persona by :func:`~personakit.eval.controls.shuffle_personas`, and ``persona_use`` =
    ``bpc_shuffled - bpc``: above 0 when the model uses the persona)."""
    bertscore_model: str = Field("minilm", description="Encoder of BERTScore (embedded name or folder).")
    """Encoder of BERTScore (embedded ``"minilm"`` or ``"mpnet"``, or a local folder)."""
    significance_metric: Optional[str] = Field(
        "rougeL", description="Per-example metric of the paired t-test (None: no test).")
    """Per-example score compared by the paired t-test: ``char_f1``, ``rouge1``, ``rouge2``, ``rougeL`` or
    ``meteor``; ``None`` skips the test."""
    baseline: Optional[str] = Field(None, description="Row the others are tested against (None: the first model).")
    """Label of the row every other row is tested against (``None``: the first model, PreSFT(Hist) by default)."""
    significance_level: float = Field(0.05, gt=0.0, lt=1.0, description="Significance level (was: alpha).")
    """Significance level of the two-sided tests (a ``*`` marks $p <$ ``significance_level``); ``alpha``,
    its old name, is still read (``alpha`` now only means a loss weight)."""
    digits: int = Field(3, ge=0, description="Decimals in results.md.")
    """Decimals in the markdown table."""

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
        if value is not None and value not in _PER_EXAMPLE:
            raise ValueError(f"significance_metric must be one of {sorted(_PER_EXAMPLE)} or None, got {value!r}")
        return value


def _default_training() -> GRAGTrainingConfig:
    return GRAGTrainingConfig(epochs=3, batch_size=8, learning_rate=1e-4, progress=False)


class GRAGRecipeConfig(BaseConfig):
    """The whole GRAG recipe, loadable from YAML (``GRAGRecipeConfig.from_yaml(path)``).

    ``training`` applies to every model; its ``output_dir``, ``eval_metrics`` and evaluation
    schedule are set by the recipe (checkpoints go to ``{output_dir}/models/{label}`` when
    ``save_checkpoints`` is on; evaluation follows ``eval``).  Its generation settings
    (``max_new_tokens``, ``num_beams``, ``generation_options``, ``eval_batch_size``) are
    used for the test responses.

    Example:
        >>> cfg = GRAGRecipeConfig(output_dir="runs/grag")
        >>> [m.label for m in cfg.models]
        ['PreSFT(Hist)', 'PreSFT(TST)', 'PreGRAG', 'PostGRAG']
    """

    data: GRAGDataConfig = Field(default_factory=GRAGDataConfig, description="Train and test examples.")
    augment: GRAGAugmentConfig = Field(default_factory=GRAGAugmentConfig, description="Generic-response augmentation.")
    inputs: GRAGInputConfig = Field(default_factory=GRAGInputConfig, description="Token budgets of the inputs.")
    models: list[GRAGModelSpec] = Field(default_factory=_default_models, min_length=1, description="Models to train.")
    backbone: str = Field("smollm2", description="Backbone of every model (embedded name, folder or hub id).")
    """Backbone of every model: ``"smollm2"`` (the embedded SmolLM2-135M-Instruct, fluent from step 0),
    ``"minilm"`` (BERT2BERT warm start from the embedded MiniLM: random cross-attention, not fluent
    within a CPU budget), a local folder or a hub id (BART, T5, any causal LM)."""
    lora: Union[Literal["auto"], LoraSettings, None] = Field(
        "auto", description="LoRA of every model ('auto': peft defaults on decoder-only backbones).")
    """LoRA adapters of every model (a model spec's ``settings["lora"]`` wins): ``"auto"`` gives
    :class:`~personakit.models.grag.LoraSettings` defaults (r 16, ``lora_alpha`` 32) on a decoder-only
    backbone and full fine-tuning on an encoder-decoder one (MiniLM BERT2BERT must learn its
    cross-attention); ``None``: full fine-tuning."""
    dtype: str = Field("auto", description="Dtype of the frozen backbone weights ('auto': bf16 where fast).")
    """Dtype of the **frozen** backbone weights when LoRA is used (trainable adapters and style
    extractors stay fp32): ``"auto"`` picks bf16 on a CPU with AMX or AVX512-BF16 and on a GPU with
    bf16 (:func:`~personakit.backbones.precision.resolve_dtype`), fp32 elsewhere.  Full fine-tuning
    always trains in fp32."""
    training: GRAGTrainingConfig = Field(default_factory=_default_training, description="Trainer settings.")
    icl: GRAGICLConfig = Field(default_factory=GRAGICLConfig, description="The ICL(Hist) baseline row.")
    eval: GRAGEvalConfig = Field(default_factory=GRAGEvalConfig, description="Metrics and significance test.")
    output_dir: str = Field("runs/grag", description="Where caches, checkpoints and results go.")
    """Folder of the response cache, the augmented examples, checkpoints and ``results.{md,json}``."""
    seed: int = Field(0, ge=0, description="Seed of subsampling, new weights and shots.")
    """Seeds the subsampling, the newly initialised weights of each model and the ICL shots."""
    save_checkpoints: bool = Field(False, description="Checkpoint each model's training (resumable).")
    """Write trainer checkpoints under ``{output_dir}/models/{label}``; a rerun resumes them."""
    save_models: bool = Field(False, description="save_pretrained each trained model.")
    """Save each trained model with ``save_pretrained`` under ``{output_dir}/models/{label}/final``."""
    device: Optional[str] = Field(None, description="Device of the models (None: GPU when present).")
    """``"cpu"`` forces the CPU; ``None`` lets the trainer pick (a GPU when there is one)."""

    @model_validator(mode="after")
    def _check(self) -> "GRAGRecipeConfig":
        labels = [m.label for m in self.models]
        if self.icl.enabled:
            labels.append(_icl_label(self.icl))
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"models: repeated row label(s) {dupes}; give each model a distinct `name`")
        if self.eval.baseline is not None and self.eval.baseline not in labels:
            raise ValueError(f"eval.baseline {self.eval.baseline!r} is not a row; rows: {labels}")
        return self


def _icl_label(icl: GRAGICLConfig) -> str:
    return f"ICL(Hist) {icl.n_shot}-shot"


# ----------------------------------------------------------------------------- data
def _sample(items: list, n: Optional[int], seed: int) -> list:
    if n is None or len(items) <= n:
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def load_grag_splits(data: GRAGDataConfig, seed: int = 0) -> tuple[list, list]:
    """``(train, test)`` :class:`~personakit.types.ResponseExample` lists per the data config.

    Raises:
        FileNotFoundError: a data file is missing.
        ValueError: a split is empty.
    """
    from personakit.data import dialogues_to_examples

    def from_file(path_text: str, split: str) -> list:
        path = Path(path_text)
        if not path.exists():
            raise FileNotFoundError(f"data.{split}_path {path}: no such file")
        if data.source == "examples":
            from personakit.augment import load_examples

            return load_examples(path)
        from personakit.data import read_dataset

        return dialogues_to_examples(read_dataset(path, data.format), agent=str(data.agent))

    if data.source == "builtin":
        from personakit.data import load_builtin_corpus

        train = dialogues_to_examples(load_builtin_corpus("train"), agent="agent")
        test = dialogues_to_examples(load_builtin_corpus("test"), agent="agent")
    else:
        train, test = from_file(str(data.train_path), "train"), from_file(str(data.test_path), "test")
    if data.max_history_turns is not None:
        n = data.max_history_turns
        train = [ex.model_copy(update={"history": ex.history[-n:]}) for ex in train]
        test = [ex.model_copy(update={"history": ex.history[-n:]}) for ex in test]
    train, test = _sample(train, data.max_train, seed), _sample(test, data.max_test, seed + 1)
    for name, split in (("train", train), ("test", test)):
        if not split:
            raise ValueError(f"data: the {name} split has no examples")
    return train, test


# --------------------------------------------------------------------------- results
@dataclass
class GRAGRecipeResults:
    """What :func:`run_grag_recipe` returns (and :meth:`save` writes).

    Attributes:
        rows: ``{system: {metric: value}}`` in table order (the trained models, then ICL).
            ``bpc`` is ``None`` for the prompted baseline (it has no likelihood here).
        significance: ``{system: {"metric", "baseline", "mean_difference", "t", "p", "significant"}}``
            for every row but the baseline (empty when the test is off).
        predictions: ``{system: [response per test example]}``.
        test_examples: the test examples (augmented: with ``generic_response``).
        training: ``{system: {"steps", "seconds", "final_loss", "history"}}`` per trained model.
        timings: seconds per stage (``augment_s``, ``train_s``, ``icl_s``, ``eval_s``, ``total_s``).
        sizes: counts (``train``, ``test``, ``generated``, ``cached``, ``empty_generic``: first replies
            that cleaned up to nothing, ``retried``, ``fallback_generic``: replaced by the fallback).
        config: the recipe config as a dict.
        output_dir: where :meth:`save` wrote the files (``None``: not saved).
    """

    rows: dict[str, dict[str, Optional[float]]]
    significance: dict[str, dict[str, Any]]
    predictions: dict[str, list[str]]
    test_examples: list
    training: dict[str, dict[str, Any]]
    timings: dict[str, float]
    sizes: dict[str, int]
    config: dict[str, Any]
    output_dir: Optional[Path] = None
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def systems(self) -> list[str]:
        """Row labels in table order."""
        return list(self.rows)

    @property
    def table(self) -> str:
        """The metrics table (markdown); see :meth:`to_markdown` for the whole report."""
        from personakit.eval import format_metrics_table

        digits = int(self.config.get("eval", {}).get("digits", 3))
        return format_metrics_table(self.rows, digits=digits)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (``predictions`` keyed by system, one entry per test example)."""
        return {
            "rows": self.rows, "significance": self.significance, "training": self.training,
            "timings": self.timings, "sizes": self.sizes, "config": self.config, "environment": self.environment,
            "test_ids": [ex.id for ex in self.test_examples],
            "predictions": self.predictions,
        }

    def to_markdown(self) -> str:
        """``results.md``: the metrics table, the significance tests and the run's sizes and timings."""
        lines = ["# GRAG recipe results", "", self.table, ""]
        if any(v.get("bpc", 0) is None for v in self.rows.values()):
            lines += ["`bpc`: bits per character of the references under each trained model (lower is better); "
                      "`–` for the prompted baseline.", ""]
        if any("persona_use" in v for v in self.rows.values()):
            lines += ["`persona_use` = `bpc_shuffled` − `bpc`: the BPC with every test example given another "
                      "dialogue's persona minus the BPC with its own (above 0: the model uses the persona).", ""]
        if any("distinct" in v for v in self.rows.values()):
            lines += ["`distinct`: share of distinct replies (1 = every reply differs); `multi_turn`: share of "
                      "replies that run past one turn; `empty`: share of empty replies.", ""]
        if self.significance:
            first = next(iter(self.significance.values()))
            alpha = self.config.get("eval", {}).get("alpha", 0.05)
            lines += [f"Paired two-sided t-test of per-example `{first['metric']}` against {first['baseline']} "
                      f"(`*`: p < {alpha}):", "", "| system | mean difference | t | p |", "| --- | ---: | ---: | ---: |"]
            for system, s in self.significance.items():
                mark = " *" if s["significant"] else ""
                lines.append(f"| {system} | {s['mean_difference']:+.4f} | {_fmt(s['t'])} | {_fmt(s['p'])}{mark} |")
            lines.append("")
        sizes, t = self.sizes, self.timings
        fallback = self.config.get("augment", {}).get("empty_fallback")
        lines.append(f"{sizes.get('train', 0)} training and {sizes.get('test', 0)} test examples; generic responses: "
                     f"{sizes.get('generated', 0)} generated, {sizes.get('cached', 0)} from the cache, "
                     f"{sizes.get('empty_generic', 0)} empty at first ({sizes.get('retried', 0)} retried, "
                     f"{sizes.get('fallback_generic', 0)} replaced by {fallback!r}); none reached training empty.")
        lines.append("Time: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items() if k.endswith("_s")) + ".")
        return "\n".join(lines) + "\n"

    def save(self, directory: Union[str, os.PathLike[str], None] = None) -> tuple[Path, Path]:
        """Write ``results.json``, ``results.md`` and ``predictions.jsonl`` atomically; returns the first two paths."""
        out = Path(directory) if directory is not None else Path(self.config.get("output_dir", "."))
        json_path = atomic_write_text(out / "results.json",
                                      json.dumps(jsonable(self.to_dict()), indent=2, allow_nan=False) + "\n")
        md_path = atomic_write_text(out / "results.md", self.to_markdown())
        lines = []
        for i, ex in enumerate(self.test_examples):
            lines.append(json.dumps({
                "id": ex.id, "persona": ex.persona.to_text(), "last_user_turn": ex.history[-1].text,
                "generic_response": ex.generic_response, "reference": ex.response,
                "predictions": {s: p[i] for s, p in self.predictions.items()},
            }, ensure_ascii=False))
        atomic_write_text(out / "predictions.jsonl", "".join(line + "\n" for line in lines))
        self.output_dir = out
        return json_path, md_path

    def __str__(self) -> str:
        return self.to_markdown()


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"




# ----------------------------------------------------------------------------- parts


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "model"


def _per_example_scores(key: str, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    from personakit.eval import evaluate_texts

    family = _PER_EXAMPLE[key]
    return [float(evaluate_texts([p], [r], metrics=[family])[key]) for p, r in zip(predictions, references)]


def _backbone_factory(config: GRAGRecipeConfig, backbone: Any) -> BackboneFactory:
    """A function returning a fresh ``(model, tokenizer)`` per call."""
    if callable(backbone) and not hasattr(backbone, "parameters"):
        return backbone  # type: ignore[no-any-return]
    if backbone is None:
        from personakit.models.grag.base import load_backbone

        loaded = load_backbone(config.backbone)
    elif isinstance(backbone, tuple) and len(backbone) == 2:
        loaded = backbone
    else:
        raise TypeError("run_grag_recipe: backbone must be None, a (model, tokenizer) pair or a function returning one")
    model, tokenizer = loaded
    return lambda: (copy.deepcopy(model), tokenizer)


def build_recipe_model(spec: GRAGModelSpec, backbone: Any, tokenizer: Any, lora: Any = "auto", dtype: Any = "auto",
                       device: Optional[str] = None) -> tuple[Any, str]:
    """Build one recipe model: LoRA by the recipe's rule, the frozen weights in the resolved dtype.

    Returns:
        ``(model, dtype name of the frozen weights)``.
    """
    from personakit.backbones.precision import cast_frozen, resolve_dtype
    from personakit.models.grag import build_grag_model
    from personakit.backbones.peft import unwrap_peft

    settings = spec.model_settings()
    if "lora" not in settings:
        base_config = unwrap_peft(backbone).config
        encdec = bool(getattr(base_config, "is_encoder_decoder", False)) or base_config.model_type == "encoder-decoder"
        if lora == "auto":
            lora = None if encdec else LoraSettings()
        if lora is not None:
            settings["lora"] = lora.model_dump() if isinstance(lora, LoraSettings) else lora
    model = build_grag_model(spec.kind, backbone, tokenizer, **settings)
    frozen = resolve_dtype("float32")
    if settings.get("lora") is not None:
        frozen = resolve_dtype(dtype, device)
        if frozen != resolve_dtype("float32"):
            cast_frozen(model, frozen)
    return model, str(frozen).removeprefix("torch.")


def _augment(config: GRAGRecipeConfig, generator: Any, cache: Any, train: list, test: list, log: StageLog,
             progress: bool) -> tuple[list, list, dict[str, int]]:
    from personakit.augment import GenericResponseAugmenter
    from personakit.llm import GenerationSettings

    aug = config.augment
    both = train + test
    todo = [i for i, ex in enumerate(both) if aug.overwrite or ex.generic_response is None]
    stats = {"generated": 0, "cached": 0}
    if todo:
        if not aug.enabled:
            ex = both[todo[0]]
            raise ValueError(f"augment.enabled is false but example {ex.id!r} has no generic_response "
                             "(PreSFT(TST), PreGRAG and PostGRAG need one)")
        augmenter = GenericResponseAugmenter(
            generator, template=aug.template,
            settings=GenerationSettings(max_new_tokens=aug.max_new_tokens, stop=list(aug.stop)),
            cache=cache, batch_size=aug.batch_size, max_history_turns=aug.max_history_turns,
            empty_retries=aug.empty_retries, fallback=aug.empty_fallback)
        log(f"augmenting {len(todo)} examples with {getattr(generator, 'model_id', type(generator).__name__)}")
        done = augmenter.augment([both[i] for i in todo], progress=progress)
        for i, ex in zip(todo, done):
            both[i] = ex
        st = augmenter.last_stats
        if st is not None:
            stats = {"generated": st.generated, "cached": st.cached, "empty_generic": st.first_empty,
                     "retried": st.retried, "fallback_generic": st.fallback}
    empty = [i for i, ex in enumerate(both) if ex.generic_response is not None and not ex.generic_response.strip()]
    stats["empty_generic"] = stats.get("empty_generic", 0) + len(empty)  # e.g. empty in the given data
    stats.setdefault("retried", 0)
    stats["fallback_generic"] = stats.get("fallback_generic", 0) + (len(empty) if aug.empty_fallback else 0)
    if empty and aug.empty_fallback is not None:
        for i in empty:
            both[i] = both[i].model_copy(update={"generic_response": aug.empty_fallback})
    return both[:len(train)], both[len(train):], stats


def _train_config(config: GRAGRecipeConfig, spec: GRAGModelSpec, progress: bool) -> GRAGTrainingConfig:
    update: dict[str, Any] = {
        "eval_at_epoch_end": False, "eval_steps": None, "progress": progress and config.training.progress,
        "eval_metrics": ["bpc", "loss"] if set(MODEL_ROW_METRICS) & set(config.eval.metrics) else ["loss"],
        "eval_metric_options": {},
    }
    if config.save_checkpoints:
        update["output_dir"] = str(Path(config.output_dir) / "models" / _slug(spec.label))
    else:
        update["output_dir"] = None
    if config.device == "cpu":
        update["use_cpu"] = True
    return GRAGTrainingConfig.from_dict({**config.training.to_dict(), **update}, source="training")


def run_grag_recipe(config: GRAGRecipeConfig, *, generator: Any = None, backbone: Any = None,
                    progress: bool = True, save: bool = True) -> GRAGRecipeResults:
    r"""Run the GRAG recipe (see the module docstring) and write ``results.{md,json}``.

    Args:
        config: the recipe config.
        generator: the generic LLM (a :class:`~personakit.llm.TextGenerator`); default an
            :class:`~personakit.llm.HFGenerator` over ``config.augment.model``, loaded only
            when an example lacks a generic response or the ICL row is on.
        backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair (each
            model trains on a deep copy), or a function returning a fresh pair per call.
        progress: print the stages and show progress bars.
        save: write ``results.md``, ``results.json`` and ``predictions.jsonl`` to
            ``config.output_dir``.

    Returns:
        :class:`GRAGRecipeResults`; ``results.rows`` is ``{system: {metric: value}}``.
    """
    import torch

    from personakit.eval import evaluate_texts, paired_ttest
    from personakit.llm import ResponseCache
    from personakit.eval.controls import shuffle_personas
    from personakit.training.grag import GRAGTrainer

    log = StageLog(progress, "grag")
    timings: dict[str, float] = {}
    t_total = time.perf_counter()
    out_dir = Path(config.output_dir)

    # 1. data
    train, test = load_grag_splits(config.data, seed=config.seed)
    log(f"{len(train)} training and {len(test)} test examples ({config.data.source})")

    # 2. the generic LLM (augmentation and ICL), behind one response cache
    cache = None
    if config.augment.cache is not None:
        cache_path = out_dir / "llm_cache.jsonl" if config.augment.cache == "auto" else Path(config.augment.cache)
        cache = ResponseCache(cache_path)
    needs_llm = config.icl.enabled or any(config.augment.overwrite or ex.generic_response is None
                                          for ex in train + test)
    if generator is None and needs_llm:
        from personakit.llm import HFGenerator

        t = time.perf_counter()
        generator = HFGenerator.from_pretrained(config.augment.model, batch_size=config.augment.batch_size,
                                                dtype=config.augment.dtype, device=config.device)
        timings["llm_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    train, test, aug_stats = _augment(config, generator, cache, train, test, log, progress)
    timings["augment_s"] = time.perf_counter() - t
    if config.augment.enabled and save:
        from personakit.augment import save_examples

        save_examples(out_dir / "augmented_train.jsonl", train)
        save_examples(out_dir / "augmented_test.jsonl", test)

    references = [ex.response for ex in test]
    text_metrics = [m for m in config.eval.metrics if m not in MODEL_ROW_METRICS]
    options = {"bertscore": {"model": config.eval.bertscore_model}} if "bertscore" in text_metrics else {}

    # 3. training
    rows: dict[str, dict[str, Optional[float]]] = {}
    predictions: dict[str, list[str]] = {}
    training: dict[str, dict[str, Any]] = {}
    model_eval: dict[str, dict[str, float]] = {}
    make_backbone = _backbone_factory(config, backbone)
    t_train = time.perf_counter()
    eval_seconds = 0.0
    shuffled = None
    if "persona_use" in config.eval.metrics:
        try:
            shuffled = shuffle_personas(test, seed=config.seed)
        except ValueError as err:  # e.g. a test set from one dialogue
            log(f"persona use not measured: {err}")
    precision: dict[str, str] = {}
    for spec in config.models:
        torch.manual_seed(config.seed)
        bb, tok = make_backbone()
        model, precision[spec.label] = build_recipe_model(spec, bb, tok, lora=config.lora, dtype=config.dtype,
                                                          device=config.device)
        collator = model.make_collator(**config.inputs.to_dict())
        tcfg = _train_config(config, spec, progress)
        trainer = GRAGTrainer(model, tcfg, train_examples=train, collator=collator)
        plan = trainer.plan()
        log(f"training {spec.label}: {plan.total_steps} steps of {tcfg.batch_size}")
        t = time.perf_counter()
        result = trainer.train(resume_from="latest" if config.save_checkpoints else None)
        seconds = time.perf_counter() - t
        last = result.history[-1] if result.history else {}
        training[spec.label] = {"steps": result.global_step, "seconds": seconds,
                                "final_loss": last.get("loss"), "history": result.history}
        t = time.perf_counter()
        predictions[spec.label] = trainer.predict(test)
        model_eval[spec.label] = trainer.evaluate(test)  # bpc and teacher-forced losses
        if shuffled is not None:
            model_eval[spec.label]["bpc_shuffled"] = trainer.evaluate(shuffled)["bpc"]
        eval_seconds += time.perf_counter() - t
        training[spec.label]["test_losses"] = {k: v for k, v in model_eval[spec.label].items()
                                               if not k.startswith("bpc")}
        if config.save_models:
            trainer.save_model(out_dir / "models" / _slug(spec.label) / "final")
        log(f"{spec.label}: {seconds:.0f} s, final loss {last.get('loss', float('nan')):.3f}, "
            f"e.g. {predictions[spec.label][0]!r}")
        del trainer, model, bb
    timings["train_s"] = time.perf_counter() - t_train - eval_seconds

    # 4. ICL(Hist)
    if config.icl.enabled:
        from personakit.llm import CachedGenerator, GenerationSettings
        from personakit.models.icl import ICLResponder

        t = time.perf_counter()
        icl_gen = CachedGenerator(generator, cache) if cache is not None else generator
        responder = ICLResponder(
            icl_gen, mode="hist", n_shot=config.icl.n_shot, shot_pool=train, seed=config.seed,
            max_history_turns=config.icl.max_history_turns,
            settings=GenerationSettings(max_new_tokens=config.icl.max_new_tokens, stop=["\n"]))
        log(f"ICL(Hist) {config.icl.n_shot}-shot on {len(test)} test examples")
        predictions[_icl_label(config.icl)] = responder.respond(test, batch_size=config.icl.batch_size,
                                                                progress=progress)
        timings["icl_s"] = time.perf_counter() - t

    # 5. evaluation
    t = time.perf_counter()
    log(f"scoring {len(predictions)} systems: {', '.join(config.eval.metrics)}")
    for system, preds in predictions.items():
        row: dict[str, Optional[float]] = dict(evaluate_texts(preds, references, metrics=text_metrics, **options)) \
            if text_metrics else {}
        own = model_eval.get(system, {})
        if "bpc" in config.eval.metrics:
            row["bpc"] = own.get("bpc")
        if "persona_use" in config.eval.metrics:
            row["bpc_shuffled"] = own.get("bpc_shuffled")
            row["persona_use"] = (own["bpc_shuffled"] - own["bpc"]) if "bpc_shuffled" in own else None
        rows[system] = row
    significance: dict[str, dict[str, Any]] = {}
    key = config.eval.significance_metric
    if key is not None and len(predictions) > 1 and len(test) > 1:
        base = config.eval.baseline or next(iter(predictions))
        base_scores = _per_example_scores(key, predictions[base], references)
        for system, preds in predictions.items():
            if system == base:
                continue
            r = paired_ttest(_per_example_scores(key, preds, references), base_scores)
            significance[system] = {
                "metric": key, "baseline": base, "mean_difference": r.details["mean_difference"],
                "t": r.statistic, "p": r.p_value,
                "significant": bool(not math.isnan(r.p_value) and r.p_value < config.eval.significance_level)}
    timings["eval_s"] = time.perf_counter() - t + eval_seconds
    timings["total_s"] = time.perf_counter() - t_total

    results = GRAGRecipeResults(
        rows=rows, significance=significance, predictions=predictions, test_examples=test, training=training,
        timings=timings,
        sizes={"train": len(train), "test": len(test), "generated": aug_stats["generated"],
               "cached": aug_stats["cached"], "empty_generic": aug_stats["empty_generic"],
               "retried": aug_stats["retried"], "fallback_generic": aug_stats["fallback_generic"]},
        config=config.to_dict(),
        environment={"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "precision": precision,
                     "generator": getattr(generator, "model_id", None) if generator is not None else None},
    )
    if save:
        results.save(out_dir)
        log(f"results written to {out_dir / 'results.md'} and results.json")
    return results
