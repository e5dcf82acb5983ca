"""The recipe skeleton (``personakit.recipes.base``): config loading, stages, scoring, results, manifest, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import pytest
from pydantic import Field, model_validator

from personakit.config import BaseConfig, ConfigError
from personakit.recipes import base
from personakit.recipes.base import (
    PathField,
    RecipeConfig,
    RecipeResults,
    Stages,
    apply_overrides,
    expand_path,
    load_recipe_config,
    resolve_config_paths,
    run_manifest,
    score_test_set,
    subsample,
)


class _Data(BaseConfig):
    path: Optional[str] = PathField(None, description="A file.")
    files: list[str] = Field(default_factory=list, description="Not a path field: left alone.")
    max_items: int = Field(3, ge=1, description="Items.")


class _System(BaseConfig):
    name: str = Field(..., description="Label.")
    weights: Optional[str] = PathField(None, description="A weights file.")


class _Cfg(RecipeConfig):
    recipe = "toy"
    data: _Data = Field(default_factory=_Data, description="Data.")
    systems: list[_System] = Field(default_factory=list, description="Systems.")
    test_sets: dict[str, str] = Field(default_factory=dict, description="Extra test sets (not path-marked).")


# ------------------------------------------------------------------------------ config loading
def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "run.yaml").write_text("data:\n  path: data/train.jsonl\n  files: [keep/as/is]\n"
                                     "systems:\n  - {name: a, weights: ../w.safetensors}\noutput_dir: out\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe_config(_Cfg, folder / "run.yaml")
    assert cfg.data.path == str(folder / "data" / "train.jsonl")
    assert cfg.systems[0].weights == str(tmp_path / "w.safetensors")
    assert cfg.output_dir == str(folder / "out")
    assert cfg.data.files == ["keep/as/is"]


def test_overrides_resolve_against_the_current_folder_and_are_validated(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("data: {max_items: 2}\nsystems: [{name: a}, {name: b}]\n")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_recipe_config(_Cfg, tmp_path / "c.yaml",
                             overrides=["data.path=x.jsonl", "systems.1.name=B", "seed=4"], output_dir="o")
    assert cfg.data.path == str(elsewhere / "x.jsonl")
    assert [s.name for s in cfg.systems] == ["a", "B"] and cfg.seed == 4
    assert cfg.output_dir == str(elsewhere / "o")
    with pytest.raises(ConfigError, match=r"data\.max_itemz"):
        load_recipe_config(_Cfg, tmp_path / "c.yaml", overrides=["data.max_itemz=3"])
    with pytest.raises(ConfigError, match="max_items"):
        load_recipe_config(_Cfg, tmp_path / "c.yaml", overrides=["data.max_items=0"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_recipe_config(_Cfg, tmp_path / "c.yaml", overrides=["seed"])
    with pytest.raises(ConfigError, match="list of 2"):
        load_recipe_config(_Cfg, tmp_path / "c.yaml", overrides=["systems.5.name=x"])


def test_a_misspelt_key_in_the_file_fails_at_load_naming_file_and_field(tmp_path):
    (tmp_path / "bad.yaml").write_text("data:\n  max_itemz: 2\n")
    with pytest.raises(ConfigError) as err:
        load_recipe_config(_Cfg, tmp_path / "bad.yaml")
    assert "bad.yaml" in str(err.value) and "data.max_itemz" in str(err.value)


def test_environment_variables_expand_and_an_unset_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PK_TEST_DATA", str(tmp_path / "d"))
    assert expand_path("${PK_TEST_DATA}/a.jsonl", Path("/elsewhere")) == str(tmp_path / "d" / "a.jsonl")
    monkeypatch.delenv("PK_TEST_UNSET", raising=False)
    assert expand_path("${PK_TEST_UNSET:-rel}/a", Path("/base")) == "/base/rel/a"
    with pytest.raises(ConfigError, match="PK_TEST_UNSET"):
        expand_path("${PK_TEST_UNSET}/a", None, "data.path")


def test_resolve_config_paths_leaves_wrong_types_for_validation():
    raw = {"data": {"path": 3}, "systems": "not a list"}
    assert resolve_config_paths(raw, _Cfg, Path("/b")) == raw


def test_apply_overrides_parses_yaml_values_and_does_not_touch_its_input():
    data = {"a": {"b": 1}}
    out = apply_overrides(data, ["a.b=3e-4", "a.c=true", "d=[x, y]", "e="])
    assert out == {"a": {"b": 3e-4, "c": True}, "d": ["x", "y"], "e": None}
    assert data == {"a": {"b": 1}}
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_shipped_configs_are_found_by_name_and_unknown_names_list_them():
    for recipe in ("grag", "questioner", "copersona", "ropg"):
        assert {"tiny", "default"} <= set(base.packaged_configs(recipe))
    with pytest.raises(ConfigError, match="shipped: default, tiny"):
        base.find_config("grag", "tinyy")


def test_default_output_dir_is_timestamped_under_runs(monkeypatch, tmp_path):
    from datetime import datetime, timezone

    assert base.default_output_dir("grag", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == \
        Path("runs/grag/20260102-030405")
    cfg = _Cfg()
    out = base.output_dir_of(cfg)
    assert out.parts[:2] == ("runs", "toy") and cfg.output_dir == str(out)


# ------------------------------------------------------------------------------ helpers
def test_subsample_is_seeded_and_keeps_order():
    items = list(range(50))
    a, b = subsample(items, 10, seed=3), subsample(items, 10, seed=3)
    assert a == b == sorted(a) and len(set(a)) == 10
    assert subsample(items, 10, seed=4) != a
    assert subsample(items, None, 0) == items and subsample(items, 99, 0) == items


def test_stages_time_blocks_and_print_only_when_asked(capsys):
    quiet = Stages("x", progress=False)
    with quiet("train", "training"):
        pass
    quiet.add("train", 2.0)
    assert quiet.timings["train_s"] >= 2.0 and "total_s" in quiet.total()
    assert capsys.readouterr().out == ""
    loud = Stages("x", progress=True)
    loud.log("hello")
    assert "hello" in capsys.readouterr().out


# ------------------------------------------------------------------------------ scoring and results
def _scored(**kw):
    refs = ["the cat sat on the mat", "i like green apples", "we went to the sea", "it rains a lot here"]
    preds = {"base": ["a dog", "i like red cars", "we stayed home", "sunny today"],
             "ours": ["the cat sat on a mat", "i like green apples", "we went to the sea", "it rains here"]}
    return score_test_set("test", ["a", "b", "c", "d"], refs, preds, metrics=["rouge", "bleu"], baseline="base",
                          compare=["rougeL", "bleu"], n_resamples=500, inputs=[{"question": "q"}] * 4, **kw)


def test_score_test_set_compares_with_the_baseline_on_per_example_scores():
    ts = _scored()
    assert set(ts.rows) == {"base", "ours"} and ts.rows["ours"]["rougeL"] > ts.rows["base"]["rougeL"]
    assert len(ts.per_example["ours"]["rougeL"]) == 4
    sig = ts.significance["ours"]["rougeL"]
    assert sig["mean_difference"] > 0 and sig["ci_low"] <= sig["mean_difference"] <= sig["ci_high"]
    assert "base" not in ts.significance
    with pytest.raises(ValueError, match="no metric gives per-example 'meteor'"):
        score_test_set("t", ["a"], ["x"], {"s": ["x"]}, metrics=["rouge"], compare=["meteor"])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        score_test_set("t", ["a"], ["x"], {"s": ["x", "y"]}, metrics=["rouge"])


def test_results_save_writes_four_files_that_evaluate_reads(tmp_path, capsys):
    from personakit.cli import main

    other = score_test_set("convai2", ["x"], ["hello there"], {"base": ["hi"], "ours": ["hello there"]},
                           metrics=["rouge"])
    results = RecipeResults(recipe="toy", config={"seed": 0}, test_sets={"test": _scored(), "convai2": other},
                            timings={"train_s": 1.0, "total_s": 2.0}, sizes={"train": 3},
                            manifest=run_manifest(_Cfg(), "toy"))
    out = results.save(tmp_path / "run")
    assert out == tmp_path / "run" and results.output_dir == out
    for name in ("results.md", "results.json", "predictions.jsonl", "manifest.json"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    assert "## Test set: convai2 (1 examples)" in md and "difference vs base" in md
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 4 + 2 and records[0]["question"] == "q"
    assert {r["test_set"] for r in records} == {"test", "convai2"}
    assert json.loads((out / "results.json").read_text())["test_sets"]["test"]["n"] == 4

    assert main(["evaluate", str(out / "predictions.jsonl"), "--metrics", "rouge", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"test / base", "test / ours", "convai2 / base", "convai2 / ours"}
    assert scores["convai2 / ours"]["rouge1"] == 1.0
    assert main(["evaluate", str(out / "predictions.jsonl"), "--metrics", "rouge", "--system", "test / ours"]) == 0
    table = capsys.readouterr().out
    assert "test / ours" in table and "test / base" not in table
    assert main(["evaluate", str(out / "predictions.jsonl"), "--system", "nope"]) == 2


def test_manifest_names_seed_config_data_hashes_packages_and_machine(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("abc\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.csv").write_text("1")
    m = run_manifest(_Cfg(seed=7), "toy", data_paths=[f, folder, None, tmp_path / "missing"])
    assert m["seed"] == 7 and m["config"]["seed"] == 7 and m["recipe"] == "toy"
    assert set(m["data_files"]) == {str(f), str(folder)} and m["data_files"][str(folder)]["files"] == 1
    import hashlib

    assert m["data_files"][str(f)]["sha256"] == hashlib.sha256(b"abc\n").hexdigest()
    assert m["packages"]["torch"] and "amx_bf16" in m["machine"] and m["machine"]["cores"] == os.cpu_count()
    f.write_text("abd\n")
    assert run_manifest(_Cfg(), "toy", data_paths=[f])["data_files"][str(f)]["sha256"] != \
        m["data_files"][str(f)]["sha256"]


# ------------------------------------------------------------------------------ CLI
def test_cli_run_lists_recipes_prints_checked_configs_and_rejects_typos(capsys):
    from personakit.cli import main

    assert main(["run", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("grag", "questioner", "copersona", "ropg"):
        assert name in listing
    assert main(["run", "grag", "--config", "tiny", "--set", "seed=3", "--print-config"]) == 0
    assert "seed: 3" in capsys.readouterr().out
    assert main(["run", "grag", "--set", "training.epochz=3"]) == 2
    assert "training.epochz" in capsys.readouterr().err
    assert main(["run", "nope"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("personakit ")


class _Set(BaseConfig):
    path: str = PathField(..., description="The file.")
    agent: Optional[str] = Field(None, description="Speaker.")

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data):
        return {"path": data} if isinstance(data, str) else data


class _Nested(RecipeConfig):
    recipe = "toy2"
    test_sets: dict[str, _Set] = Field(default_factory=dict, description="Named sets.")
    extra_files: list[str] = PathField(default_factory=list, description="Files.")
    maybe: Optional[_Data] = Field(None, description="Optional nested.")


def test_paths_inside_dicts_lists_and_optional_configs_resolve_against_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("test_sets:\n  a: sets/a.jsonl\n  b: {path: sets/b.jsonl, agent: x}\n"
                                     "extra_files: [f1, /abs/f2]\nmaybe: {path: m.jsonl}\n")
    cfg = load_recipe_config(_Nested, tmp_path / "c.yaml")
    assert cfg.test_sets["a"].path == str(tmp_path / "sets" / "a.jsonl")
    assert cfg.test_sets["b"].path == str(tmp_path / "sets" / "b.jsonl")
    assert cfg.extra_files == [str(tmp_path / "f1"), "/abs/f2"]
    assert cfg.maybe.path == str(tmp_path / "m.jsonl")
