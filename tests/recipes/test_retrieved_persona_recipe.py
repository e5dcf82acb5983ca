"""The retrieved-persona recipe (cross-family: retrievers + RSPG choose the persona of a GRAG model).

Unit tests run the whole recipe on the built-in corpus with tiny random stand-ins (a Llama
backbone, a BERT selector encoder, a bag-of-words dense encoder); one marked test runs the
shipped tiny config with the real embedded models on Synthetic-Persona-Chat.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from personakit.config import ConfigError
from personakit.recipes.base import load_recipe_config, packaged_configs
from personakit.recipes.retrieved_persona import (
    PersonaChooser,
    RetrievedPersonaRecipeConfig,
    RetrievedPersonaResults,
    profile_items,
    query_of,
    run_retrieved_persona_recipe,
)
from personakit.types import Persona, ResponseExample, Turn

WORDS = ("persona: query: user: agent: (none) i you the a to and of my is in it what do like love have "
         "bake bread cats dogs music jazz work city coffee morning night book read play hi hello yes no").split()
LABELS = ["Full persona", "No persona", "Random 2", "BM25 top-2", "Dense top-2", "RSPG selector", "Oracle selection"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _word_tokenizer(kind: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"] if kind == "llama" else ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    unk = "<unk>" if kind == "llama" else "[UNK]"
    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    if kind == "llama":
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                       eos_token="</s>", unk_token="<unk>")
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", unk_token="[UNK]")


def tiny_llama():
    """A fresh tiny random Llama and its word-level tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _word_tokenizer("llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=32, vocab_size=len(tok), max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg), tok


def tiny_bert():
    from transformers import BertConfig, BertModel

    tok = _word_tokenizer("bert")
    torch.manual_seed(1)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=128))
    return model, tok


def bag_of_words(texts):
    """A stand-in dense encoder: hashed word counts."""
    out = torch.zeros(len(texts), 32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, hash(w) % 32] += 1.0
    return out


