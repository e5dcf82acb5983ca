r"""End-to-end questioner-aware recipe: cluster, train dual-tower models and baselines, evaluate, compare.

Zeng et al., "Personalized LLM for Generating Customized Responses to the Same Query from
Different Users" (arXiv:2412.11736).  :func:`run_questioner_recipe` runs:

1. **Data.** Train and test :class:`~personakit.types.ResponseExample` lists carrying
   ``questioner_id``: the PFG-Questioner task built from Persuasion-for-Good
   (:func:`~personakit.data.build_pfg_questioner_task`), an MQDialog-format pair of files
   (:func:`~personakit.data.read_mqdialog`), or JSON-lines example files; optionally a
   seeded subsample of each.
2. **Question clusters** (§4.1). :class:`~personakit.modules.QuestionClusterer` (k-means
   over MiniLM embeddings of the last questioner turn) fitted on the training questions;
   test questions go to the nearest centre.
3. **Systems.** Each entry of ``systems`` is trained on a fresh copy of the same backbone
   with :class:`~personakit.training.QuestionerTrainer` (same data, prompts, optimiser and
   number of steps), or prompted without training:

   * ``"dual-tower"``: :class:`~personakit.models.questioner.DualTowerResponder` (LoRA on
     the general tower plus the low-rank questioner-specific stream, the contrastive loss
     and multi-view augmentation; ablations through ``settings``: ``rank``,
     ``contrastive_weight: 0``, ``use_clusters: false``, ``num_views: 0``);
   * ``"lora"``: the same model without the specific stream: a plain LoRA fine-tune;
   * ``"persona-prompt"``: the untrained backbone prompted (chat template) with the
     questioner's persona record and the history.

4. **Evaluation** on the test examples: ROUGE-1/2/L and BLEU (and any
   :func:`~personakit.eval.evaluate_texts` metric), and the **questioner diversity**:
   for the first ``diversity_inputs`` test inputs, the responses generated for
   ``diversity_questioners`` different training questioners (their ids for the trained
   systems, their persona records for the prompted one), scored by the mean pairwise
   $1 - \text{ROUGE-L}$ over those responses (0: the questioner changes nothing).
5. **Cost**: parameters added per layer and trainable parameters of each trained
   system, and its mean training step time relative to the ``"lora"`` system measured in
   the same run.

:meth:`QuestionerRecipeResults.save` writes ``results.md``, ``results.json`` and
``predictions.jsonl`` atomically.

Example:
    >>> cfg = QuestionerRecipeConfig(systems=[{"kind": "lora"}, {"kind": "dual-tower", "settings": {"rank": 4}}])
    >>> [s.label for s in cfg.systems]
    ['LoRA', 'Dual-tower']
    >>> QuestionerRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import platform
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence, Union

from pydantic import Field, field_validator, model_validator

from personakit.config import BaseConfig, atomic_write_text
from personakit.recipes._common import StageLog, jsonable
from personakit.data.pfg_questioner import PFGQuestionerConfig
from personakit.modules.question_clusterer import QuestionClustererConfig
from personakit.training.questioner import QuestionerTrainingConfig

__all__ = [
    "QUESTIONER_SYSTEM_KINDS",
    "QuestionerDataConfig",
    "QuestionerInputConfig",
    "QuestionerSystemSpec",
    "QuestionerEvalConfig",
    "QuestionerRecipeConfig",
    "QuestionerRecipeResults",
    "load_questioner_splits",
    "run_questioner_recipe",
    "questioner_diversity",
    "PERSONA_PROMPT_SYSTEM",
]

QUESTIONER_SYSTEM_KINDS = ("dual-tower", "lora", "persona-prompt")
"""System kinds of the recipe."""
_LABELS = {"dual-tower": "Dual-tower", "lora": "LoRA", "persona-prompt": "Persona-in-prompt"}

PERSONA_PROMPT_SYSTEM = (
    "You are {agent} in a conversation. Reply to the other person's last message in one or two sentences, "
    "adapting your reply to who they are.\n\nAbout the person you are talking to: {persona}"
)
"""System message of the persona-in-prompt baseline (``{agent}``: the responder's role, ``{persona}``: the
questioner's persona record)."""


# --------------------------------------------------------------------------- configs
class QuestionerDataConfig(BaseConfig):
    """Where the examples come from.

    Example:
        >>> QuestionerDataConfig(source="pfg", path="FullData", pfg={"split_by": "turn"}).pfg.split_by
        'turn'
    """

    source: Literal["pfg", "mqdialog", "examples"] = Field("pfg", description="'pfg', 'mqdialog' or 'examples'.")
    """``"pfg"``: PFG-Questioner from the Persuasion-for-Good ``FullData`` folder ``path``; ``"mqdialog"``:
    MQDialog-format ``train_path`` / ``test_path``; ``"examples"``: JSON lines of ResponseExample."""
    path: Optional[str] = Field(None, description="Persuasion-for-Good FullData folder (pfg).")
    train_path: Optional[str] = Field(None, description="Training file (mqdialog / examples).")
    test_path: Optional[str] = Field(None, description="Test file (mqdialog / examples).")
    pfg: PFGQuestionerConfig = Field(default_factory=PFGQuestionerConfig, description="PFG-Questioner options.")
    test_split: Literal["dev", "test"] = Field("test", description="PFG split used as the test set.")
    max_train: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many training examples.")
    max_test: Optional[int] = Field(None, ge=1, description="Seeded subsample of this many test examples.")

    @model_validator(mode="after")
    def _check(self) -> "QuestionerDataConfig":
        if self.source == "pfg" and not self.path:
            raise ValueError("source='pfg' needs path (the Persuasion-for-Good FullData folder)")
        if self.source != "pfg" and (not self.train_path or not self.test_path):
            raise ValueError(f"source={self.source!r} needs train_path and test_path")
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
    settings: dict[str, Any] = Field(default_factory=dict, description="DualTowerConfig fields (rank, num_views...).")
    """:class:`~personakit.models.questioner.DualTowerConfig` fields (``rank``, ``num_views``,
    ``contrastive_weight``, ``use_clusters``, ``queue_size``, ``lora``...)."""

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


def _default_systems() -> list[QuestionerSystemSpec]:
    return [QuestionerSystemSpec(kind="lora"), QuestionerSystemSpec(kind="dual-tower"),
            QuestionerSystemSpec(kind="persona-prompt")]


class QuestionerRecipeConfig(BaseConfig):
    """The whole recipe, as a YAML file (``examples/configs/questioner.yaml``)."""

    data: QuestionerDataConfig = Field(default_factory=lambda: QuestionerDataConfig(
        path="../shared/data/persuasionforgood/FullData"), description="Data source.")
    backbone: str = Field("smollm2", description="Causal LM of every system (embedded name or folder).")
    clusterer: QuestionClustererConfig = Field(default_factory=QuestionClustererConfig,
                                               description="Question clustering.")
    systems: list[QuestionerSystemSpec] = Field(default_factory=_default_systems, min_length=1,
                                                description="Systems to compare.")
    inputs: QuestionerInputConfig = Field(default_factory=QuestionerInputConfig, description="Prompt budgets.")
    training: QuestionerTrainingConfig = Field(
        default_factory=lambda: QuestionerTrainingConfig(epochs=2, batch_size=8, learning_rate=2e-4,
                                                         max_new_tokens=32, eval_metrics=["loss"]),
        description="Trainer settings shared by every trained system.")
    eval: QuestionerEvalConfig = Field(default_factory=QuestionerEvalConfig, description="Evaluation.")
    output_dir: str = Field("runs/questioner", description="Results, checkpoints.")
    save_checkpoints: bool = Field(False, description="Checkpoint each system's training (resumable).")
    save_models: bool = Field(False, description="save_pretrained each trained model.")
    device: Optional[str] = Field(None, description="'cpu', 'cuda' (None: the trainer's choice).")
    seed: int = Field(0, description="Seed of subsampling, initialisation and the diversity questioners.")

    @model_validator(mode="after")
    def _unique(self) -> "QuestionerRecipeConfig":
        labels = [s.label for s in self.systems]
        if len(set(labels)) != len(labels):
            raise ValueError(f"systems: labels must be unique, got {labels}")
        return self


# --------------------------------------------------------------------------- results
@dataclass
class QuestionerRecipeResults:
    """What :func:`run_questioner_recipe` returns.

    Attributes:
        rows: ``{system: {metric: value}}`` (text metrics and ``diversity``).
        costs: ``{system: {"added_params_per_layer", "trainable_params", "step_s", "step_time_vs_lora"}}``.
        predictions: ``{system: [response per test example]}``.
        diversity: ``{system: {"mean_pairwise_1_minus_rougeL", "inputs", "questioners"}}``.
        training: ``{system: {"steps", "seconds", "history"}}``.
        timings, sizes, config, environment: run facts.
    """

    rows: dict[str, dict[str, Optional[float]]]
    costs: dict[str, dict[str, Any]]
    predictions: dict[str, list[str]]
    diversity: dict[str, dict[str, Any]]
    training: dict[str, dict[str, Any]]
    test_examples: list[Any]
    timings: dict[str, float]
    sizes: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    output_dir: Optional[Path] = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "costs": self.costs, "diversity": self.diversity,
                "training": {k: {kk: vv for kk, vv in v.items()} for k, v in self.training.items()},
                "timings": self.timings, "sizes": self.sizes, "config": self.config, "environment": self.environment}

    def table(self) -> str:
        metrics: list[str] = []
        for row in self.rows.values():
            metrics += [m for m in row if m not in metrics]
        lines = ["| system | " + " | ".join(metrics) + " |", "| --- |" + " ---: |" * len(metrics)]
        for system, row in self.rows.items():
            lines.append(f"| {system} | " + " | ".join(_fmt(row.get(m)) for m in metrics) + " |")
        return "\n".join(lines)

    def cost_table(self) -> str:
        lines = ["| system | params added per layer | trainable params | step time (s) | step time vs LoRA |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        for system, c in self.costs.items():
            lines.append(f"| {system} | {c['added_params_per_layer']:,} | {c['trainable_params']:,} | "
                         f"{_fmt(c['step_s'])} | {_fmt(c.get('step_time_vs_lora'))} |")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        s = self.sizes
        lines = ["# Questioner-aware responder", "", self.table(), "",
                 "`diversity`: mean pairwise 1 - ROUGE-L between the responses to the same input under "
                 f"{s.get('diversity_questioners', 0)} different questioners ({s.get('diversity_inputs', 0)} inputs).",
                 "", self.cost_table(), "",
                 f"{s.get('train', 0)} training and {s.get('test', 0)} test examples, {s.get('questioners', 0)} "
                 f"training questioners, {s.get('clusters', 0)} question clusters.",
                 "Time: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in self.timings.items() if k.endswith("_s")) + "."]
        return "\n".join(lines) + "\n"

    def save(self, directory: Union[str, os.PathLike[str], None] = None) -> tuple[Path, Path]:
        """Write ``results.json``, ``results.md`` and ``predictions.jsonl`` atomically."""
        out = Path(directory) if directory is not None else Path(self.config.get("output_dir", "."))
        json_path = atomic_write_text(out / "results.json", json.dumps(jsonable(self.to_dict()), indent=2) + "\n")
        md_path = atomic_write_text(out / "results.md", self.to_markdown())
        rows = []
        for i, ex in enumerate(self.test_examples):
            rows.append(json.dumps({"id": ex.id, "questioner_id": ex.questioner_id, "responder_id": ex.responder_id,
                                    "question": ex.history[-1].text, "reference": ex.response,
                                    "predictions": {k: v[i] for k, v in self.predictions.items()}},
                                   ensure_ascii=False))
        atomic_write_text(out / "predictions.jsonl", "".join(r + "\n" for r in rows))
        self.output_dir = out
        return json_path, md_path

    def __str__(self) -> str:
        return self.to_markdown()


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.4f}" if abs(x) < 100 else f"{x:.1f}"


# ----------------------------------------------------------------------------- parts
def _subsample(items: list, n: Optional[int], seed: int) -> list:
    if n is None or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def load_questioner_splits(config: QuestionerDataConfig, seed: int = 0) -> tuple[list, list]:
    """``(train, test)`` examples for a data config (see :class:`QuestionerDataConfig`)."""
    if config.source == "pfg":
        from personakit.data.pfg_questioner import build_pfg_questioner_task

        splits = build_pfg_questioner_task(config.path, **config.pfg.to_dict())  # type: ignore[arg-type]
        train, test = splits["train"], splits[config.test_split]
    elif config.source == "mqdialog":
        from personakit.data.mqdialog import read_mqdialog

        train, test = read_mqdialog(config.train_path), read_mqdialog(config.test_path)  # type: ignore[arg-type]
    else:
        from personakit.augment import load_examples

        train, test = load_examples(config.train_path), load_examples(config.test_path)  # type: ignore[arg-type]
    if not train or not test:
        raise ValueError(f"data: empty split (train {len(train)}, test {len(test)})")
    return _subsample(train, config.max_train, seed), _subsample(test, config.max_test, seed + 1)


def questioner_diversity(responses: Sequence[Sequence[str]]) -> float:
    r"""Mean over inputs of the mean pairwise $1 - \text{ROUGE-L}_F$ between the responses to one input.

    Args:
        responses: per input, the responses generated for different questioners.

    Example:
        >>> questioner_diversity([["the same", "the same"], ["yes please", "no thanks"]])
        0.5
    """
    from personakit.eval import evaluate_texts

    per_input = []
    for group in responses:
        pairs = list(itertools.combinations(group, 2))
        if not pairs:
            continue
        scores = [1.0 - float(evaluate_texts([a], [b], metrics=["rouge"])["rougeL"]) if (a.strip() or b.strip())
                  else 0.0 for a, b in pairs]
        per_input.append(sum(scores) / len(scores))
    return sum(per_input) / len(per_input) if per_input else float("nan")


def _persona_prompt(example: Any, questioner_persona: Any, max_turns: Optional[int]) -> list[dict[str, str]]:
    persona = questioner_persona.to_text() if questioner_persona is not None else ""
    msgs = [{"role": "system", "content": PERSONA_PROMPT_SYSTEM.format(agent=example.agent, persona=persona or "(unknown)")}]
    history = example.history if max_turns is None else example.history[-max_turns:]
    for turn in history:
        role = "assistant" if turn.speaker == example.agent else "user"
        if msgs[-1]["role"] == role:
            msgs[-1]["content"] += " " + turn.text
        elif len(msgs) == 1 and role == "assistant":
            continue  # the chat starts with a user message
        else:
            msgs.append({"role": role, "content": turn.text})
    return msgs


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "system"


def run_questioner_recipe(config: QuestionerRecipeConfig, *, backbone: Any = None, clusterer_encoder: Any = None,
                          progress: bool = True, save: bool = True,
                          on_system_done: Optional[Callable[[str, dict], None]] = None) -> QuestionerRecipeResults:
    """Run the recipe (see the module docstring) and write ``results.{md,json}``.

    Args:
        config: the recipe config.
        backbone: ``None`` (load ``config.backbone``), a ``(model, tokenizer)`` pair (each system
            gets a deep copy), or a function returning a fresh pair per call.
        clusterer_encoder: replaces the clusterer's sentence encoder (a callable ``texts -> [N, D]``).
        progress: print the stages.
        save: write the results to ``config.output_dir``.
        on_system_done: called with ``(label, row)`` after each system is scored.
    """
    import torch

    from personakit.eval import evaluate_texts
    from personakit.models.questioner import DualTowerResponder
    from personakit.modules.question_clusterer import QuestionClusterer
    from personakit.training.questioner import QuestionerTrainer

    log = StageLog(progress, "questioner")
    timings: dict[str, float] = {}
    t_total = time.perf_counter()
    out_dir = Path(config.output_dir)

    train, test = load_questioner_splits(config.data, seed=config.seed)
    missing = [ex.id for ex in train if not ex.questioner_id]
    if missing:
        raise ValueError(f"training example {missing[0]!r} has no questioner_id ({len(missing)} such examples)")
    questioners = sorted({ex.questioner_id for ex in train})
    log(f"{len(train)} training and {len(test)} test examples, {len(questioners)} questioners")

    t = time.perf_counter()
    ccfg = config.clusterer.to_dict()
    clusterer = QuestionClusterer(**{**ccfg, "encoder": clusterer_encoder if clusterer_encoder is not None
                                     else ccfg["encoder"]})
    train = clusterer.assign(train, fit=True)
    test = clusterer.assign(test, fit=False)
    n_clusters = len({ex.metadata["question_cluster"] for ex in train})
    timings["cluster_s"] = time.perf_counter() - t
    log(f"{n_clusters} question clusters ({timings['cluster_s']:.0f} s)")

    if callable(backbone) and not hasattr(backbone, "parameters"):
        make_backbone = backbone
    else:
        if backbone is None:
            from personakit.backbones import load_causal_lm

            loaded = load_causal_lm(config.backbone)
        else:
            loaded = backbone
        model0, tok0 = loaded
        make_backbone = lambda: (copy.deepcopy(model0), tok0)  # noqa: E731

    references = [ex.response for ex in test]
    rng = random.Random(config.seed)
    n_div = min(config.eval.diversity_inputs, len(test))
    div_questioners = rng.sample(questioners, min(config.eval.diversity_questioners, len(questioners)))
    persona_of = {}
    for ex in train:
        persona_of.setdefault(ex.questioner_id, ex.user_persona if ex.user_persona is not None else ex.persona)
    div_inputs = test[:n_div]

    rows: dict[str, dict[str, Optional[float]]] = {}
    predictions: dict[str, list[str]] = {}
    diversity: dict[str, dict[str, Any]] = {}
    training: dict[str, dict[str, Any]] = {}
    costs: dict[str, dict[str, Any]] = {}
    gen_kwargs = {"max_new_tokens": config.training.max_new_tokens, "do_sample": False,
                  **config.training.generation_options}
    for spec in config.systems:
        label = spec.label
        t_sys = time.perf_counter()
        torch.manual_seed(config.seed)
        bb, tok = make_backbone()
        div_groups: list[list[str]] = []
        if spec.kind == "persona-prompt":
            from personakit.llm import GenerationSettings, HFGenerator

            gen = HFGenerator(bb.eval(), tok, batch_size=config.eval.prompt_batch_size)
            settings = GenerationSettings(max_new_tokens=config.training.max_new_tokens, stop=["\n"])
            prompts = [_persona_prompt(ex, ex.user_persona if ex.user_persona is not None else ex.persona,
                                       config.inputs.max_history_turns) for ex in test]
            predictions[label] = gen.generate(prompts, settings, progress=False)
            if n_div and len(div_questioners) >= 2:
                dprompts = [_persona_prompt(ex, persona_of[q], config.inputs.max_history_turns)
                            for ex in div_inputs for q in div_questioners]
                flat = gen.generate(dprompts, settings, progress=False)
                k = len(div_questioners)
                div_groups = [flat[i * k:(i + 1) * k] for i in range(n_div)]
        else:
            settings_ = dict(spec.settings)
            model = DualTowerResponder.from_backbone(bb, tok, questioners=questioners,
                                                     use_specific=spec.kind == "dual-tower", **settings_)
            collator = model.make_collator(**config.inputs.to_dict())
            update: dict[str, Any] = {"progress": progress and config.training.progress, "eval_at_epoch_end": False,
                                      "eval_steps": None, "output_dir": None}
            if config.save_checkpoints:
                update["output_dir"] = str(out_dir / "models" / _slug(label))
            if config.device == "cpu":
                update["use_cpu"] = True
            tcfg = QuestionerTrainingConfig.from_dict({**config.training.to_dict(), **update}, source="training")
            trainer = QuestionerTrainer(model, tcfg, train_examples=train, collator=collator)
            plan = trainer.plan()
            log(f"training {label}: {plan.total_steps} steps of {tcfg.batch_size}")
            t = time.perf_counter()
            result = trainer.train(resume_from="latest" if config.save_checkpoints else None)
            seconds = time.perf_counter() - t
            training[label] = {"steps": result.global_step, "seconds": seconds, "history": result.history}
            steps_run = max(1, result.global_step)
            costs[label] = {"added_params_per_layer": model.added_parameters_per_layer(),
                            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                            "step_s": seconds / steps_run}
            predictions[label] = trainer.predict(test)
            if spec.kind == "dual-tower" and n_div and len(div_questioners) >= 2:
                model.eval()
                per_q = {q: model.respond(div_inputs, batch_size=tcfg.eval_batch_size, questioner_id=q,
                                          **gen_kwargs) for q in div_questioners}
                div_groups = [[per_q[q][i] for q in div_questioners] for i in range(n_div)]
            elif n_div and len(div_questioners) >= 2:  # the LoRA baseline cannot see the questioner
                preds = predictions[label][:n_div]
                div_groups = [[p] * len(div_questioners) for p in preds]
            if config.save_models:
                trainer.save_model(out_dir / "models" / _slug(label) / "final")
            del trainer, model
        row = dict(evaluate_texts(predictions[label], references, metrics=list(config.eval.metrics)))
        if div_groups:
            d = questioner_diversity(div_groups)
            row["diversity"] = d
            diversity[label] = {"mean_pairwise_1_minus_rougeL": d, "inputs": n_div, "questioners": div_questioners,
                                "examples": div_groups[:3]}
        rows[label] = row
        timings[f"{_slug(label)}_s"] = time.perf_counter() - t_sys
        log(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float))
            + f" ({timings[f'{_slug(label)}_s']:.0f} s)")
        if on_system_done is not None:
            on_system_done(label, row)
        del bb
    base = next((c["step_s"] for lbl, c in costs.items()
                 if next(s for s in config.systems if s.label == lbl).kind == "lora"), None)
    for c in costs.values():
        c["step_time_vs_lora"] = c["step_s"] / base if base else None
    timings["total_s"] = time.perf_counter() - t_total

    results = QuestionerRecipeResults(
        rows=rows, costs=costs, predictions=predictions, diversity=diversity, training=training,
        test_examples=test, timings=timings,
        sizes={"train": len(train), "test": len(test), "questioners": len(questioners), "clusters": n_clusters,
               "diversity_inputs": n_div, "diversity_questioners": len(div_questioners)},
        config=config.to_dict(),
        environment={"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
    )
    if save:
        results.save(out_dir)
        log(f"results written to {out_dir / 'results.md'}")
    return results
