"""The ROPG / RSPG recipe end to end on tiny data, with a stand-in LLM and tiny local encoders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from personakit.llm import CallableGenerator
from personakit.recipes.ropg import (
    POOL_RETRIEVERS,
    ROPGRecipeConfig,
    load_recipe_splits,
    run_ropg_recipe,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_YAML = REPO_ROOT / "examples" / "configs" / "ropg_tiny.yaml"
FULL_YAML = REPO_ROOT / "examples" / "configs" / "ropg.yaml"


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


def tiny_config(tmp_path) -> ROPGRecipeConfig:
    cfg = ROPGRecipeConfig.from_yaml(TINY_YAML)
    return cfg.model_copy(update={"output_dir": str(tmp_path / "run"), "save_models": True,
                                  "prompt": cfg.prompt.model_copy(update={"count_with": "words"})})


def test_tiny_yaml_round_trip_and_validation(tmp_path):
    for path in (TINY_YAML, FULL_YAML):
        cfg = ROPGRecipeConfig.from_yaml(path)
        assert ROPGRecipeConfig.from_yaml(cfg.to_yaml()) == cfg
        out = tmp_path / f"{path.stem}.yaml"
        cfg.to_yaml(out)
        assert ROPGRecipeConfig.from_file(out) == cfg
    cfg = ROPGRecipeConfig.from_yaml(TINY_YAML)
    assert cfg.data.source == "builtin" and cfg.pool.retrievers == list(POOL_RETRIEVERS)
    with pytest.raises(Exception, match="unknown retriever"):
        ROPGRecipeConfig.from_dict({"pool": {"retrievers": ["bm25", "splade"]}})
    with pytest.raises(Exception, match="needs"):
        ROPGRecipeConfig.from_dict({"data": {"source": "pfg"}})
    with pytest.raises(Exception):
        ROPGRecipeConfig.from_dict({"llm": {"batch_size": 0}})


def test_builtin_splits_have_profiles_and_targets():
    cfg = ROPGRecipeConfig.from_yaml(TINY_YAML)
    task, splits = load_recipe_splits(cfg.data)
    assert task == "PFG-LaMP"
    for name, rows in splits.items():
        assert rows, name
        assert all(ex.profile.items and ex.target for ex in rows)


def test_recipe_end_to_end_with_fakes(tmp_path):
    calls: list[str] = []

    def llm(prompt: str) -> str:
        calls.append(prompt)
        return echo_profile_llm(prompt)

    cfg = tiny_config(tmp_path)
    gen = CallableGenerator(llm, model_id="echo-profile")
    results = run_ropg_recipe(cfg, generator=gen, encoder=tiny_bert(0), selector_encoder=tiny_bert(1), progress=False)

    pool_labels = ["No retrieval", "Recency", "BM25", "Dense (MiniLM)", "RRF", "ROPG-RL", "ROPG-KD"]
    assert results.systems == pool_labels + ["RSPG-Pre", "RSPG-Post"]
    for system, row in results.metrics.items():
        assert set(row) == {"rouge1", "rougeL"}
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in row.values()), (system, row)
        assert len(results.per_example[system]["rouge1"]) == results.sizes["test"]
    assert results.best_single in pool_labels
    assert results.best_single not in results.significance
    for system, tests in results.significance.items():
        assert set(tests) == {"rouge1", "rougeL"}
    for label in ("RSPG-Pre", "RSPG-Post"):
        sel = results.selectors[label]
        assert 0.0 <= sel["success_rate"] <= 1.0
        assert sum(sel["chosen"].values()) == results.sizes["test"]
        # the selector's mean EVAL is the mean ROUGE-1 of the outputs it picked
        assert sel["selected_eval"] == pytest.approx(results.metrics[label]["rouge1"], abs=1e-9)
    lo, hi = results.oracle["lower"], results.oracle["upper"]
    assert lo <= min(results.metrics[s]["rouge1"] for s in pool_labels) + 1e-9
    assert hi >= max(results.metrics[s]["rouge1"] for s in results.systems) - 1e-9
    assert results.ropg["ROPG-RL"]["steps"] > 0 and results.ropg["ROPG-KD"]["steps"] > 0
    # the no-retrieval prompt holds no profile entry, so the echo LLM falls back to the conversation
    assert results.sizes["llm_prompts_generated"] == len(set(calls)) == len(calls)

    out = Path(cfg.output_dir)
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"]["RSPG-Post"]["rouge1"] == pytest.approx(results.metrics["RSPG-Post"]["rouge1"])
    assert "| RSPG-Pre |" in (out / "results.md").read_text()
    assert (out / "selector-pre" / "selector_config.json").is_file()

    # a rerun is served from the response cache and resumes the finished checkpoints: no generation
    calls.clear()
    again = run_ropg_recipe(cfg, generator=CallableGenerator(llm, model_id="echo-profile"), encoder=tiny_bert(0),
                            selector_encoder=tiny_bert(1), progress=False)
    assert calls == [] and again.sizes["llm_prompts_generated"] == 0
    for system in pool_labels:
        assert again.metrics[system] == pytest.approx(results.metrics[system])


def test_pool_subset_without_training(tmp_path):
    cfg = tiny_config(tmp_path).model_copy(deep=True)
    cfg.pool.retrievers = ["none", "bm25", "recency"]
    cfg.rspg.modes = ["pre"]
    results = run_ropg_recipe(cfg, generator=CallableGenerator(echo_profile_llm, model_id="echo"),
                              encoder=tiny_bert(0), selector_encoder=tiny_bert(1), progress=False)
    assert results.systems == ["No retrieval", "BM25", "Recency", "RSPG-Pre"]
    assert results.ropg == {}
    assert results.sizes["ropg_train_items"] == 0
