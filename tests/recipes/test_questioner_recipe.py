"""The questioner recipe end to end on tiny random backbones and a stand-in sentence encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _questioner_kit import build_lm, build_tokenizer, make_examples
from personakit.augment import save_examples
from personakit.recipes.questioner import QuestionerRecipeConfig, questioner_diversity, run_questioner_recipe

REPO = Path(__file__).resolve().parents[2]


def _encoder(texts):
    return torch.tensor([[float("donate" in t or "charity" in t), float("how" in t or "hello" in t), 0.1]
                         for t in texts])


def test_recipe_runs_and_writes_results(tmp_path):
    save_examples(tmp_path / "train.jsonl", make_examples(16))
    save_examples(tmp_path / "test.jsonl", make_examples(8))
    cfg = QuestionerRecipeConfig.from_dict({
        "data": {"source": "examples", "train_path": str(tmp_path / "train.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl")},
        "clusterer": {"num_clusters": 2},
        "systems": [{"kind": "lora"}, {"kind": "dual-tower", "settings": {"rank": 4, "init_scale": 1.0}},
                    {"kind": "dual-tower", "name": "no contrastive", "settings": {"rank": 4, "contrastive_weight": 0}},
                    {"kind": "persona-prompt"}],
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_new_tokens": 3,
                     "eval_metrics": ["loss"], "progress": False},
        "eval": {"diversity_inputs": 3, "diversity_questioners": 3},
        "output_dir": str(tmp_path / "out"), "device": "cpu",
    })
    results = run_questioner_recipe(cfg, backbone=lambda: (build_lm(), build_tokenizer()), clusterer_encoder=_encoder,
                                    progress=False)
    assert set(results.rows) == {"LoRA", "Dual-tower", "no contrastive", "Persona-in-prompt"}
    for row in results.rows.values():
        assert {"rougeL", "bleu", "diversity"} <= set(row)
    assert results.rows["LoRA"]["diversity"] == 0.0  # it cannot see the questioner
    assert results.costs["LoRA"]["added_params_per_layer"] == 0
    assert results.costs["Dual-tower"]["added_params_per_layer"] == 3 * 16 * 4 + 16
    assert results.costs["LoRA"]["step_time_vs_lora"] == 1.0
    assert "loss_contrastive" in results.training["Dual-tower"]["history"][-1]
    assert "loss_contrastive" not in results.training["no contrastive"]["history"][-1]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["sizes"]["questioners"] == 4 and data["sizes"]["clusters"] == 2
    assert "step time vs LoRA" in (tmp_path / "out" / "results.md").read_text()
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 8 and "Dual-tower" in json.loads(lines[0])["predictions"]


def test_diversity_measure():
    assert questioner_diversity([["a b c", "a b c", "a b c"]]) == 0.0
    assert questioner_diversity([["a b", "c d"]]) == 1.0


@pytest.mark.parametrize("name", ["questioner.yaml", "questioner_tiny.yaml"])
def test_shipped_configs_load(name):
    cfg = QuestionerRecipeConfig.from_yaml(REPO / "examples" / "configs" / name)
    assert any(s.kind == "dual-tower" for s in cfg.systems)
    assert QuestionerRecipeConfig.from_yaml(cfg.to_yaml()) == cfg


def test_config_errors():
    with pytest.raises(ValueError, match="unknown kind"):
        QuestionerRecipeConfig(systems=[{"kind": "gpt"}])
    with pytest.raises(ValueError, match="unique"):
        QuestionerRecipeConfig(systems=[{"kind": "lora"}, {"kind": "lora"}])
    with pytest.raises(ValueError, match="needs path"):
        QuestionerRecipeConfig(data={"source": "pfg"})
    with pytest.raises(ValueError, match=r"settings: unknown field 'rnak' of DualTowerConfig \(did you mean 'rank'\?\)"):
        QuestionerRecipeConfig(systems=[{"kind": "dual-tower", "settings": {"rnak": 4}}])
    with pytest.raises(ValueError, match=r"field 'questioners' is set by the caller"):
        QuestionerRecipeConfig(systems=[{"kind": "dual-tower", "settings": {"questioners": ["a"]}}])
