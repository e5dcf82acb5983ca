import json
import math
import sys
from pathlib import Path

import pytest
import torch

from personakit.llm import CallableGenerator
from personakit.recipes.demo import DEMO_TEMPLATE, DemoResult, demo_recipe_config, run_demo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "grag"))

from grag_testkit import build_backbone, tokenizer_for  # noqa: E402

METRIC_KEYS = ("char_f1", "rouge1", "rouge2", "rougeL", "bleu", "meteor")


def _echo_persona(chat):
    # a "model" that answers with the first sentence of the persona it is given
    lines = chat[0]["content"].splitlines()
    return lines[lines.index("Your persona:") + 1][2:] + "\nUser: ignored"


def test_demo_with_a_fake_generator_writes_files(tmp_path):
    calls = []

    def fn(chats):
        calls.append(len(chats))
        return [_echo_persona(c) for c in chats]

    gen = CallableGenerator(fn, batched=True, model_id="echo-persona")
    result = run_demo(n_shot=2, max_examples=6, batch_size=4, generator=gen, output_dir=tmp_path / "out",
                      icl_only=True)
    assert isinstance(result, DemoResult)
    assert len(result.records) == 6 and calls == [4, 2]
    assert set(result.metrics) == {"copy last user turn", "ICL(Hist) 2-shot"}
    for row in result.metrics.values():
        assert set(METRIC_KEYS) <= set(row)
    for key in METRIC_KEYS:
        assert key in result.table
    # the fake answers with a persona sentence, never a newline
    for rec in result.records:
        assert rec["prediction"] in rec["persona"] and "\n" not in rec["prediction"]
        assert rec["baseline"] == rec["last_user_turn"]
    report = result.report()
    assert "sample 3" in report and "ICL(Hist) 2-shot" in report

    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 6  # one record per system and example
    assert [r["prediction"] for r in records if r["system"] == result.primary] == result.predictions
    assert [r["reference"] for r in records if r["system"] == "copy last user turn"] == result.references
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"] == result.metrics and saved["n_examples"] == 6
    _evaluate_matches(tmp_path / "out" / "predictions.jsonl", result.metrics)


def _evaluate_matches(path, metrics):
    """`personakit evaluate` scores the demo's predictions file: one row per system, the demo's numbers."""
    import contextlib
    import io

    from personakit.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["evaluate", str(path), "--metrics", "char_f1", "rouge", "--json"]) == 0
    rows = json.loads(buf.getvalue())
    assert set(rows) == set(metrics)
    for system, row in rows.items():
        assert row["rougeL"] == pytest.approx(metrics[system]["rougeL"]) and row["char_f1"] == pytest.approx(
            metrics[system]["char_f1"])


def test_demo_subset_is_seeded_and_evaluable(tmp_path):
    gen = CallableGenerator(lambda chat: "ok", model_id="ok")
    a = run_demo(max_examples=5, seed=1, generator=gen, n_shot=0, icl_only=True)
    b = run_demo(max_examples=5, seed=1, generator=gen, n_shot=0, icl_only=True)
    c = run_demo(max_examples=5, seed=2, generator=gen, n_shot=0, icl_only=True)
    ids = [r["id"] for r in a.records]
    assert ids == [r["id"] for r in b.records] and ids != [r["id"] for r in c.records]
    assert all(id_.startswith("builtin-test-") for id_ in ids)
    full = run_demo(generator=gen, n_shot=0, icl_only=True)
    assert len(full.records) > 5
    with pytest.raises(ValueError, match="max_examples"):
        run_demo(max_examples=0, generator=gen)


def test_copy_baseline_row_is_computed_from_the_last_user_turn():
    from personakit.eval import evaluate_texts

    gen = CallableGenerator(lambda chat: "x", model_id="x")
    result = run_demo(max_examples=4, generator=gen, n_shot=1, icl_only=True)
    expected = evaluate_texts(
        [r["last_user_turn"] for r in result.records], result.references, metrics=("char_f1", "rouge", "bleu", "meteor")
    )
    assert result.metrics["copy last user turn"] == pytest.approx(expected)


GRAG_ROWS = ["PreSFT(Hist)", "PreSFT(TST)", "PreGRAG", "PostGRAG"]