def tiny_config(tmp_path: Path, **update) -> RetrievedPersonaRecipeConfig:
    data = {
        "data": {"source": "builtin", "max_train": 6, "max_dev": 4, "max_test": 5, "max_history_turns": 2},
        "inputs": {"max_persona_tokens": 32, "max_history_tokens": 32, "max_response_tokens": 8},
        "training": {"epochs": 1, "batch_size": 3, "learning_rate": 1e-3, "max_new_tokens": 4, "eval_batch_size": 4},
        "rspg": {"epochs": 1, "batch_size": 2, "max_length": 48},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in update.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return RetrievedPersonaRecipeConfig.from_dict(data)


def run_tiny(config, **kwargs):
    return run_retrieved_persona_recipe(config, progress=False, backbone=tiny_llama, dense_encoder=bag_of_words,
                                        selector_encoder=tiny_bert(), **kwargs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rp")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_tiny(tiny_config(tmp)), tmp / "run"
    finally:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------- units
def _example(**kw) -> ResponseExample:
    base = dict(id="d:3", agent="agent", response="I bake bread every morning.",
                persona=Persona(sentences=["I love jazz.", "I bake bread.", "I have two cats."]),
                history=[Turn(speaker="user", text="Hi"), Turn(speaker="agent", text="Hello, I read a lot."),
                         Turn(speaker="user", text="What do you bake in the morning?")])
    base.update(kw)
    return ResponseExample(**base)


def test_profile_query_and_persona_sources():
    config = RetrievedPersonaRecipeConfig(k=1, data={"source": "builtin"})
    ex = _example()
    assert profile_items(ex, config.profile) == ["I love jazz.", "I bake bread.", "I have two cats."]
    assert query_of(ex, config.profile) == "What do you bake in the morning?"
    chooser = PersonaChooser(config, dense_encoder=bag_of_words)
    assert chooser.choose("full", [ex]) == [ex.persona.sentences]
    assert chooser.choose("none", [ex]) == [[]]
    assert chooser.choose("bm25", [ex]) == [["I bake bread."]]
    assert len(chooser.choose("random", [ex])[0]) == 1
    assert chooser.choose("random", [ex]) == chooser.choose("random", [ex])  # seeded per example
    assert chooser.choose("dense", [ex, _example(persona=Persona())])[1] == []
    two = RetrievedPersonaRecipeConfig(k=2, data={"source": "builtin"}, profile={"include_own_turns": True})
    assert profile_items(ex, two.profile)[-1] == "Hello, I read a lot."
    # profile order, not rank order
    picked = PersonaChooser(two, dense_encoder=bag_of_words).choose("bm25", [ex])[0]
    items = profile_items(ex, two.profile)
    assert [items.index(p) for p in picked] == sorted(items.index(p) for p in picked)


def test_config_checks():
    with pytest.raises(Exception, match="unknown system 'bm52'"):
        RetrievedPersonaRecipeConfig(systems=["full", "bm52"], data={"source": "builtin"})
    with pytest.raises(Exception, match="baseline"):
        RetrievedPersonaRecipeConfig(systems=["bm25"], data={"source": "builtin"})
    with pytest.raises(Exception, match="unknown candidate"):
        RetrievedPersonaRecipeConfig(rspg={"candidates": ["full", "recency"]}, data={"source": "builtin"})
    with pytest.raises(Exception, match="warmup_stepz"):
        RetrievedPersonaRecipeConfig(training={"options": {"warmup_stepz": 2}}, data={"source": "builtin"})


def test_shipped_configs_load():
    assert {"tiny", "default"} <= set(packaged_configs("retrieved-persona"))
    for name in ("tiny", "default"):
        cfg = load_recipe_config("retrieved-persona", name)
        assert isinstance(cfg, RetrievedPersonaRecipeConfig)
        assert cfg.data.source == "spc" and Path(cfg.data.path).name == "spc" and "${" not in cfg.data.path
        assert cfg.eval.baseline == "full" and "rspg" in cfg.systems


def test_misspelt_key_fails_at_load(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {source: builtin}\nrspg:\n  candidates: [full, bm25]\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        load_recipe_config("retrieved-persona", path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    path = folder / "mine.yaml"
    path.write_text("data:\n  path: data/spc\n  test_sets:\n    - {name: other, path: ../other.jsonl}\n")
    cfg = load_recipe_config("retrieved-persona", path)
    assert cfg.data.path == str(folder / "data" / "spc")
    assert cfg.data.test_sets[0].path == str(tmp_path / "other.jsonl")


# ------------------------------------------------------------------------ end to end
def test_recipe_end_to_end_on_tiny_stand_ins(tiny_run):
    results, out = tiny_run
    assert isinstance(results, RetrievedPersonaResults)
    assert results.systems == LABELS
    for system, row in results.rows.items():
        for key in ("rouge1", "rouge2", "rougeL", "bleu", "bpc", "items"):
            assert math.isfinite(row[key]), (system, key)
    assert results.rows["No persona"]["items"] == 0
    assert results.rows["BM25 top-2"]["items"] <= 2 and results.rows["Full persona"]["items"] > 2
    test = results.test_sets["test"]
    assert test.baseline == "Full persona" and set(test.significance) == set(LABELS[1:])
    assert all(s["rougeL"]["p_value"] is None or 0 <= s["rougeL"]["p_value"] <= 1 or math.isnan(s["rougeL"]["p_value"])
               for s in test.significance.values())
    # the oracle picks the likeliest candidate: its log-likelihood is the best of the rows it chooses from
    ll = results.likelihood["test"]
    assert ll["Oracle selection"]["mean_a"] >= max(ll[k]["mean_a"] for k in ("BM25 top-2", "Dense top-2", "No persona")) - 1e-9
    sel = results.selection["test"]
    assert set(sel["shares"]) == {"full", "bm25", "dense", "none"} and abs(sum(sel["shares"].values()) - 1) < 1e-9
    assert results.training["presft"]["steps"] == 2 and results.training["rspg"]["items"] == 4
    md = results.to_markdown()
    for heading in ("RSPG selection (test)", "Reference log-likelihood vs Full persona", "Training: PreSFT(Hist)"):
        assert heading in md
    assert results.timings["train_s"] > 0 and results.sizes["dev"] == 4


def test_save_writes_four_files_and_evaluate_reads_them(tiny_run, capsys):
    from personakit.cli import main

    results, out = tiny_run
    folder = results.save(out)
    assert isinstance(folder, Path) and folder == out
    for name in ("results.md", "results.json", "predictions.jsonl", "manifest.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["selection"]["test"]["shares"] and list(saved["test_sets"]["test"]["rows"]) == LABELS
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(LABELS) * 5 and {"query", "persona", "rspg_choice"} <= set(records[0])
    capsys.readouterr()
    assert main(["evaluate", str(out / "predictions.jsonl"), "--metrics", "rouge"]) == 0
    text = capsys.readouterr().out
    for label in LABELS:
        assert label in text


def test_named_extra_test_set(tmp_path):
    from personakit.data import load_builtin_corpus

    lines = []
    for d in load_builtin_corpus("test")[:3]:
        lines.append(json.dumps({"id": d.id, "user1_personas": d.personas["user"].sentences,
                                 "user2_personas": d.personas["agent"].sentences,
                                 "turns": [{"speaker": "User 2" if t.speaker == "agent" else "User 1", "text": t.text}
                                           for t in d.turns]}))
    (tmp_path / "extra.jsonl").write_text("\n".join(lines) + "\n")
    config = tiny_config(tmp_path, systems=["full", "bm25", "oracle"],
                         data={"test_sets": [{"name": "spc-like", "path": str(tmp_path / "extra.jsonl"),
                                              "format": "spc_jsonl", "agent": "User 2", "max_examples": 3}]})
    results = run_tiny(config)
    assert list(results.test_sets) == ["test", "spc-like"]
    extra = results.test_sets["spc-like"]
    assert len(extra.ids) == 3 and set(extra.rows) == {"Full persona", "BM25 top-2", "Oracle selection"}
    assert "## Test set: spc-like (3 examples)" in results.to_markdown()
    assert "rspg" not in results.training and not results.selection["spc-like"]  # no RSPG row: no selector
    records = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert {r["test_set"] for r in records} == {"test", "spc-like"}


# --------------------------------------------------------------------------- real model
@pytest.mark.real_model
@pytest.mark.real_data
def test_tiny_config_runs_through_the_cli(tmp_path, shared_data, capsys):
    from personakit.cli import main

    shrink = ["data.max_train=4", "data.max_dev=3", "data.max_test=3", "training.batch_size=4",
              "training.max_new_tokens=8", "rspg.epochs=1", "systems=[full,none,bm25,dense,rspg]"]
    argv = ["run", "retrieved-persona", "--config", "tiny", "--output-dir", str(tmp_path), "--no-progress"]
    for s in shrink:
        argv += ["--set", s]
    assert main(argv) == 0
    for name in ("results.md", "results.json", "predictions.jsonl", "manifest.json"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["manifest"]["data_files"] and saved["details"]["frozen_dtype"] in ("bfloat16", "float32")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "predictions.jsonl")]) == 0
    assert "RSPG selector" in capsys.readouterr().out
