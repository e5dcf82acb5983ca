import json

import pytest

from personakit.llm import CallableGenerator
from personakit.recipes.demo import DemoResult, run_demo

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
    result = run_demo(n_shot=2, max_examples=6, batch_size=4, generator=gen, output_dir=tmp_path / "out")
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

    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["prediction"] for line in lines] == result.predictions
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"] == result.metrics and saved["n_examples"] == 6


def test_demo_subset_is_seeded_and_evaluable(tmp_path):
    gen = CallableGenerator(lambda chat: "ok", model_id="ok")
    a = run_demo(max_examples=5, seed=1, generator=gen, n_shot=0)
    b = run_demo(max_examples=5, seed=1, generator=gen, n_shot=0)
    c = run_demo(max_examples=5, seed=2, generator=gen, n_shot=0)
    ids = [r["id"] for r in a.records]
    assert ids == [r["id"] for r in b.records] and ids != [r["id"] for r in c.records]
    assert all(id_.startswith("builtin-test-") for id_ in ids)
    full = run_demo(generator=gen, n_shot=0)
    assert len(full.records) > 5
    with pytest.raises(ValueError, match="max_examples"):
        run_demo(max_examples=0, generator=gen)


def test_copy_baseline_row_is_computed_from_the_last_user_turn():
    from personakit.eval import evaluate_texts

    gen = CallableGenerator(lambda chat: "x", model_id="x")
    result = run_demo(max_examples=4, generator=gen, n_shot=1)
    expected = evaluate_texts(
        [r["last_user_turn"] for r in result.records], result.references, metrics=("char_f1", "rouge", "bleu", "meteor")
    )
    assert result.metrics["copy last user turn"] == pytest.approx(expected)


@pytest.mark.real_model
def test_demo_end_to_end_with_smollm2(tmp_path):
    result = run_demo(max_examples=4, max_new_tokens=16, output_dir=tmp_path)
    for key in METRIC_KEYS:
        assert key in result.table.splitlines()[0]
    assert len(result.records) == 4
    assert all(isinstance(p, str) for p in result.predictions)
    assert sum(bool(p.strip()) for p in result.predictions) >= 3
    assert (tmp_path / "metrics.json").exists()
