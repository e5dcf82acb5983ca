"""GRAGTrainer: loss-term logging, the paper's LR schedule, evaluation, atomic checkpoints and exact resumption."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models" / "grag"))

import _grag_worker as worker  # noqa: E402
from grag_testkit import build_backbone, tokenizer_for  # noqa: E402

from personakit.eval import evaluate_texts, reference_log_likelihoods, bits_per_character  # noqa: E402
from personakit.models.grag import PostGRAG, PreGRAG, PreSFT  # noqa: E402
from personakit.training.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint_state  # noqa: E402
from personakit.training.grag import (  # noqa: E402
    LOG_FILE,
    GRAGTrainer,
    GRAGTrainingConfig,
    TrainerCallback,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0:FutureWarning")

EXAMPLES = worker.training_examples(8)


def config(**overrides) -> GRAGTrainingConfig:
    base = dict(max_steps=4, batch_size=2, logging_steps=1, learning_rate=1e-3, use_cpu=True, progress=False,
                eval_at_epoch_end=False)
    base.update(overrides)
    return GRAGTrainingConfig(**base)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def log_records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / LOG_FILE).read_text().splitlines()]


# ------------------------------------------------------------------------------ logging
def test_postgrag_logs_every_loss_term(tmp_path):
    model = worker.build_bart_postgrag()
    trainer = GRAGTrainer(model, config(output_dir=str(tmp_path / "a")), train_examples=EXAMPLES)
    result = trainer.train()
    assert [r["step"] for r in result.history] == [1, 2, 3, 4]
    alpha, beta = model.config.alpha, model.config.beta
    assert (alpha, beta) == (0.5, 0.05)
    for rec in result.history:
        for key in ("loss", "loss_p", "loss_g", "loss_cjepa", "lr", "grad_norm", "epoch"):
            assert key in rec and math.isfinite(rec[key]), (key, rec)
        assert rec["loss"] == pytest.approx(rec["loss_p"] + alpha * rec["loss_g"] + beta * rec["loss_cjepa"],
                                            rel=1e-5)
    assert result.history[-1]["loss_p"] < result.history[0]["loss_p"]  # it learns
    # the JSONL log holds the same records, one per line
    logged = log_records(tmp_path / "a")
    assert [{k: v for k, v in r.items() if k != "kind"} for r in logged] == result.history
    assert {r["kind"] for r in logged} == {"train"}

    # a coarser logging window records the mean of the per-step values; training itself is unchanged
    model_b = worker.build_bart_postgrag()
    result_b = GRAGTrainer(model_b, config(logging_steps=3), train_examples=EXAMPLES).train()
    assert [r["step"] for r in result_b.history] == [3, 4]  # every 3 steps, and the final step
    for key in ("loss", "loss_p", "loss_g", "loss_cjepa", "grad_norm"):
        assert result_b.history[0][key] == pytest.approx(sum(r[key] for r in result.history[:3]) / 3, rel=1e-12)
        assert result_b.history[1][key] == pytest.approx(result.history[3][key], rel=1e-12)
    assert result_b.history[0]["lr"] == result.history[2]["lr"]
    assert states_equal(model, model_b)


def test_callbacks_see_logs_and_saves(tmp_path):
    seen: dict[str, list] = {"log": [], "save": [], "plain": [], "steps": []}

    class Recorder(TrainerCallback):
        def on_step_end(self, trainer, step):
            seen["steps"].append(step)

        def on_log(self, trainer, record):
            seen["log"].append(record["step"])

        def on_save(self, trainer, path):
            seen["save"].append(path.name)

    model = PreSFT.from_backbone(build_backbone("t5"), tokenizer_for("t5"))
    GRAGTrainer(model, config(max_steps=3, save_steps=2, output_dir=str(tmp_path)), train_examples=EXAMPLES,
                callbacks=[Recorder(), lambda rec: seen["plain"].append(rec["loss"])]).train()
    assert seen["steps"] == [1, 2, 3] and seen["log"] == [1, 2, 3] and len(seen["plain"]) == 3
    assert seen["save"] == ["checkpoint-00000002", "checkpoint-00000003"]


# ------------------------------------------------------------------------------ resumption
def test_resume_restores_evaluations_and_the_logging_window(tmp_path):
    """GRAG evaluations (text metrics, bpc, loss terms) and a logging window of 2 steps across a stop at step 3:
    the same eval records and final metrics as an uninterrupted run (the bare resume contract is in
    test_trainer_contract.py)."""
    cfg = dict(max_steps=6, logging_steps=2, save_steps=4, eval_steps=3, eval_metrics=["char_f1", "bpc", "loss"],
               max_new_tokens=4)
    full_model = worker.build_bart_postgrag()
    full = GRAGTrainer(full_model, config(output_dir=str(tmp_path / "full"), **cfg), train_examples=EXAMPLES,
                       eval_examples=EXAMPLES[:3]).train()

    first = GRAGTrainer(worker.build_bart_postgrag(), config(output_dir=str(tmp_path / "cut"), **cfg),
                        train_examples=EXAMPLES, eval_examples=EXAMPLES[:3])
    part = first.train(stop_after_step=3)
    assert part.global_step == 3 and not part.completed and part.final_metrics == {}
    assert part.checkpoint is not None and part.checkpoint.name == "checkpoint-00000003"
    assert read_checkpoint_state(part.checkpoint)["extra"]["data_position"] == {"epoch": 0, "step_in_epoch": 3}

    torch.manual_seed(1234)  # the global RNG state must not matter either
    resumed_model = worker.build_bart_postgrag(seed=7)  # different initial weights: all restored from the checkpoint
    assert not states_equal(resumed_model, full_model)
    resumed = GRAGTrainer(resumed_model, config(output_dir=str(tmp_path / "cut"), **cfg), train_examples=EXAMPLES,
                          eval_examples=EXAMPLES[:3]).train(resume_from="latest")

    assert states_equal(resumed_model, full_model)  # bit for bit
    assert resumed.history == full.history  # identical logged losses (the partial window included)
    assert [r["step"] for r in resumed.history] == [2, 4, 6]
    assert resumed.eval_history == full.eval_history and [r["step"] for r in full.eval_history] == [3, 6]
    assert resumed.final_metrics == full.final_metrics and "bpc" in full.final_metrics
    assert log_records(tmp_path / "cut") == log_records(tmp_path / "full")


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """A training process killed with SIGKILL after its first checkpoint resumes to the uninterrupted result."""
    killed_dir = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, str(HERE / "_grag_worker.py"), "train", str(killed_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while latest_checkpoint(killed_dir) is None:
            if proc.poll() is not None:
                pytest.fail(f"the worker exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the worker wrote no checkpoint within 180 s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    total = worker.kill_config(str(killed_dir)).max_steps
    at_kill = read_checkpoint_state(latest_checkpoint(killed_dir))["step"]
    assert 2 <= at_kill < total  # killed mid-run, after at least one checkpoint

    reference_model = worker.build_bart_postgrag()
    reference = GRAGTrainer(reference_model, worker.kill_config(str(tmp_path / "reference")),
                            train_examples=worker.training_examples()).train()

    resumed_model = worker.build_bart_postgrag(seed=11)
    resumed = GRAGTrainer(resumed_model, worker.kill_config(str(killed_dir)),
                          train_examples=worker.training_examples()).train(resume_from="latest")
    assert states_equal(resumed_model, reference_model)
    assert resumed.history == reference.history
    # the log was cut back to the checkpoint and continued: one record per step, none duplicated
    assert [r["step"] for r in log_records(killed_dir)] == list(range(1, total + 1))
    assert not any(p.name.startswith(".tmp-checkpoint-") for p in killed_dir.iterdir())  # leftovers cleaned


def test_trainable_only_checkpoints_and_resume(tmp_path):
    """A frozen backbone: the checkpoint holds the extractors only (layout: test_checkpoint_layout_is_pinned)."""
    def build(seed):
        model = worker.build_bart_postgrag(seed)
        for p in model.backbone.parameters():  # train the style extractors only
            p.requires_grad_(False)
        return model

    cfg = config(max_steps=4, output_dir=str(tmp_path / "run"), save_steps=2)
    full_model = build(0)
    full = GRAGTrainer(full_model, config(max_steps=4), train_examples=EXAMPLES).train()
    GRAGTrainer(build(0), cfg, train_examples=EXAMPLES).train(stop_after_step=2)

    resumed_model = build(0)
    with torch.no_grad():  # perturb a trainable weight: the checkpoint must restore it
        next(p for p in resumed_model.parameters() if p.requires_grad).add_(1.0)
    resumed = GRAGTrainer(resumed_model, cfg, train_examples=EXAMPLES).train(resume_from="latest")
    assert states_equal(resumed_model, full_model)
    assert resumed.history == full.history


def test_full_state_checkpoints_and_torn_log_line(tmp_path):
    """checkpoint_weights='all' stores the whole state dict; a torn last log line (killed writer) is dropped."""
    def build(seed):
        return PreSFT.from_backbone(build_backbone("llama", seed=seed), tokenizer_for("llama"))

    full_model = build(0)
    full = GRAGTrainer(full_model, config(max_steps=3), train_examples=EXAMPLES).train()
    cfg = config(max_steps=3, output_dir=str(tmp_path), checkpoint_weights="all")
    GRAGTrainer(build(0), cfg, train_examples=EXAMPLES).train(stop_after_step=1)
    with open(tmp_path / LOG_FILE, "a") as fh:  # records written after the checkpoint, the last one torn
        fh.write(json.dumps({"kind": "train", "step": 2, "loss": 0.0}) + "\n" + '{"kind": "tr')
    resumed_model = build(5)
    resumed = GRAGTrainer(resumed_model, cfg, train_examples=EXAMPLES).train(resume_from=latest_checkpoint(tmp_path))
    assert states_equal(resumed_model, full_model) and resumed.history == full.history
    assert [r for r in log_records(tmp_path)] == [{"kind": "train", **r} for r in full.history]


def test_resume_rejects_another_model_and_a_fresh_start_over_old_checkpoints(tmp_path):
    """(Other data and other settings are refused for every trainer: test_trainer_contract.py.)"""
    out = str(tmp_path / "run")
    model = PreSFT.from_backbone(build_backbone("bart"), tokenizer_for("bart"))
    GRAGTrainer(model, config(max_steps=2, output_dir=out), train_examples=EXAMPLES).train(stop_after_step=1)
    other = PostGRAG.from_backbone(build_backbone("bart"), tokenizer_for("bart"), extractor_heads=2)
    with pytest.raises(CheckpointError, match="model_class"):
        GRAGTrainer(other, config(max_steps=2, output_dir=out), train_examples=EXAMPLES).train(resume_from="latest")
    # a fresh start must not silently mix with an older run's checkpoints
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        GRAGTrainer(model, config(max_steps=2, output_dir=out), train_examples=EXAMPLES).train()
    result = GRAGTrainer(model, config(max_steps=2, output_dir=out, overwrite_output_dir=True),
                         train_examples=EXAMPLES).train()
    assert [r["step"] for r in log_records(Path(out))] == [1, 2] and result.completed
    # resuming a finished run is a no-op that returns its history
    again = GRAGTrainer(model, config(max_steps=2, output_dir=out), train_examples=EXAMPLES).train(resume_from="latest")
    assert again.history == result.history and again.global_step == 2


def test_checkpoint_layout_is_pinned(tmp_path):
    """Checkpoints of running multi-session benchmarks must stay readable: file names, weight keys, extra fields."""
    from safetensors import safe_open

    model = worker.build_bart_postgrag()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    out = tmp_path / "run"
    cfg = config(max_steps=2, output_dir=str(out), eval_steps=1, eval_metrics=["loss"], load_best_model_at_end=True)
    GRAGTrainer(model, cfg, train_examples=EXAMPLES, eval_examples=EXAMPLES[:2]).train()
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "checkpoint-00000002"
    assert sorted(p.name for p in ckpt.iterdir()) == ["modules", "optimizer.pt", "rng_state.pt", "scheduler.pt",
                                                      "trainer_state.json"]
    state = read_checkpoint_state(ckpt)
    assert state["modules"] == ["model"] and state["step"] == 2
    extra = state["extra"]
    assert list(extra) == ["trainer", "model_class", "config", "world_size", "n_examples", "examples_digest",
                           "total_steps", "data_position", "history", "eval_history", "pending_log", "train_seconds",
                           "train_cpu_seconds"]
    assert (extra["trainer"], extra["model_class"], extra["world_size"]) == ("grag", "PostGRAG", 1)
    assert (extra["n_examples"], extra["total_steps"], extra["pending_log"]) == (8, 2, {})
    assert extra["data_position"] == {"epoch": 0, "step_in_epoch": 2}
    assert extra["examples_digest"] == hashlib.sha256(
        b"".join(ex.model_dump_json().encode() + b"\n" for ex in EXAMPLES)).hexdigest()
    assert extra["config"] == cfg.to_dict()
    assert {"learning_rate", "final_lr_fraction", "warmup_steps", "weight_decay", "epochs", "max_steps", "batch_size",
            "gradient_accumulation_steps", "seed", "checkpoint_weights"} <= set(extra["config"])  # checked on resume
    with safe_open(str(ckpt / "modules" / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    trainable = {n.replace(".", "/") for n, p in model.named_parameters() if p.requires_grad}
    assert keys == {"params." + k for k in trainable} and not any("backbone" in k for k in keys)
    best = latest_checkpoint(out / "best")
    assert best is not None and read_checkpoint_state(best)["extra"]["metric"] == "loss_p"
    with safe_open(str(best / "modules" / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == keys


# ------------------------------------------------------------------------------ evaluation
def test_evaluate_bpc_matches_reference_scorer_and_text_metrics_match_evaluate_texts():
    """Decoder-only PreSFT is the plain LM on [BOS] P H cue -> response EOS; compare with personakit.eval."""
    model = PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama")).train()
    examples = EXAMPLES[:3]
    trainer = GRAGTrainer(model, config(eval_metrics=["char_f1", "rouge", "bleu", "bpc", "loss"], max_new_tokens=5),
                          train_examples=EXAMPLES)
    metrics = trainer.evaluate(examples)
    predictions = trainer.predict(examples)
    assert len(predictions) == 3 and all(isinstance(p, str) for p in predictions)
    expected = evaluate_texts(predictions, [ex.response for ex in examples], metrics=["char_f1", "rouge", "bleu"])
    for key, value in expected.items():
        assert metrics[key] == value

    coll = model.make_collator()
    contexts = []
    for ex in examples:  # the collator's prompt text: "persona: P" sep H sep "agent:"
        t = coll.texts(ex, separator="\n")
        contexts.append(f"persona: {t['persona']}\n{t['history']}\nagent:")
    lls = reference_log_likelihoods(model.backbone, model.tokenizer, [ex.response for ex in examples],
                                    contexts=contexts, append_eos=True)
    assert metrics["bpc"] == pytest.approx(bits_per_character(lls, [ex.response for ex in examples]), rel=1e-5)
    assert metrics["loss"] == pytest.approx(metrics["loss_p"]) and "loss_g" not in metrics
    assert model.training  # evaluation restores the training mode
    per_example = trainer.reference_log_likelihoods(examples)  # the public per-example form of the same numbers
    assert per_example == pytest.approx(lls, rel=1e-5) and model.training


def test_pregrag_decoder_only_trains_with_eval_and_saves(tmp_path):
    model = PreGRAG.from_backbone(build_backbone("llama"), tokenizer_for("llama"), beta=0.5)
    trainer = GRAGTrainer(model, config(max_steps=4, learning_rate=1e-2, eval_at_epoch_end=True,
                                        eval_metrics=["rouge", "loss"], max_new_tokens=3),
                          train_examples=EXAMPLES, eval_examples=EXAMPLES[:2])
    result = trainer.train()
    assert {"loss", "loss_p", "loss_cjepa"} <= set(result.history[0]) and "loss_g" not in result.history[0]
    assert result.history[-1]["loss_p"] < result.history[0]["loss_p"]
    assert [r["step"] for r in result.eval_history] == [4]  # epoch end (8 examples / 2 per step = 4 steps)
    assert set(result.final_metrics) == {"rouge1", "rouge2", "rougeL", "loss", "loss_p", "loss_cjepa"}
    path = trainer.save_model(tmp_path / "model")
    loaded = PreGRAG.from_pretrained(path)
    assert states_equal(loaded, model)


# ------------------------------------------------------------------------------ config
def test_config_validation_and_round_trip(tmp_path):
    cfg = GRAGTrainingConfig(output_dir="runs/x", eval_metrics=["rouge", "bpc"], eval_metric_options={"rouge": {}})
    path = tmp_path / "train.yaml"
    cfg.to_yaml(path)
    assert GRAGTrainingConfig.from_file(path) == cfg
    defaults = GRAGTrainingConfig()
    assert (defaults.learning_rate, defaults.final_lr_fraction, defaults.epochs) == (1e-4, 0.5, 20)
    assert defaults.eval_metrics == ["char_f1", "rouge", "bleu"]
    with pytest.raises(ValueError, match="unknown metric"):
        GRAGTrainingConfig(eval_metrics=["rouge", "perplexity"])
    with pytest.raises(ValueError, match="not a requested text metric"):
        GRAGTrainingConfig(eval_metrics=["rouge"], eval_metric_options={"bleu": {}})
    with pytest.raises(ValueError, match="final_lr_fraction"):
        GRAGTrainingConfig(final_lr_fraction=1.5)
    with pytest.raises(ValueError, match="typo"):
        GRAGTrainingConfig(typo=1)


def test_rejects_bad_inputs():
    model = PreSFT.from_backbone(build_backbone("bart"), tokenizer_for("bart"))
    with pytest.raises(ValueError, match="empty"):
        GRAGTrainer(model, config(), train_examples=[])
    with pytest.raises(TypeError, match=r"train_examples\[1\]"):
        GRAGTrainer(model, config(), train_examples=[EXAMPLES[0], {"id": "x"}])
    with pytest.raises(ValueError, match="output_dir"):
        GRAGTrainer(model, config(), train_examples=EXAMPLES).train(resume_from="latest")


# ------------------------------------------------------------------------------ plateau / best model
def _trainer_with_history(values, **overrides):
    cfg = config(eval_metrics=["loss"], early_stopping_patience=2, **overrides)
    trainer = GRAGTrainer(worker.build_bart_postgrag(), cfg, train_examples=EXAMPLES)
    trainer.eval_history = [{"step": i + 1, "loss_p": v} for i, v in enumerate(values)]
    return trainer


def test_plateau_rule_counts_evaluations_without_a_relative_improvement():
    assert not _trainer_with_history([3.0, 2.0, 1.0, 0.5]).plateau_reached()
    assert not _trainer_with_history([3.0, 2.0]).plateau_reached()  # not enough evaluations yet
    assert _trainer_with_history([3.0, 2.0, 2.5, 2.1]).plateau_reached()  # two evaluations not better than 2.0
    assert _trainer_with_history([3.0, 2.0, 1.99, 1.985]).plateau_reached()  # under 1% is not an improvement
    assert not _trainer_with_history([3.0, 2.0, 1.99, 1.97]).plateau_reached()  # 1.5% is
    assert not _trainer_with_history([3.0, 2.0, 1.99, 1.985], early_stopping_threshold=0.0).plateau_reached()
    best = _trainer_with_history([3.0, 2.0, 2.5, 2.1]).best_evaluation()
    assert best == {"step": 2, "loss_p": 2.0}
    up = _trainer_with_history([0.1, 0.3, 0.2, 0.25], metric_for_best_model="loss_p", greater_is_better=True)
    assert up.best_evaluation()["step"] == 2 and up.plateau_reached()


def test_best_metric_must_be_evaluated():
    with pytest.raises(ValueError, match="metric_for_best_model"):
        config(eval_metrics=["char_f1"], early_stopping_patience=2)
    config(eval_metrics=["rouge"], early_stopping_patience=2, metric_for_best_model="rouge1")


def test_early_stopping_ends_on_a_plateau_and_restores_the_best_weights(tmp_path):
    """A learning rate far too large makes the dev loss rise: training stops after `patience` evaluations
    without improvement and the model holds the weights of the best evaluation (= a run stopped there)."""
    cfg = dict(max_steps=40, eval_steps=2, eval_metrics=["loss"], early_stopping_patience=2, learning_rate=0.5,
               load_best_model_at_end=True, save_steps=100)
    model = worker.build_bart_postgrag()
    out = tmp_path / "es"
    result = GRAGTrainer(model, config(output_dir=str(out), **cfg), train_examples=EXAMPLES,
                         eval_examples=EXAMPLES[:3]).train()
    assert result.stopped_early and result.completed and result.global_step < 40
    losses = [r["loss_p"] for r in result.eval_history]
    assert result.best_metric == min(losses) and result.best_step == result.eval_history[losses.index(min(losses))]["step"]
    assert result.global_step == result.eval_history[-1]["step"]
    assert result.final_metrics["loss_p"] == result.best_metric
    assert (out / "best").is_dir()

    ref_model = worker.build_bart_postgrag()
    GRAGTrainer(ref_model, config(output_dir=str(tmp_path / "ref"), **cfg), train_examples=EXAMPLES,
                eval_examples=EXAMPLES[:3]).train(stop_after_step=result.best_step)
    assert states_equal(model, ref_model)

    # a resumed run is already over: nothing trains, and the best weights come back from disk
    again_model = worker.build_bart_postgrag(seed=3)
    again = GRAGTrainer(again_model, config(output_dir=str(out), **cfg), train_examples=EXAMPLES,
                        eval_examples=EXAMPLES[:3]).train(resume_from="latest")
    assert again.stopped_early and again.global_step == result.global_step
    assert states_equal(again_model, model)


# ------------------------------------------------------------------------------ attention kernel
def test_attn_implementation_switches_for_training_only_and_gives_the_same_training():
    """Eager attention during train() (evaluation included), the former kernel back afterwards; the losses
    match SDPA's up to float rounding (fp32, a dropout-free tiny Llama PostGRAG)."""
    seen = []

    class Watch(TrainerCallback):
        def on_step_end(self, trainer, step):
            seen.append(trainer.model.base_model.config._attn_implementation)

    model_sdpa, model_eager = worker.build_llama_postgrag(), worker.build_llama_postgrag()
    assert model_eager.base_model.config._attn_implementation == "sdpa"
    sdpa = GRAGTrainer(model_sdpa, config(eval_steps=2, eval_metrics=["loss", "bpc"]), train_examples=EXAMPLES, eval_examples=EXAMPLES[:2]).train()
    eager = GRAGTrainer(model_eager, config(eval_steps=2, eval_metrics=["loss", "bpc"], attn_implementation="eager"), train_examples=EXAMPLES,
                        eval_examples=EXAMPLES[:2], callbacks=[Watch()]).train()
    assert seen == ["eager"] * 4
    assert model_eager.base_model.config._attn_implementation == "sdpa"  # restored
    for a, b in zip(sdpa.history, eager.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert len(sdpa.eval_history) == len(eager.eval_history) == 2
    for a, b in zip(sdpa.eval_history, eager.eval_history):
        assert a["loss_p"] == pytest.approx(b["loss_p"], rel=1e-4)
    with pytest.raises(ValueError):
        config(attn_implementation="flash")