def test_grag_demo_with_a_fake_llm_and_tiny_backbones(tmp_path):
    torch.set_num_threads(1)
    prompts = []

    def fn(chats):
        prompts.extend(chats)
        return ["i am fine thanks" for _ in chats]

    gen = CallableGenerator(fn, batched=True, model_id="fake")
    result = run_demo(n_shot=1, max_examples=3, max_train_examples=4, epochs=1, max_new_tokens=4, generator=gen,
                      backbone=lambda: (build_backbone("bart"), tokenizer_for("bart")),
                      cache_path=tmp_path / "cache.jsonl", output_dir=tmp_path / "out", progress=False,
                      metrics=["char_f1", "rouge", "bleu", "meteor", "bpc"])
    assert result.mode == "grag" and result.primary == "PostGRAG"
    assert list(result.metrics) == GRAG_ROWS + ["ICL(Hist) 1-shot"]
    for system, row in result.metrics.items():
        assert set(METRIC_KEYS) <= set(row) and "bpc" in row
        assert all(v is None or math.isfinite(v) for v in row.values())
        assert (row["bpc"] is None) == system.startswith("ICL")
    assert len(prompts) == 4 + 3 + 3  # augment train and test, then ICL
    # the demo's chat template is used (the history as chat turns), and the persona never reaches the generic LLM
    assert prompts[0][0]["content"].startswith("You are having a casual, friendly chat")
    assert prompts[0][-1]["role"] == "user"
    rec = result.records[0]
    assert rec["generic_response"] == "i am fine thanks" and rec["prediction"] == rec["predictions"]["PostGRAG"]
    report = result.report()
    for system in result.metrics:
        assert system in report
    assert "bpc" in report and "paired t-test" in report and "sample 3" in report
    assert "(7 generated, 0 cached; 0 empty at first, 0 replaced by the fallback, 0 left empty)" in report
    assert (tmp_path / "out" / "results.md").exists() and (tmp_path / "out" / "results.json").exists()
    _evaluate_matches(tmp_path / "out" / "predictions.jsonl", result.metrics)
    assert "↑" not in result.table and "↓" not in result.table  # the table of docs/getting-started.md
    # the response cache makes a rerun generate nothing
    prompts.clear()
    again = run_demo(n_shot=1, max_examples=3, max_train_examples=4, epochs=1, max_new_tokens=4, generator=gen,
                     backbone=lambda: (build_backbone("bart"), tokenizer_for("bart")),
                     cache_path=tmp_path / "cache.jsonl", progress=False, metrics=["rouge"])
    assert prompts == [] and again.recipe.sizes["cached"] == 7 and again.output_dir is None


def test_demo_config_sizes():
    full = demo_recipe_config(cache_path="c.jsonl")
    quick = demo_recipe_config(quick=True, cache_path="c.jsonl")
    assert (full.data.max_train, full.data.max_test, full.training.epochs, full.icl.n_shot) == (32, 16, 2, 2)
    assert (quick.data.max_train, quick.data.max_test, quick.training.epochs) == (16, 8, 1)
    assert [m.label for m in full.models] == GRAG_ROWS and full.backbone == "smollm2" and full.lora == "auto"
    assert full.augment.template == DEMO_TEMPLATE == "builtin-chat" and full.augment.cache_path == "c.jsonl"
    assert {"bertscore", "bpc", "persona_use", "reply_stats"} <= set(full.eval.metrics)
    default = demo_recipe_config()
    assert default.augment.cache and default.augment.cache_path.endswith("demo/llm_cache.jsonl")


@pytest.mark.real_model
def test_demo_end_to_end_with_smollm2(tmp_path):
    result = run_demo(max_examples=3, max_train_examples=8, epochs=1, n_shot=1, max_new_tokens=8,
                      cache_path=tmp_path / "cache.jsonl", output_dir=tmp_path, progress=False)
    assert list(result.metrics) == GRAG_ROWS + ["ICL(Hist) 1-shot"]
    for key in METRIC_KEYS + ("bertscore_f1", "bpc"):
        assert key in result.table.splitlines()[0]
    assert len(result.records) == 3
    assert all(math.isfinite(row["bpc"]) for s, row in result.metrics.items() if not s.startswith("ICL"))
    assert all(math.isfinite(row["persona_use"]) for s, row in result.metrics.items() if not s.startswith("ICL"))
    assert all(0 < row["distinct"] <= 1 for row in result.metrics.values())
    assert all(r["generic_response"] for r in result.records)  # no empty generic response
    assert result.recipe.details["precision"]  # the dtype of each trained model is recorded
    assert (tmp_path / "results.json").exists()


@pytest.mark.real_model
def test_icl_only_demo_end_to_end_with_smollm2(tmp_path):
    result = run_demo(max_examples=4, max_new_tokens=16, output_dir=tmp_path, icl_only=True)
    for key in METRIC_KEYS:
        assert key in result.table.splitlines()[0]
    assert len(result.records) == 4
    assert sum(bool(p.strip()) for p in result.predictions) >= 3
    assert (tmp_path / "metrics.json").exists()
