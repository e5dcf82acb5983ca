"""The questioner recipe: end to end on tiny random backbones and a stand-in sentence encoder, its configs,
its results files, and one run of the shipped tiny config with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _questioner_kit import build_lm, build_tokenizer, make_examples
from personakit.augment import save_examples
from personakit.config import ConfigError
from personakit.recipes.base import load_recipe_config, packaged_configs, score_test_set
from personakit.recipes.questioner import (
    QuestionerDataConfig,
    QuestionerRecipeConfig,
    QuestionerRecipeResults,
    load_questioner_splits,
    questioner_diversity,
    run_questioner_recipe,
)

FILES = ("results.md", "results.json", "predictions.jsonl", "manifest.json")


def _encoder(texts):
    return torch.tensor([[float("donate" in t or "charity" in t), float("how" in t or "hello" in t), 0.1]
                         for t in texts])


def _evaluate_rows(path: Path, capsys) -> dict:
    from personakit.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(path), "--json", "--metrics", "rouge"]) == 0
    return json.loads(capsys.readouterr().out)


def test_recipe_runs_and_writes_results(tmp_path, capsys):
    save_examples(tmp_path / "train.jsonl", make_examples(16))
    save_examples(tmp_path / "test.jsonl", make_examples(8))
    save_examples(tmp_path / "extra.jsonl", make_examples(6))
    cfg = QuestionerRecipeConfig.from_dict({
        "data": {"source": "examples", "train_path": str(tmp_path / "train.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl"),
                 "test_sets": {"extra": str(tmp_path / "extra.jsonl"), "fit": {"split": "train",
                                                                                         "max_examples": 4}}},
        "clusterer": {"num_clusters": 2},
        "systems": [{"kind": "lora"}, {"kind": "dual-tower", "settings": {"rank": 4, "init_scale": 1.0}},
                    {"kind": "dual-tower", "name": "no contrastive", "settings": {"rank": 4, "contrastive_weight": 0}},
                    {"kind": "persona-prompt"}],
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_new_tokens": 3,
                     "eval_metrics": ["loss"], "progress": False},
        "eval": {"diversity_inputs": 3, "diversity_questioners": 3},
        "output_dir": str(tmp_path / "out"), "device": "cpu", "save_models": True, "dtype": "bfloat16",
    })
    results = run_questioner_recipe(cfg, backbone=lambda: (build_lm(), build_tokenizer()), clusterer_encoder=_encoder,
                                    progress=False)
    # the frozen base trains in bf16 under fp32 adapters (the specific encoders too)
    assert {c["frozen_dtype"] for c in results.costs.values()} == {"bfloat16"}
    assert "| LoRA | bfloat16 |" in results.cost_table()
    systems = {"LoRA", "Dual-tower", "no contrastive", "Persona-in-prompt"}
    assert set(results.rows) == systems
    for row in results.rows.values():
        assert {"rougeL", "bleu", "diversity"} <= set(row)
    assert results.rows["LoRA"]["diversity"] == 0.0  # it cannot see the questioner
    assert results.costs["LoRA"]["added_params_per_layer"] == 0
    assert results.costs["Dual-tower"]["added_params_per_layer"] == 3 * 16 * 4 + 16
    assert results.costs["LoRA"]["step_time_vs_lora"] == 1.0
    assert results.training["Dual-tower"]["seconds"] > 0 and results.timings["train_dual-tower_s"] > 0
    assert "loss_contrastive" in results.training["Dual-tower"]["history"][-1]
    assert "loss_contrastive" not in results.training["no contrastive"]["history"][-1]
    # the extra test sets are scored (no diversity there) and compared with the LoRA baseline
    assert list(results.test_sets) == ["test", "extra", "fit"]
    assert len(results.test_sets["extra"].ids) == 6 and len(results.test_sets["fit"].ids) == 4
    assert set(results.test_sets["extra"].rows) == systems and "diversity" not in results.test_sets["extra"].rows["LoRA"]
    sig = results.test_sets["extra"].significance["Dual-tower"]["rougeL"]
    assert {"p_value", "ci_low", "ci_high", "mean_difference"} <= set(sig)
    assert results.output_dir == tmp_path / "out"
    for name in FILES:
        assert (tmp_path / "out" / name).is_file()
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["sizes"]["questioners"] == 4 and data["sizes"]["clusters"] == 2
    assert data["details"]["clusters"]["num_clusters"] == 2 and "LoRA" in data["details"]["costs"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "step time vs LoRA" in md and "## Question clusters" in md
    assert "## Test set: extra (6 examples)" in md and "## Test set: fit (4 examples)" in md
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 * (8 + 6 + 4)
    first = records[0]
    assert first["test_set"] == "test" and first["system"] == "LoRA" and first["questioner_id"]
    assert {"id", "prediction", "reference", "question", "responder_id"} <= set(first)
    assert {r["test_set"] for r in records} == {"test", "extra", "fit"}
    rows = _evaluate_rows(tmp_path / "out" / "predictions.jsonl", capsys)
    assert set(rows) == {f"{t} / {s}" for t in ("test", "extra", "fit") for s in systems}
    from personakit.models.questioner import DualTowerResponder

    saved = DualTowerResponder.from_pretrained(tmp_path / "out" / "models" / "dual-tower" / "final").eval()
    assert saved.questioners == ["ann", "bob", "cat", "dan"]
    # the tutorial's step 5: the saved model answers one test input as different questioners, an unknown one too
    example = make_examples(8)[0]
    for who in saved.questioners[:3] + ["someone new"]:
        reply = saved.respond([example], questioner_id=who, max_new_tokens=3, do_sample=False)
        assert len(reply) == 1 and isinstance(reply[0], str)
    # the folders are the systems' labels in lower case with hyphens ("Dual-tower" -> dual-tower)
    assert (tmp_path / "out" / "models" / "lora" / "final").is_dir()
    assert (tmp_path / "out" / "models" / "no-contrastive" / "final").is_dir()
    assert not (tmp_path / "out" / "models" / "persona-in-prompt").exists()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["recipe"] == "questioner" and str(tmp_path / "train.jsonl") in manifest["data_files"]


def _results(tmp_path) -> QuestionerRecipeResults:
    refs = ["i am fine thanks", "yes i like to help", "save the children"]
    ts = score_test_set("test", ["a", "b", "c"], refs,
                        {"LoRA": ["i am fine", "yes", "save them"], "Dual-tower": refs},
                        ["rouge"], baseline="LoRA", compare=["rougeL"],
                        extra_rows={"LoRA": {"diversity": 0.0}, "Dual-tower": {"diversity": 0.4}},
                        inputs=[{"questioner_id": q, "question": "how are you"} for q in ("ann", "bob", "cat")])
    return QuestionerRecipeResults(
        recipe="questioner", config={"output_dir": str(tmp_path / "cfg-out")}, test_sets={"test": ts},
        timings={"total_s": 1.0}, sizes={"train": 9, "test": 3, "diversity_inputs": 3, "diversity_questioners": 2},
        details={"costs": {"LoRA": {"added_params_per_layer": 0, "trainable_params": 10, "step_s": 0.5,
                                    "step_time_vs_lora": 1.0},
                           "Dual-tower": {"added_params_per_layer": 80, "trainable_params": 90, "step_s": 0.75,
                                          "step_time_vs_lora": 1.5, "frozen_dtype": "bfloat16"}},
                 "clusters": {"num_clusters": 2, "train_sizes": {"0": 5, "1": 4}, "test_sizes": {"0": 3},
                              "examples": {"0": ["how are you"], "1": ["will you | donate"]}}})


def test_results_save_and_evaluate(tmp_path, capsys):
    results = _results(tmp_path)
    out = results.save(tmp_path / "run")
    assert isinstance(out, Path) and out == tmp_path / "run" == results.output_dir
    for name in FILES:
        assert (out / name).is_file()
    assert results.save() == tmp_path / "cfg-out"  # default: the config's output_dir
    md = (out / "results.md").read_text()
    assert "| Dual-tower | bfloat16 | 80 | 90 | 0.750 | 1.50 |" in md
    assert "| LoRA | float32 | 0 | 10 |" in md  # results written before the dtype was recorded
    assert "will you \\| donate" in md and "diversity" in md
    rows = _evaluate_rows(out / "predictions.jsonl", capsys)
    assert set(rows) == {"LoRA", "Dual-tower"}
    assert rows["Dual-tower"]["rougeL"] == pytest.approx(1.0)
    assert json.loads((out / "results.json").read_text())["test_sets"]["test"]["significance"]["Dual-tower"][
        "rougeL"]["p_value"] is not None


def test_diversity_measure():
    assert questioner_diversity([["a b c", "a b c", "a b c"]]) == 0.0
    assert questioner_diversity([["a b", "c d"]]) == 1.0


def test_builtin_splits_know_every_test_questioner():
    train, test = load_questioner_splits(QuestionerDataConfig(source="builtin"))
    assert len(train) == 113 and len(test) == 40
    assert {ex.questioner_id for ex in test} <= {ex.questioner_id for ex in train}
    assert all(ex.user_persona is not None and ex.history[-1].speaker == "user" for ex in train)


def test_shipped_configs_load():
    assert {"tiny", "default"} <= set(packaged_configs("questioner"))
    tiny = load_recipe_config("questioner", "tiny")
    assert tiny.data.source == "builtin" and tiny.output_dir is None
    assert any(s.kind == "dual-tower" for s in tiny.systems)
    assert QuestionerRecipeConfig.from_yaml(tiny.to_yaml()) == tiny
    default = load_recipe_config("questioner", "default")  # tests/_shared.py sets PERSONAKIT_DATA
    assert default.data.source == "pfg" and default.data.path.endswith("persuasionforgood/FullData")
    shrunk = load_recipe_config("questioner", "tiny", overrides=["training.max_steps=1", "save_models=true"],
                                output_dir="somewhere")
    assert shrunk.training.max_steps == 1 and shrunk.save_models and Path(shrunk.output_dir).is_absolute()


def test_config_errors():
    with pytest.raises(ValueError, match="unknown kind"):
        QuestionerRecipeConfig(systems=[{"kind": "gpt"}])
    with pytest.raises(ValueError, match="unique"):
        QuestionerRecipeConfig(systems=[{"kind": "lora"}, {"kind": "lora"}])
    with pytest.raises(ValueError, match="needs path"):
        QuestionerRecipeConfig(data={"source": "pfg"})
    with pytest.raises(ValueError, match="reads no file"):
        QuestionerRecipeConfig(data={"source": "builtin", "path": "x"})
    with pytest.raises(ValueError, match="either path"):
        QuestionerRecipeConfig(data={"source": "builtin", "test_sets": {"x": {}}})
    with pytest.raises(ValueError, match="split 'dev' exists for source 'pfg' only"):
        QuestionerRecipeConfig(data={"source": "builtin", "test_sets": {"x": {"split": "dev"}}})
    with pytest.raises(ValueError, match="eval.baseline"):
        QuestionerRecipeConfig(eval={"baseline": "nobody"})
    with pytest.raises(ValueError, match=r"settings: unknown field 'rnak' of DualTowerConfig \(did you mean 'rank'\?\)"):
        QuestionerRecipeConfig(systems=[{"kind": "dual-tower", "settings": {"rnak": 4}}])
    with pytest.raises(ValueError, match=r"field 'questioners' is set by the caller"):
        QuestionerRecipeConfig(systems=[{"kind": "dual-tower", "settings": {"questioners": ["a"]}}])


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("systems:\n  - kind: dual-tower\n    settings: {rnak: 4}\n", r"systems\.0.*'rnak'.*did you mean 'rank'"),
    ("data:\n  source: builtin\n  max_tset: 3\n", r"data\.max_tset"),
    ("eval:\n  diversity_input: 3\n", r"eval\.diversity_input"),
])
def test_misspelt_key_fails_at_load(tmp_path, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=field) as err:
        load_recipe_config("questioner", path)
    assert str(path) in str(err.value)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cfgs"
    (folder / "data").mkdir(parents=True)
    (folder / "run.yaml").write_text(
        "data:\n  source: examples\n  train_path: data/train.jsonl\n  test_path: ${PK_Q_TEST:-data/test.jsonl}\n"
        "output_dir: out\n")
    monkeypatch.chdir(tmp_path)  # elsewhere
    cfg = load_recipe_config("questioner", folder / "run.yaml")
    assert cfg.data.train_path == str(folder / "data" / "train.jsonl")
    assert cfg.data.test_path == str(folder / "data" / "test.jsonl")
    assert cfg.output_dir == str(folder / "out")
    # --set paths resolve against the current folder
    cfg = load_recipe_config("questioner", folder / "run.yaml", overrides=["data.train_path=mine.jsonl"])
    assert cfg.data.train_path == str(tmp_path / "mine.jsonl")


def test_relative_test_set_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "run.yaml").write_text("data:\n  source: builtin\n  test_sets:\n    extra: {path: data/extra.jsonl}\n"
                                     "    bare: data/bare.jsonl\n    fit: {split: train, max_examples: 5}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe_config("questioner", folder / "run.yaml")
    assert cfg.data.test_sets["extra"].path == str(folder / "data" / "extra.jsonl")
    assert cfg.data.test_sets["bare"].path == str(folder / "data" / "bare.jsonl")
    assert cfg.data.test_sets["bare"].format == "examples" and cfg.data.test_sets["fit"].path is None


@pytest.mark.real_model
@pytest.mark.slow
def test_tiny_config_runs_from_the_command_line(tmp_path, capsys):
    from personakit.cli import main

    out = tmp_path / "run"
    shrink = ["data.max_test=2", "training.max_steps=1", "training.batch_size=2", "training.max_new_tokens=8",
              "inputs.max_prompt_tokens=64", "eval.diversity_inputs=2", "eval.diversity_questioners=2",
              "clusterer.num_clusters=2"]
    assert main(["run", "questioner", "--config", "tiny", *[a for s in shrink for a in ("--set", s)],
                 "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "# Questioner-aware responder" in printed and str(out) in printed
    for name in FILES:
        assert (out / name).is_file()
    rows = _evaluate_rows(out / "predictions.jsonl", capsys)
    assert set(rows) == {"LoRA", "Dual-tower", "Persona-in-prompt"}
