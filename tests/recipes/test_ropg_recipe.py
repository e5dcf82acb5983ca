"""The ROPG / RSPG recipe end to end on tiny data, with a stand-in LLM and tiny local encoders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from personakit.config import ConfigError
from personakit.llm import CallableGenerator
from personakit.recipes.base import load_recipe_config
from personakit.recipes.ropg import (
    POOL_RETRIEVERS,
    ROPGRecipeConfig,
    ROPGResults,
    load_recipe_splits,
    run_ropg_recipe,
)

POOL_LABELS = ["No retrieval", "Recency", "BM25", "Dense (MiniLM)", "RRF", "ROPG-RL", "ROPG-KD"]
FILES = ("results.md", "results.json", "predictions.jsonl", "manifest.json")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_bert(seed: int):
    """A 1-layer BERT with a word-level vocabulary built from the built-in corpus' common words."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from personakit.data import load_builtin_corpus

    words: dict[str, int] = {}
    for d in load_builtin_corpus():
        for t in d.turns:
            for w in t.text.lower().replace(",", " ").replace(".", " ").split():
                words[w] = words.get(w, 0) + 1
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(w for w, c in words.items() if c >= 3)[:300]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=512))
    return model.eval(), tok


def echo_profile_llm(prompt: str) -> str:
    """A stand-in LLM: the first quoted profile entry of the prompt (or the conversation's last line)."""
    if '"' in prompt:
        return prompt.split('"')[1]
    lines = [ln for ln in prompt.splitlines() if ln.startswith("Persuadee:")]
    return lines[-1] if lines else "hello"


def tiny_config(tmp_path, *overrides: str) -> ROPGRecipeConfig:
    return load_recipe_config("ropg", "tiny", overrides=["save_models=true", "prompt.count_with=words", *overrides],
                              output_dir=tmp_path / "run")


def run_fake(cfg: ROPGRecipeConfig, llm=echo_profile_llm, **kwargs) -> ROPGResults:
    return run_ropg_recipe(cfg, generator=CallableGenerator(llm, model_id="echo-profile"), encoder=tiny_bert(0),
                           selector_encoder=tiny_bert(1), progress=False, **kwargs)


