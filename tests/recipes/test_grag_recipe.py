"""The GRAG recipe end to end on tiny random backbones, with a stand-in generic LLM."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from personakit.llm import CallableGenerator
from personakit.recipes.grag import (
    GRAGAugmentConfig,
    GRAGModelSpec,
    GRAGRecipeConfig,
    GRAGRecipeResults,
    load_grag_splits,
    run_grag_recipe,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "models" / "grag"))

from grag_testkit import build_backbone, make_examples, tokenizer_for  # noqa: E402

TINY_YAML = REPO_ROOT / "src" / "personakit" / "recipes" / "configs" / "grag" / "tiny.yaml"
FULL_YAML = REPO_ROOT / "src" / "personakit" / "recipes" / "configs" / "grag" / "default.yaml"
FILES = ["manifest.json", "predictions.jsonl", "results.json", "results.md"]
ROWS = ["PreSFT(Hist)", "PreSFT(TST)", "PreGRAG", "PostGRAG"]
TEXT_KEYS = ["char_f1", "rouge1", "rouge2", "rougeL", "bleu", "meteor"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_bart():
    """A fresh tiny random BART and its word-level tokenizer (one per model)."""
    return build_backbone("bart", seed=0), tokenizer_for("bart")


def fake_llm(calls: list):
    """A batched stand-in generic LLM that records every prompt and answers with words of the test vocabulary."""

    def fn(chats):
        calls.extend(chats)
        # every third reply cleans up to nothing (a bare role label), as a small LLM's sometimes do
        return ["Agent:" if i % 3 == 2 else ("i am fine thanks how are you" if i % 2 else "Agent: good")
                for i, _ in enumerate(chats)]

    return CallableGenerator(fn, batched=True, model_id="fake-generic")


def tiny_config(tmp_path: Path, **update) -> GRAGRecipeConfig:
    data = {
        "data": {"source": "builtin", "max_train": 6, "max_test": 4, "max_history_turns": 2},
        "augment": {"template": "builtin", "max_new_tokens": 8, "batch_size": 4},
        "inputs": {"max_persona_tokens": 16, "max_history_tokens": 24, "max_generic_tokens": 8,
                   "max_response_tokens": 8},
        "training": {"epochs": 1, "batch_size": 3, "learning_rate": 1e-3, "max_new_tokens": 4, "progress": False},
        "icl": {"enabled": True, "n_shot": 1, "max_new_tokens": 8},
        "eval": {"metrics": ["char_f1", "rouge", "bleu", "meteor", "bpc"]},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in update.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return GRAGRecipeConfig.from_dict(data)


def test_recipe_end_to_end_on_tiny_backbones(tmp_path):
    calls: list = []
    config = tiny_config(tmp_path)
    results = run_grag_recipe(config, generator=fake_llm(calls), backbone=tiny_bart, progress=False)
    assert isinstance(results, GRAGRecipeResults)
    icl = "ICL(Hist) 1-shot"
    assert results.systems == ROWS + [icl]
    for system, row in results.rows.items():
        for key in TEXT_KEYS:
            assert math.isfinite(row[key]), (system, key)
        assert (row["bpc"] is None) == (system == icl)
        if row["bpc"] is not None:
            assert math.isfinite(row["bpc"]) and row["bpc"] > 0
    assert all(len(p) == 4 for p in results.predictions.values())
    # 10 examples augmented (6 train + 4 test), the 2 empty replies retried once (the retry answers), then 4 ICL
    # prompts;
    # the persona never reaches the generic LLM
    assert len(calls) == 10 + 2 + 4
    personas = {s for ex in results.test_examples for s in ex.persona.sentences}
    for chat in calls[:10]:
        assert not any(s in m["content"] for s in personas for m in chat)
    assert {ex.generic_response for ex in results.test_examples} <= {"good", "i am fine thanks how are you", "Okay."}
    assert results.sizes["empty_generic"] == 2 and results.sizes["retried"] == 2
    assert results.sizes["fallback_generic"] == 0 and "2 empty at first (2 retried, 0 replaced by 'Okay.')" \
        in results.to_markdown()
    assert all(ex.generic_response for ex in results.test_examples)
    for system in ROWS:
        t = results.training[system]
        assert t["steps"] == 2 and math.isfinite(t["final_loss"])
    # PostGRAG logs its three terms; PreSFT only L_P
    assert {"loss_p", "loss_g", "loss_cjepa"} <= set(results.training["PostGRAG"]["test_losses"])
    assert set(results.significance) == set(ROWS[1:] + [icl]) and results.primary.baseline == "PreSFT(Hist)"
    for comparison in results.significance.values():
        assert set(comparison) == {"rougeL"} and {"p_value", "ci_low", "ci_high", "significant"} <= set(comparison["rougeL"])
    assert set(results.details["training"]) == set(ROWS) and results.timings["train_s"] > 0

    out = tmp_path / "run"
    assert results.output_dir == out and sorted(p.name for p in out.iterdir() if p.name in FILES) == FILES
    saved = json.loads((out / "results.json").read_text())
    rows = saved["test_sets"]["test"]["rows"]
    assert list(rows) == results.systems and rows["PreGRAG"]["rougeL"] == results.rows["PreGRAG"]["rougeL"]
    assert rows[icl]["bpc"] is None and saved["config"]["output_dir"] == str(out)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 0
    md = (out / "results.md").read_text()
    assert results.table() in md and "paired t" in md
    for system in results.systems:
        assert f"| {system} |" in md
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 5 and {r["system"] for r in records} == set(results.systems)
    assert all(r["generic_response"] for r in records)
    assert len((out / "augmented_train.jsonl").read_text().splitlines()) == 6

    # a rerun is served from the response cache: nothing reaches the generic LLM again
    calls2: list = []
    again = run_grag_recipe(config, generator=fake_llm(calls2), backbone=tiny_bart, progress=False, save=False)
    assert calls2 == [] and again.sizes["cached"] == 12 and again.sizes["generated"] == 0
    assert again.rows == results.rows  # seeded: the same numbers


def test_augment_counts_what_it_leaves_empty(tmp_path):
    """With the fallback, nothing reaches training empty; with ``empty_fallback=None`` the count says how much does."""
    from personakit.recipes.base import Stages
    from personakit.recipes.grag.run import _augment

    always_empty = CallableGenerator(lambda chats: ["Agent:" for _ in chats], batched=True, model_id="empty")
    examples = [ex.model_copy(update={"generic_response": None}) for ex in make_examples()]
    n = len(examples)
    for fallback, left in (("Okay.", 0), (None, n)):
        config = tiny_config(tmp_path, augment={"empty_fallback": fallback, "empty_retries": 1})
        (out,), stats = _augment(config, always_empty, None, [examples], Stages("t", progress=False), False)
        assert stats["empty_in_training"] == left and stats["fallback_generic"] == n - left
        assert stats["empty_generic"] == n and stats["retried"] == n  # each counted once
        assert sum(not ex.generic_response for ex in out) == left


def test_recipe_on_example_files_without_augmentation(tmp_path):
    from personakit.augment import save_examples

    examples = make_examples()  # carry generic responses already
    save_examples(tmp_path / "train.jsonl", examples)
    save_examples(tmp_path / "test.jsonl", examples[:2])
    config = GRAGRecipeConfig.from_dict({
        "data": {"source": "examples", "train_path": str(tmp_path / "train.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl")},
        "augment": {"enabled": False},
        "models": [{"kind": "hist"}, {"kind": "postgrag", "alpha": 0.0, "beta": 1.0, "name": "PostGRAG b=1"}],
        "training": {"epochs": 2, "batch_size": 2, "max_new_tokens": 3, "progress": False},
        "eval": {"metrics": ["rouge", "bpc"], "significance_metric": None},
        "output_dir": str(tmp_path / "out"),
    })
    results = run_grag_recipe(config, backbone=(build_backbone("t5"), tokenizer_for("t5")), progress=False)
    assert results.systems == ["PreSFT(Hist)", "PostGRAG b=1"]
    assert results.significance == {} and results.sizes["generated"] == 0
    assert all(math.isfinite(v) for row in results.rows.values() for v in row.values())
    assert results.training["PostGRAG b=1"]["steps"] == 4
    assert (tmp_path / "out" / "results.md").exists()

    # without augmentation, an example lacking R_G is an error naming it
    bare = [ex.model_copy(update={"generic_response": None}) for ex in examples]
    save_examples(tmp_path / "bare.jsonl", bare)
    config = GRAGRecipeConfig.from_dict({**config.to_dict(), "data": {
        "source": "examples", "train_path": str(tmp_path / "bare.jsonl"), "test_path": str(tmp_path / "test.jsonl")}})
    with pytest.raises(ValueError, match="d:1.*generic_response"):
        run_grag_recipe(config, backbone=(build_backbone("t5"), tokenizer_for("t5")), progress=False)


def test_shipped_yaml_configs_round_trip():
    for path in (TINY_YAML, FULL_YAML):
        config = GRAGRecipeConfig.from_yaml(path)
        assert GRAGRecipeConfig.from_yaml(config.to_yaml()) == config
        assert GRAGRecipeConfig.from_json(config.to_json()) == config
        assert [m.kind for m in config.models] == ["presft-hist", "presft-tst", "pregrag", "postgrag"]
        assert config.backbone == "smollm2" and "bpc" in config.eval.metrics and "bertscore" in config.eval.metrics
        assert config.output_dir is None and config.augment.template is None  # the shared augment default
    tiny = GRAGRecipeConfig.from_yaml(TINY_YAML)
    assert tiny.icl.enabled and tiny.data.max_train is not None


def test_shipped_tiny_config_loads_by_name():
    from personakit.recipes.base import load_recipe_config

    tiny = load_recipe_config("grag", "tiny")
    assert isinstance(tiny, GRAGRecipeConfig) and tiny.data.source == "builtin"  # no data files needed
    assert tiny == GRAGRecipeConfig.from_yaml(TINY_YAML)
    assert load_recipe_config("grag", "default").save_checkpoints
    small = load_recipe_config("grag", "tiny", overrides=["data.max_test=2", "models.1.name=TST"])
    assert small.data.max_test == 2 and small.models[1].label == "TST"


def test_inline_template_round_trips_through_yaml():
    config = GRAGRecipeConfig(augment=GRAGAugmentConfig(template={
        "name": "short", "system": "Reply to {user_name} briefly.", "user": "{history}\n{user_name}: {last_user_utterance}"}))
    back = GRAGRecipeConfig.from_yaml(config.to_yaml())
    assert back == config and back.augment.template.name == "short"


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="unknown kind"):
        GRAGModelSpec(kind="bart")
    with pytest.raises(ValueError, match="PreSFT has no"):
        GRAGModelSpec(kind="presft-hist", beta=0.1)
    with pytest.raises(ValueError, match="PreGRAG has no style removal"):
        GRAGModelSpec(kind="pregrag", alpha=0.5)
    with pytest.raises(ValueError, match="repeated row label"):
        GRAGRecipeConfig(models=[{"kind": "pregrag"}, {"kind": "pregrag", "beta": 1.0}])
    with pytest.raises(ValueError, match="baseline"):
        GRAGRecipeConfig(eval={"baseline": "nope"})
    with pytest.raises(ValueError, match="unknown metric"):
        GRAGRecipeConfig(eval={"metrics": ["rouge", "perplexity"]})
    with pytest.raises(ValueError, match="significance_metric"):
        GRAGRecipeConfig(eval={"significance_metric": "bleu"})
    with pytest.raises(ValueError, match="train_path"):
        GRAGRecipeConfig(data={"source": "examples"})
    with pytest.raises(ValueError, match="modles.*Extra inputs"):
        GRAGRecipeConfig.from_dict({"modles": []})
    assert GRAGModelSpec(kind="postgrag", beta=0.5).model_settings() == {"beta": 0.5}
    assert GRAGModelSpec(kind="presft-tst", settings={"extractor_heads": 2}).model_settings() == {"extractor_heads": 2}


def test_model_settings_are_checked_when_the_yaml_is_loaded(tmp_path):
    """A misspelled or invalid GRAGConfig setting fails at load, naming the system and the field."""
    path = tmp_path / "recipe.yaml"
    path.write_text("models:\n  - kind: presft-hist\n  - kind: postgrag\n    settings: {extractor_hedas: 4}\n")
    with pytest.raises(ValueError, match=r"PostGRAG: settings: unknown field 'extractor_hedas'.*did you mean 'extractor_heads'"):
        GRAGRecipeConfig.from_yaml(path)
    with pytest.raises(ValueError, match=r"settings: GRAGConfig: field 'extractor_heads' must be >= 1"):
        GRAGModelSpec(kind="postgrag", settings={"extractor_heads": 0})
    with pytest.raises(ValueError, match=r"field 'beta' is set by the caller"):
        GRAGModelSpec(kind="pregrag", settings={"beta": 0.1})
    assert GRAGModelSpec(kind="postgrag", settings={"lora": {"r": 4, "lora_alpha": 8}}).settings["lora"]["r"] == 4
    assert GRAGModelSpec(kind="postgrag", settings={"persona_in_history": True}).settings["persona_in_history"] is True
    with pytest.raises(ValueError, match=r"persona_in_history"):
        GRAGModelSpec(kind="presft-hist", settings={"persona_in_history": True})


def test_splits_are_seeded_subsamples():
    from personakit.recipes.grag import GRAGDataConfig

    a = load_grag_splits(GRAGDataConfig(max_train=5, max_test=3), seed=0)
    b = load_grag_splits(GRAGDataConfig(max_train=5, max_test=3), seed=0)
    c = load_grag_splits(GRAGDataConfig(max_train=5, max_test=3), seed=1)
    ids = lambda split: [ex.id for ex in split]  # noqa: E731
    assert ids(a[0]) == ids(b[0]) and ids(a[1]) == ids(b[1]) and ids(a[0]) != ids(c[0])
    assert len(a[0]) == 5 and len(a[1]) == 3 and all(i.startswith("builtin-test-") for i in ids(a[1]))
    with pytest.raises(FileNotFoundError, match="train_path"):
        load_grag_splits(GRAGDataConfig(source="examples", train_path="/nope.jsonl", test_path="/nope.jsonl"))


@pytest.mark.real_model
def test_recipe_with_bertscore_on_minilm(tmp_path):
    config = tiny_config(tmp_path, models=[{"kind": "presft-hist"}, {"kind": "pregrag"}],
                         icl={"enabled": False}, eval={"metrics": ["rouge", "bertscore", "bpc"]})
    results = run_grag_recipe(config, generator=fake_llm([]), backbone=tiny_bart, progress=False)
    from personakit.eval import evaluate_texts

    references = [ex.response for ex in load_grag_splits(config.data, seed=config.seed)[1]]
    for system, row in results.rows.items():
        # tiny random models may answer with empty strings (BERTScore 0): check against a direct computation
        expected = evaluate_texts(results.predictions[system], references, metrics=["bertscore"],
                                  bertscore={"model": "minilm"})["bertscore_f1"]
        assert 0.0 <= row["bertscore_f1"] <= 1.0 and row["bertscore_f1"] == pytest.approx(expected, abs=1e-6)
        assert math.isfinite(row["bpc"]) and row["bpc"] > 0


def test_build_recipe_model_applies_lora_by_architecture_and_casts_the_frozen_part():
    import torch

    from personakit.recipes.grag import GRAGModelSpec, build_recipe_model

    spec = GRAGModelSpec(kind="postgrag")
    model, dtype = build_recipe_model(spec, build_backbone("llama"), tokenizer_for("llama"), dtype="bfloat16")
    assert dtype == "bfloat16" and model.config.lora is not None  # "auto": LoRA on a decoder-only backbone
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trainable == {torch.float32}
    assert any("lora_" in n for n in model.trainable_parameter_names())
    batch = model.make_collator()(examples_for_test())
    assert torch.isfinite(model(**batch).loss)

    encdec, dtype = build_recipe_model(spec, build_backbone("bart"), tokenizer_for("bart"), dtype="bfloat16")
    assert dtype == "float32" and encdec.config.lora is None  # full fine-tuning stays fp32
    assert {p.dtype for p in encdec.parameters()} == {torch.float32}
    none, dtype = build_recipe_model(spec, build_backbone("llama"), tokenizer_for("llama"), lora=None)
    assert none.config.lora is None and dtype == "float32"


def examples_for_test():
    from grag_testkit import make_examples

    return make_examples()


def test_alpha_means_one_thing_per_config():
    """``alpha`` is the L_G weight; the significance level is ``significance_level`` (the old key still loads)."""
    from personakit.recipes.grag import GRAGEvalConfig

    assert "alpha" not in GRAGEvalConfig.model_fields and GRAGEvalConfig().significance_level == 0.05
    with pytest.warns(FutureWarning, match="'alpha' is now 'significance_level'"):
        assert GRAGEvalConfig(alpha=0.01).significance_level == 0.01


# ----------------------------------------------------------------------------- the recipe skeleton
def _stand_in_results(tmp_path: Path) -> GRAGRecipeResults:
    """A GRAGRecipeResults scored from fixed predictions (no training): two test sets, three systems."""
    from personakit.recipes.base import score_test_set

    refs = ["i like green tea", "my dog is called rex", "i teach chemistry", "we went hiking"]
    preds = {"PreSFT(Hist)": ["i like tea", "my cat", "i teach", "hiking"],
             "PostGRAG": ["i like green tea", "my dog is rex", "i teach chemistry", "we hike"],
             "ICL(Hist) 1-shot": ["tea", "dog", "chemistry", "went"]}
    sets = {name: score_test_set(name, [f"{name}-{i}" for i in range(4)], refs, preds, ["char_f1", "rouge"],
                                 baseline="PreSFT(Hist)", compare=["rougeL"],
                                 extra_rows={"PreSFT(Hist)": {"bpc": 1.5}, "PostGRAG": {"bpc": 1.4},
                                             "ICL(Hist) 1-shot": {"bpc": None}},
                                 inputs=[{"persona": "p", "generic_response": "ok"}] * 4)
            for name in ("test", "convai2")}
    return GRAGRecipeResults(recipe="grag", config={"augment": {"empty_fallback": "Okay."}}, test_sets=sets,
                             timings={"train_s": 1.0, "total_s": 2.0}, sizes={"train": 6, "test": 4},
                             manifest={"seed": 0}, training={"PreSFT(Hist)": {"steps": 2, "seconds": 0.5,
                                                                              "final_loss": 3.2}})


def test_save_returns_the_folder_and_writes_the_four_files(tmp_path):
    results = _stand_in_results(tmp_path)
    folder = results.save(tmp_path / "out")
    assert isinstance(folder, Path) and folder == tmp_path / "out" == results.output_dir
    assert sorted(p.name for p in folder.iterdir()) == FILES
    md = (folder / "results.md").read_text()
    assert md.startswith("# GRAG recipe results") and "## Test set: convai2 (4 examples)" in md
    assert "`bpc`: bits per character" in md and "PreSFT(Hist) 2 steps" in md
    saved = json.loads((folder / "results.json").read_text())
    assert set(saved["test_sets"]) == {"test", "convai2"}
    sig = saved["test_sets"]["test"]["significance"]["PostGRAG"]["rougeL"]
    assert "p_value" in sig and "p" not in sig


def test_predictions_file_scores_through_personakit_evaluate(tmp_path, capsys):
    from personakit.cli import main

    results = _stand_in_results(tmp_path)
    del results.test_sets["convai2"]
    folder = results.save(tmp_path / "out")
    capsys.readouterr()
    assert main(["evaluate", str(folder / "predictions.jsonl"), "--metrics", "rouge", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == set(results.systems)  # one row per system
    for system in results.systems:
        assert rows[system]["rougeL"] == pytest.approx(results.rows[system]["rougeL"])


def test_a_named_extra_test_set_is_augmented_scored_and_reported(tmp_path, capsys):
    from personakit.augment import save_examples
    from personakit.cli import main

    examples = make_examples()
    save_examples(tmp_path / "train.jsonl", examples)
    save_examples(tmp_path / "test.jsonl", examples[:2])
    bare = [ex.model_copy(update={"generic_response": None, "id": f"x{i}"}) for i, ex in enumerate(examples[:3])]
    save_examples(tmp_path / "other.jsonl", bare)
    prompts: list = []
    llm = CallableGenerator(lambda chats: prompts.extend(chats) or ["a generic reply" for _ in chats], batched=True,
                            model_id="fake")
    config = GRAGRecipeConfig.from_dict({
        "data": {"source": "examples", "train_path": str(tmp_path / "train.jsonl"),
                 "test_path": str(tmp_path / "test.jsonl"), "test_sets": {"other": str(tmp_path / "other.jsonl")}},
        "augment": {"cache": False},
        "models": [{"kind": "hist"}, {"kind": "pregrag"}],
        "training": {"epochs": 1, "batch_size": 4, "max_new_tokens": 3, "progress": False},
        "eval": {"metrics": ["char_f1", "rouge", "bpc"]},
        "output_dir": str(tmp_path / "out"),
    })
    results = run_grag_recipe(config, generator=llm, backbone=(build_backbone("t5"), tokenizer_for("t5")),
                              progress=False)
    assert list(results.test_sets) == ["test", "other"] and len(prompts) == 3  # only the extra set lacked R_G
    other = results.test_sets["other"]
    assert other.ids == ["x0", "x1", "x2"] and list(other.rows) == ["PreSFT(Hist)", "PreGRAG"]
    assert all(math.isfinite(row["bpc"]) for row in other.rows.values())
    assert set(other.significance) == {"PreGRAG"}
    assert [ex.generic_response for ex in results.examples["other"]] == ["a generic reply"] * 3
    assert results.sizes["test_other"] == 3 and results.sizes["generated"] == 3
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Test set: test (2 examples)" in md and "## Test set: other (3 examples)" in md
    assert (tmp_path / "out" / "augmented_other.jsonl").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "out" / "predictions.jsonl"), "--metrics", "char_f1", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {f"{t} / {s}" for t in ("test", "other")
                                                       for s in ("PreSFT(Hist)", "PreGRAG")}


def test_a_misspelt_key_in_a_yaml_fails_at_load_naming_the_field(tmp_path):
    from personakit.config import ConfigError
    from personakit.recipes.base import load_recipe_config

    path = tmp_path / "grag.yaml"
    path.write_text("models:\n  - kind: presft-hist\n  - kind: postgrag\n    settings: {extractor_hedas: 4}\n")
    with pytest.raises((ConfigError, ValueError), match=r"extractor_hedas.*did you mean 'extractor_heads'"):
        load_recipe_config("grag", path)
    path.write_text("augment: {max_new_tokns: 8}\n")
    with pytest.raises((ConfigError, ValueError), match=r"max_new_tokns"):
        load_recipe_config("grag", path)
    path.write_text("eval: {metrics: [char_f1, bpc], significance_metric: rougeL}\n")
    with pytest.raises((ConfigError, ValueError), match=r"significance_metric 'rougeL' needs the metric 'rouge'"):
        load_recipe_config("grag", path)


def test_relative_paths_in_a_config_file_resolve_against_its_folder(tmp_path, monkeypatch):
    from personakit.recipes.base import load_recipe_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "grag.yaml").write_text(
        "data: {source: examples, train_path: data/train.jsonl, test_path: ../test.jsonl}\n"
        "augment: {cache_path: cache/llm.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    config = load_recipe_config("grag", folder / "grag.yaml")
    assert config.data.train_path == str(folder / "data" / "train.jsonl")
    assert config.data.test_path == str(tmp_path / "test.jsonl")
    assert config.augment.cache_path == str(folder / "cache" / "llm.jsonl")
    # --set values: the current folder
    again = load_recipe_config("grag", folder / "grag.yaml", overrides=["data.test_path=t.jsonl"])
    assert again.data.test_path == str(tmp_path / "t.jsonl")
    assert GRAGAugmentConfig(cache="auto").cache and GRAGAugmentConfig(cache=None).cache is False  # the old form
    assert GRAGAugmentConfig(cache="x.jsonl").cache_path == "x.jsonl"


@pytest.mark.real_model
def test_personakit_run_grag_tiny_end_to_end(tmp_path, capsys):
    """`personakit run grag --config tiny`, shrunk: SmolLM2 augments, trains two LoRA models and answers ICL(Hist)."""
    from personakit.cli import main

    out = tmp_path / "run"
    assert main(["run", "grag", "--config", "tiny", "--output-dir", str(out), "--no-progress",
                 "--set", "data.max_train=4", "--set", "data.max_test=2",
                 "--set", "models=[{kind: presft-hist}, {kind: postgrag, alpha: 0.5, beta: 0.05}]",
                 "--set", "training.batch_size=4", "--set", "training.max_new_tokens=8",
                 "--set", "augment.max_new_tokens=12", "--set", "icl.max_new_tokens=8",
                 "--set", "eval.metrics=[char_f1, rouge, bpc]"]) == 0
    printed = capsys.readouterr().out
    assert "| PostGRAG |" in printed and str(out) in printed
    assert sorted(p.name for p in out.iterdir() if p.name in FILES) == FILES
    assert main(["evaluate", str(out / "predictions.jsonl"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows) == {"PreSFT(Hist)", "PostGRAG", "ICL(Hist) 1-shot"}
