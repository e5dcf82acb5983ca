"""benchmarks/bf16_speed.py without the real models: its result names, batches, reports, and the
questioner systems' fp32 / bf16 side-by-side loop on a tiny random Llama."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

from _questioner_kit import build_lm, build_tokenizer, make_examples

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
bf16_speed = pytest.importorskip("bf16_speed")


def test_result_name_keeps_the_grag_results_apart():
    assert bf16_speed.result_name(["PreSFT(Hist)", "PostGRAG"]) == "bf16_speed"
    assert bf16_speed.result_name(["questioner-lora", "questioner-dual-tower"]) == "questioner_bf16_speed"
    assert bf16_speed.result_name(["questioner-lora", "PostGRAG"]) == "bf16_speed"
    assert bf16_speed.result_name(["questioner-lora"], "mine") == "mine"
    assert set(bf16_speed.QUESTIONER_SYSTEMS) <= set(bf16_speed.SYSTEMS)


def test_full_batches_skip_short_steps():
    steps = {0: [0, 1, 2], 1: [3], 2: [4, 5, 6], 3: [7, 8, 9]}
    assert bf16_speed.full_batches(steps.__getitem__, 3, 3) == [[0, 1, 2], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="only 1 steps"):
        bf16_speed.full_batches(lambda step: [step] * (3 if step == 0 else 2), 3, 2, max_steps=5)


def test_term_curves_compare_the_terms_every_step_has():
    t32 = [{"loss": 2.0, "loss_lm": 1.0, "loss_contrastive": 2.0, "contrastive_valid": 1.0},
           {"loss": 2.0, "loss_lm": 1.0, "contrastive_valid": 1.0}]
    t16 = [{"loss": 2.0, "loss_lm": 1.01, "loss_contrastive": 2.0, "contrastive_valid": 1.0},
           {"loss": 2.0, "loss_lm": 1.01, "contrastive_valid": 1.0}]
    curves = bf16_speed._term_curves(t32, t16)
    assert list(curves) == ["loss_lm"]
    assert curves["loss_lm"]["final_rel_diff"] == pytest.approx(0.01) and curves["loss_lm"]["within_tolerance"]
    assert bf16_speed._term_curves([], []) == {}


def test_committed_grag_report_renders():
    report = json.loads((BENCHMARKS / "results" / "bf16_speed.json").read_text(encoding="utf-8"))
    md = bf16_speed.to_markdown(report)
    assert "alpha 32" in md and "## (b) Generation" in md and "## Summary" in md
    assert "| PreSFT(Hist) | 7.078 | 4.748 | 0.67x | yes (final gap 0.05 %) |" in md


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"seed": 0, "steps": 3, "warmup": 1, "batch_size": 4, "lr": None,
                                 "system_lr": 1e-3, **kw})


def _questioner_config():
    from personakit.recipes.questioner import QuestionerRecipeConfig

    return QuestionerRecipeConfig.from_dict({
        "systems": [{"kind": "lora"}, {"kind": "dual-tower", "settings": {
            "rank": 4, "num_views": 2, "contrastive_weight": 0.5, "temperature": 0.01}}],
        "inputs": {"max_prompt_tokens": 16, "max_response_tokens": 6},
        "training": {"batch_size": 8, "learning_rate": 1e-3, "max_steps": 3}})


@pytest.mark.parametrize("label", ["questioner-lora", "questioner-dual-tower"])
def test_questioner_systems_run_side_by_side(label):
    """Both precisions train on the trainer's cluster-grouped batches; bf16 keeps the trainable part in fp32."""
    base, tok = build_lm(), build_tokenizer()
    train = make_examples(16)
    args = _args()
    reference, collated, info = bf16_speed.build_questioner(label, base, tok, _questioner_config(), train, args)
    assert len(collated) == 3 and all(b["input_ids"].size(0) == 4 for b in collated)
    assert info["clusters_per_batch"] == [1, 1, 1]  # QuestionerTrainer groups each batch by question cluster
    assert info["kind"] == bf16_speed.QUESTIONER_SYSTEMS[label] and info["lr"] == 1e-3
    assert (info["added_parameters_per_layer"] > 0) == (label == "questioner-dual-tower")
    out = bf16_speed.interleave(label, reference, collated, args, info)
    p32, p16 = out["precisions"]["fp32"], out["precisions"]["bf16"]
    assert p32["error"] is None and p16["error"] is None, (p32["error"], p16["error"])
    assert len(p32["losses"]) == len(p16["losses"]) == 3 and p32["timed_steps"] == 2
    assert p32["parameter_dtypes"] == ["float32"] and p16["parameter_dtypes"] == ["bfloat16", "float32"]
    assert out["curves"]["steps_compared"] == 3 and "loss_lm" in out["term_curves"]
    if label == "questioner-dual-tower":
        assert "loss_contrastive" in p32["loss_terms"][0]
    # the reference keeps fp32 weights: the bf16 model is a cast copy
    assert all(p.dtype == torch.float32 for p in reference.parameters())