def write_examples(path: Path, examples) -> Path:
    path.write_text("".join(ex.model_dump_json() + "\n" for ex in examples), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- configs
def test_shipped_configs_load_and_round_trip(tmp_path):
    for name in ("tiny", "default"):  # default reads ${PERSONAKIT_DATA}, set for every test
        cfg = load_recipe_config("ropg", name)
        assert ROPGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
        out = tmp_path / f"{name}.yaml"
        cfg.to_yaml(out)
        assert ROPGRecipeConfig.from_file(out) == cfg
    cfg = load_recipe_config("ropg", "tiny")
    assert cfg.data.source == "builtin" and cfg.pool.retrievers == list(POOL_RETRIEVERS)
    assert cfg.output_dir is None and cfg.seed == 0
    assert load_recipe_config("ropg", "default").data.path.endswith("persuasionforgood/FullData")
    with pytest.raises(Exception, match="unknown retriever"):
        ROPGRecipeConfig.from_dict({"pool": {"retrievers": ["bm25", "splade"]}})
    with pytest.raises(Exception, match="needs"):
        ROPGRecipeConfig.from_dict({"data": {"source": "pfg"}})
    with pytest.raises(Exception):
        ROPGRecipeConfig.from_dict({"llm": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="'train', 'dev' and 'test' are the recipe's own"):
        ROPGRecipeConfig.from_dict({"data": {"test_sets": {"test": "x.json"}}})
    assert ROPGRecipeConfig.from_dict({"alpha": 0.01}).significance_level == 0.01  # the old name still reads


@pytest.mark.parametrize("yaml_text, field", [
    ("rspg:\n  trainer:\n    epoch: 2\n", "rspg.trainer.epoch"),
    ("ropg:\n  rl:\n    learning_rte: 1.0e-4\n", "ropg.rl.learning_rte"),
    ("data:\n  test_sets:\n    extra: {path: x.jsonl, max_example: 3}\n", "data.test_sets.extra.max_example"),
    ("pool:\n  kk: 3\n", "pool.kk"),
])
def test_misspelt_key_fails_at_load_naming_the_field(tmp_path, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_recipe_config("ropg", path)
    assert field in str(info.value) and str(path) in str(info.value)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "my.yaml").write_text("data:\n  source: lamp\n  path: ../LaMP_4\nllm:\n  cache_path: cache/llm.jsonl\n"
                                    "output_dir: out\n")
    monkeypatch.chdir(tmp_path.parent)  # somewhere else: the file's folder counts, not the working directory
    cfg = load_recipe_config("ropg", folder / "my.yaml")
    assert Path(cfg.data.path) == tmp_path / "LaMP_4"
    assert Path(cfg.llm.cache_path) == folder / "cache" / "llm.jsonl"
    assert Path(cfg.output_dir) == folder / "out"
    # --set paths resolve against the working directory
    cfg = load_recipe_config("ropg", folder / "my.yaml", overrides=["data.path=elsewhere"])
    assert Path(cfg.data.path) == tmp_path.parent / "elsewhere"


def test_relative_test_set_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "my.yaml").write_text("data:\n  test_sets:\n    extra: {path: sets/extra.jsonl}\n    short: x.jsonl\n")
    monkeypatch.chdir(tmp_path.parent)
    cfg = load_recipe_config("ropg", folder / "my.yaml")
    assert Path(cfg.data.test_sets["extra"].path) == folder / "sets" / "extra.jsonl"
    assert Path(cfg.data.test_sets["short"].path) == folder / "x.jsonl"


# ----------------------------------------------------------------------------- data
def test_builtin_splits_have_profiles_and_targets():
    cfg = load_recipe_config("ropg", "tiny")
    task, splits = load_recipe_splits(cfg.data)
    assert task == "PFG-LaMP"
    for name, rows in splits.items():
        assert rows, name
        assert all(ex.profile.items and ex.target for ex in rows)


def test_extra_test_set_of_another_task_is_refused(tmp_path):
    from personakit.recipes.ropg import load_test_sets

    cfg = load_recipe_config("ropg", "tiny")
    _, splits = load_recipe_splits(cfg.data)
    other = [ex.model_copy(update={"task": "LaMP-4"}) for ex in splits["test"]]
    cfg.data.test_sets = {"other": {"path": str(write_examples(tmp_path / "other.jsonl", other))}}
    cfg = ROPGRecipeConfig.from_dict(cfg.to_dict())
    with pytest.raises(ValueError, match="is a LaMP-4 example, but the recipe's task is PFG-LaMP"):
        load_test_sets(cfg.data, "PFG-LaMP")
    cfg.data.test_sets["other"].path = str(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="data.test_sets.other.path"):
        load_test_sets(cfg.data, "PFG-LaMP")


# ----------------------------------------------------------------------------- end to end
def test_recipe_end_to_end_with_fakes(tmp_path):
    calls: list[str] = []

    def llm(prompt: str) -> str:
        calls.append(prompt)
        return echo_profile_llm(prompt)

    cfg = tiny_config(tmp_path)
    results = run_fake(cfg, llm)

    assert results.systems == POOL_LABELS + ["RSPG-Pre", "RSPG-Post"]
    assert list(results.test_sets) == ["test"]
    for system, row in results.rows.items():
        assert set(row) == {"rouge1", "rougeL"}
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in row.values()), (system, row)
        assert len(results.primary.per_example[system]["rouge1"]) == results.sizes["test"]
    best = results.best_single
    assert best in POOL_LABELS and best == results.primary.baseline
    assert results.rows[best]["rouge1"] == max(results.rows[s]["rouge1"] for s in POOL_LABELS)
    assert best not in results.significance
    for system, tests in results.significance.items():
        assert set(tests) == {"rouge1", "rougeL"}
        assert {"p_value", "mean_difference", "significant", "ci_low", "ci_high"} <= set(tests["rouge1"])
        assert "p" not in tests["rouge1"]
    for label in ("RSPG-Pre", "RSPG-Post"):
        sel = results.selectors[label]
        assert 0.0 <= sel["success_rate"] <= 1.0
        assert sum(sel["chosen"].values()) == results.sizes["test"]
        # the selector's mean EVAL is the mean ROUGE-1 of the outputs it picked
        assert sel["selected_eval"] == pytest.approx(results.rows[label]["rouge1"], abs=1e-9)
    lo, hi = results.oracle["lower"], results.oracle["upper"]
    assert lo <= min(results.rows[s]["rouge1"] for s in POOL_LABELS) + 1e-9
    assert hi >= max(results.rows[s]["rouge1"] for s in results.systems) - 1e-9
    assert results.ropg["ROPG-RL"]["steps"] > 0 and results.ropg["ROPG-KD"]["steps"] > 0
    assert results.timings["train_ropg_rl_s"] > 0 and results.timings["train_rspg_post_s"] > 0
    # the no-retrieval prompt holds no profile entry, so the echo LLM falls back to the conversation
    assert results.sizes["llm_prompts_generated"] == len(set(calls)) == len(calls)

    out = Path(cfg.output_dir)
    assert results.output_dir == out and all((out / f).is_file() for f in FILES)
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_sets"]["test"]["rows"]["RSPG-Post"]["rouge1"] == pytest.approx(results.rows["RSPG-Post"]["rouge1"])
    assert saved["details"]["selectors"]["test"]["RSPG-Pre"]["chosen"] == results.selectors["RSPG-Pre"]["chosen"]
    md = (out / "results.md").read_text()
    assert "| RSPG-Pre |" in md and "Oracle over the pool" in md and "ROPG training" in md
    assert f"best single retriever {best}" in md
    assert (out / "selector-pre" / "selector_config.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "ropg" and manifest["seed"] == 0

    # a rerun is served from the response cache and resumes the finished checkpoints: no generation
    calls.clear()
    again = run_fake(cfg, llm)
    assert calls == [] and again.sizes["llm_prompts_generated"] == 0
    # the finished training is not redone, and its time is the checkpointed one (not 0 s)
    assert 0 < again.timings["train_ropg_rl_s"] <= results.timings["train_ropg_rl_s"] + 1e-6
    for system in POOL_LABELS:
        assert again.rows[system] == pytest.approx(results.rows[system])


def test_pool_subset_extra_test_set_save_and_evaluate(tmp_path, capsys):
    from personakit.cli import main

    cfg0 = load_recipe_config("ropg", "tiny")
    _, splits = load_recipe_splits(cfg0.data)
    extra = write_examples(tmp_path / "extra.jsonl", splits["dev"] + splits["test"])
    cfg = tiny_config(tmp_path, "pool.retrievers=[none, bm25, recency]", "rspg.modes=[pre]",
                      f"data.test_sets={{again: {{path: {extra}, max_examples: 2}}}}")
    results = run_fake(cfg, save=False)
    assert results.output_dir is None and not (tmp_path / "run" / "results.md").exists()
    assert results.systems == ["No retrieval", "BM25", "Recency", "RSPG-Pre"]
    assert results.ropg == {}
    assert results.sizes["ropg_train_items"] == 0
    assert list(results.test_sets) == ["test", "again"] and results.sizes["again"] == 2
    again = results.test_sets["again"]
    assert list(again.rows) == results.systems and len(again.ids) == 2
    assert again.baseline in ["No retrieval", "BM25", "Recency"] and again.baseline not in again.significance
    assert set(results.details["selectors"]["again"]["RSPG-Pre"]["chosen"].values()) <= {0, 1, 2}

    folder = results.save(tmp_path / "saved")
    assert isinstance(folder, Path) and folder == tmp_path / "saved" == results.output_dir
    assert all((folder / f).is_file() for f in FILES)
    md = (folder / "results.md").read_text()
    assert "## Test set: test (" in md and "## Test set: again (2 examples)" in md and "Selection on again" in md
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert {r["test_set"] for r in records} == {"test", "again"}
    assert {"system", "id", "prediction", "reference", "user_id", "input"} <= set(records[0])
    assert len(records) == 4 * (results.sizes["test"] + 2)

    capsys.readouterr()
    assert main(["evaluate", str(folder / "predictions.jsonl"), "--metrics", "rouge", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # one row per test set and system
    assert set(rows) == {f"{ts} / {system}" for ts in ("test", "again") for system in results.systems}
    assert main(["evaluate", str(folder / "predictions.jsonl"), "--system", "again / BM25"]) == 0
    assert "again / BM25" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real model
@pytest.mark.real_model
def test_cli_run_tiny_with_the_embedded_models(tmp_path, capsys):
    """``personakit run ropg --config tiny`` with SmolLM2 and MiniLM at the smallest scale, then evaluate."""
    from personakit.cli import main

    out = tmp_path / "run"
    assert main(["run", "ropg", "--config", "tiny", "--set", "pool.retrievers=[none, bm25, ropg-kd]",
                 "--set", "rspg.modes=[post]", "--set", "llm.max_new_tokens=6", "--set", "ropg.top_l=2",
                 "--set", "rspg.trainer.epochs=1", "--set", "data.max_train=3", "--set", "data.max_dev=2",
                 "--set", "data.max_test=3", "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "RSPG-Post" in printed and str(out) in printed
    assert all((out / f).is_file() for f in FILES)
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["test_sets"]["test"]["rows"]) == ["No retrieval", "BM25", "ROPG-KD", "RSPG-Post"]
    assert main(["evaluate", str(out / "predictions.jsonl"), "--metrics", "rouge", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"No retrieval", "BM25", "ROPG-KD", "RSPG-Post"}
