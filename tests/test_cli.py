import json
import sys
import types
from pathlib import Path

import pytest

import personakit
from personakit.cli import main

COMMANDS = [
    [],
    ["version"],
    ["models"],
    ["models", "list"],
    ["models", "install"],
    ["demo"],
    ["evaluate"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "personakit")
def test_every_command_has_help(argv, capsys):
    assert main(argv + ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: personakit")


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"personakit {personakit.__version__}"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: personakit" in capsys.readouterr().err
    assert main(["models"]) == 2


def test_usage_error_exits_2(capsys):
    assert main(["demo", "--n-shot", "-1"]) == 2
    assert "expected an integer >= 0" in capsys.readouterr().err
    assert main(["nonsense"]) == 2


@pytest.fixture()
def fake_backbones(monkeypatch):
    status = types.SimpleNamespace(
        name="tiny-model", packages=("tiny-pkg",), installed=True, prepared=False, path=Path("/somewhere/tiny")
    )
    missing = types.SimpleNamespace(name="absent-model", packages=("absent-pkg",), installed=False, prepared=False,
                                    path=None)
    fake = types.ModuleType("personakit.backbones")
    fake.list_embedded = lambda: [status, missing]

    def install_embedded(name):
        if name != "tiny-model":
            raise KeyError(f"unknown embedded model {name!r}; known: tiny-model")
        return Path("/somewhere/tiny")

    fake.install_embedded = install_embedded
    monkeypatch.setitem(sys.modules, "personakit.backbones", fake)
    monkeypatch.setattr(personakit, "backbones", fake, raising=False)
    return fake


def test_models_list(fake_backbones, capsys):
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "package", "installed", "prepared", "path"]
    assert lines[2].split() == ["tiny-model", "tiny-pkg", "yes", "no", "/somewhere/tiny"]
    assert lines[3].split() == ["absent-model", "absent-pkg", "no", "no", "-"]


def test_models_install_and_its_error(fake_backbones, capsys):
    assert main(["models", "install", "tiny-model"]) == 0
    assert "/somewhere/tiny" in capsys.readouterr().out
    assert main(["models", "install", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("personakit: error: unknown embedded model 'nope'")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _write_predictions(path):
    records = [
        {"id": "1", "prediction": "i like tea with milk", "reference": "i like tea with milk"},
        {"id": "2", "prediction": "the cat sleeps", "reference": "the dog sleeps all day"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_evaluate_table_and_json(tmp_path, capsys):
    from personakit.eval import evaluate_file

    pred = tmp_path / "preds.jsonl"
    _write_predictions(pred)
    assert main(["evaluate", str(pred)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for key in ("char_f1", "rouge1", "rouge2", "rougeL", "bleu", "meteor"):
        assert key in header
    assert "preds.jsonl" in out

    assert main(["evaluate", str(pred), "--metrics", "char_f1", "rouge", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores == pytest.approx(evaluate_file(pred, metrics=("char_f1", "rouge")))
    assert 0 < scores["rouge1"] < 1 and "bleu" not in scores


def test_evaluate_with_separate_references(tmp_path, capsys):
    pred, ref = tmp_path / "p.txt", tmp_path / "r.txt"
    pred.write_text("hello world\ngood morning\n")
    ref.write_text("hello world\ngood morning\n")
    assert main(["evaluate", str(pred), "--references", str(ref), "--metrics", "rouge", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rouge1"] == pytest.approx(1.0)


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prediction": "x"}\n{oops\n')
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("personakit: error:") and "bad.jsonl" in err and "Traceback" not in err


def test_demo_command_passes_arguments(monkeypatch, capsys, tmp_path):
    import personakit.recipes.demo as demo

    seen = {}

    class Result:
        def report(self):
            return "REPORT"

    def fake_run_demo(**kwargs):
        seen.update(kwargs)
        return Result()

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    argv = ["demo", "--n-shot", "3", "--max-examples", "5", "--batch-size", "4", "--max-new-tokens", "9",
            "--seed", "7", "--output-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "REPORT"
    assert seen == dict(n_shot=3, max_examples=5, batch_size=4, max_new_tokens=9, seed=7,
                        model="smollm2-135m-instruct", output_dir=str(tmp_path), progress=False, icl_only=False,
                        quick=False, epochs=None, max_train_examples=None, backbone="smollm2", cache_path=None)
    seen.clear()
    assert main(["demo", "--quick", "--epochs", "3", "--max-train-examples", "10", "--no-progress"]) == 0
    assert seen["quick"] is True and seen["epochs"] == 3 and seen["max_train_examples"] == 10
    seen.clear()
    assert main(["demo", "--icl-only", "--no-progress"]) == 0
    assert seen["icl_only"] is True and seen["quick"] is False
    capsys.readouterr()


def test_demo_help_and_docs_give_the_sizes_the_demo_runs(capsys):
    """``personakit demo --help`` and docs/cli.md state the numbers ``demo_recipe_config`` really uses."""
    from personakit.recipes.demo import demo_recipe_config

    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    full, quick = demo_recipe_config(), demo_recipe_config(quick=True)
    assert f"{quick.data.max_train} training and {quick.data.max_test} test examples" in text
    assert f"test examples (default {full.data.max_test}; quick {quick.data.max_test})" in text
    assert f"many examples (default {full.data.max_train}; quick {quick.data.max_train})" in text
    assert f"per model (default {full.training.epochs}; quick {quick.training.epochs})" in text
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8").split())
    assert f"`--quick` runs {quick.data.max_train} training and {quick.data.max_test} test examples" in docs
    assert f"`--max-train-examples` ({full.data.max_train})" in docs
    assert f"`--max-examples` ({full.data.max_test})" in docs
    assert f"`--epochs` ({full.training.epochs})" in docs


def test_no_progress_also_hides_the_loaders_bars(monkeypatch, capsys):
    """``--no-progress`` runs the command under ``loading_progress(False)``: transformers' "Loading weights"
    bars are off in personakit's loaders (tests/backbones/test_quiet_loading.py checks the loaders)."""
    import personakit.recipes.demo as demo
    from personakit.backbones.quiet import loading_progress_enabled

    seen = []

    class Result:
        def report(self):
            return "REPORT"

    def fake_run_demo(**kwargs):
        seen.append(loading_progress_enabled())
        return Result()

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert main(["demo", "--icl-only", "--no-progress"]) == 0
    assert main(["demo", "--icl-only"]) == 0
    assert seen == [False, None]
    assert loading_progress_enabled() is None
    capsys.readouterr()
