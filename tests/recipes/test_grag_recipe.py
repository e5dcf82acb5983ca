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

TINY_YAML = REPO_ROOT / "examples" / "configs" / "grag_tiny.yaml"
FULL_YAML = REPO_ROOT / "examples" / "configs" / "grag.yaml"
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
    assert set(results.significance) == set(ROWS[1:] + [icl])
    assert all(s["baseline"] == "PreSFT(Hist)" and s["metric"] == "rougeL" for s in results.significance.values())

    out = tmp_path / "run"
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["rows"]) == results.systems and saved["rows"]["PreGRAG"]["rougeL"] == results.rows["PreGRAG"]["rougeL"]
    assert saved["rows"][icl]["bpc"] is None and saved["config"]["output_dir"] == str(out)
    md = (out / "results.md").read_text()
    assert results.table in md and "Paired two-sided t-test" in md
    for system in results.systems:
        assert f"| {system} |" in md
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 4 and set(json.loads(lines[0])["predictions"]) == set(results.systems)
    assert len((out / "augmented_train.jsonl").read_text().splitlines()) == 6

    # a rerun is served from the response cache: nothing reaches the generic LLM again
    calls2: list = []
    again = run_grag_recipe(config, generator=fake_llm(calls2), backbone=tiny_bart, progress=False, save=False)
    assert calls2 == [] and again.sizes["cached"] == 12 and again.sizes["generated"] == 0
    assert again.rows == results.rows  # seeded: the same numbers


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
    tiny = GRAGRecipeConfig.from_yaml(TINY_YAML)
    assert tiny.icl.enabled and tiny.data.max_train is not None


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