def test_questioner_report_renders_without_generation():
    run = {"error": None, "trainable_parameters": 10, "parameter_dtypes": ["float32"], "median_step_s": 2.0,
           "mean_step_s": 2.0, "timed_steps": 2, "train_s": 6.0, "losses": [3.0, 2.9, 2.8],
           "loss_terms": [], "step_times_s": [2.0] * 3}
    system = {"system": "questioner-dual-tower", "kind": "dual-tower", "lr": 5e-4,
              "settings": {"rank": 16, "num_views": 2}, "precisions": {"fp32": run, "bf16": {**run, "median_step_s": 1.5}},
              "step_ratio_bf16_fp32": 0.75, "curves": bf16_speed.compare_curves([3.0, 2.9, 2.8], [3.0, 2.9, 2.9]),
              "term_curves": {"loss_lm": bf16_speed.compare_curves([3.0, 2.9, 2.8], [3.0, 2.9, 2.8]),
                              "loss_contrastive": bf16_speed.compare_curves([1e-9, 1e-10, 1e-11], [1e-9, 1e-10, 2e-11])}}
    report = {"precision": {"cpu": "X", "amx_bf16": True, "avx512_bf16": True, "auto_dtype": "bfloat16",
                            "env_override": None},
              "setting": {"batch_size": 8, "steps": 3, "warmup": 1}, "lr": 1e-4, "threads": 2,
              "load_at_start": [0.5], "train_examples": 0, "lora": bf16_speed.LORA,
              "questioner": {"config": "tiny", "train_examples": 113, "questioners": 40, "clusters": 4,
                             "inputs": {"max_prompt_tokens": 96}, "learning_rate": 5e-4,
                             "lora": {"r": 16, "lora_alpha": 32}},
              "systems": [system], "generation": None, "plot": None, "date": "today",
              "machine": {"cpu": "X", "cpu_count": 2, "platform": "linux", "python": "3.12"},
              "wall_time_s": 1.0, "command": "python benchmarks/bf16_speed.py"}
    md = bf16_speed.to_markdown(report)
    assert "`amx_bf16` yes" in md and "GRAG's extra modules" not in md and "lr 0.0005" in md
    assert "| questioner-dual-tower | 2.000 | 1.500 | 0.75x | **no** (final gap 3.57 %) |" in md
    assert "Not run" in md and "| questioner-dual-tower | `loss_lm` | 2.8 | 2.8 | 0.00 % | yes |" in md
    assert "| questioner-dual-tower | `loss_contrastive` | 1e-11 | 2e-11 | 100.00 % | – (near zero) |" in md
    assert bf16_speed.speedups(report) == [("questioner-dual-tower\ntraining step", pytest.approx(2.0 / 1.5))]
