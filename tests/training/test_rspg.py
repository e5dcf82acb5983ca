"""RSPGTrainer: learning a known selection task, exact resume, schedule, item checks, evaluation helpers."""

from __future__ import annotations

import json
import random
import time

import pytest
import torch

from personakit.functional.selector import (
    best_single_retriever,
    oracle_bounds,
    oracle_lower_bound,
    oracle_upper_bound,
    retriever_means,
    selected_performance,
    selection_success_rate,
)
from personakit.retrieval.selector import RetrieverSelector
from personakit.training.checkpoint import latest_checkpoint, list_checkpoints
from personakit.training.rspg import RSPGItem, RSPGTrainer, RSPGTrainerConfig, as_rspg_items

KEYS = ["red", "green", "blue"]
FILL = ["the", "a", "news", "story", "about", "today", "user", "wrote"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread (and the test machine is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_bert(seed: int = 0, hidden: int = 16, heads: int = 2, dropout: float = 0.0):
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + KEYS + FILL + ["input", "doc"])}
    tok = BertTokenizer(vocab=vocab)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads,
                                 intermediate_size=2 * hidden, max_position_embeddings=32, hidden_dropout_prob=dropout,
                                 attention_probs_dropout_prob=dropout))
    return model, tok


def matching_task(n: int, seed: int, post: bool = False) -> list[RSPGItem]:
    """3 retrievers; each retrieves one document, tagged with a colour; the input asks for one colour.

    EVAL is 1 for the retriever whose document colour matches the input's colour, else 0;
    which retriever that is changes from input to input.  Pre: the prompt holds the
    document.  Post: the prompts are alike and the LLM's output carries the colour.
    """
    rng = random.Random(seed)
    items = []
    for k in range(n):
        want = rng.randrange(3)
        docs = rng.sample(range(3), 3)  # retriever i found a document of colour docs[i]
        fill = rng.choice(FILL)
        if post:
            prompts = [f"input {KEYS[want]} {fill}"] * 3
            outputs = [f"doc {KEYS[d]}" for d in docs]
        else:
            prompts = [f"input {KEYS[want]} {fill} doc {KEYS[d]}" for d in docs]
            outputs = None
        items.append(RSPGItem(prompts=prompts, outputs=outputs, evals=[float(d == want) for d in docs], id=f"x{k}"))
    return items


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_selector_learns_the_known_best_retriever(mode):
    model, tok = tiny_bert(seed=0, hidden=64, heads=4)
    selector = RetrieverSelector((model, tok), mode=mode, pooling="mean", max_length=32)
    train, test = matching_task(96, seed=0, post=mode == "post"), matching_task(60, seed=1, post=mode == "post")
    trainer = RSPGTrainer(selector, num_epochs=20, batch_size=16, gradient_accumulation_steps=1, learning_rate=1e-3,
                          warmup_ratio=0.0, target_temperature=0.1, progress_bar=False)
    before = trainer.evaluate(test)
    start = time.perf_counter()
    out = trainer.train(train, eval_items=test)
    elapsed = time.perf_counter() - start
    assert before["success_rate"] < 0.6
    assert out.eval_metrics["success_rate"] >= 0.9, out.eval_metrics
    assert out.eval_metrics["selected_eval"] > out.eval_metrics["best_single_eval"] + 0.3
    assert out.eval_metrics["oracle_upper"] == 1.0 and out.eval_metrics["oracle_lower"] == 0.0
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    assert out.global_step == 20 * 6 and len(out.history) == 120
    assert elapsed < 60  # about 10 s on one free CPU thread


def _fresh(seed=0, dropout=0.1, mode="pre"):
    model, tok = tiny_bert(seed=seed, dropout=dropout)
    torch.manual_seed(123)
    return RetrieverSelector((model, tok), mode=mode, pooling="cls", max_length=32)


class _Crash(RuntimeError):
    pass


def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path):
    items = matching_task(20, seed=3)
    common = dict(num_epochs=3, batch_size=3, gradient_accumulation_steps=2, learning_rate=5e-3, warmup_ratio=0.2,
                  save_every=3, keep_last=2, progress_bar=False, seed=7)
    ref = _fresh()
    ref_out = RSPGTrainer(ref, output_dir=str(tmp_path / "ref"), **common).train(items)
    assert ref_out.global_step == 12  # 20 items / 3 = 7 micro-batches -> 4 steps per epoch

    def crash_at_5(record):
        if record["step"] == 5:
            raise _Crash("simulated interruption")

    run_dir = tmp_path / "run"
    with pytest.raises(_Crash):
        RSPGTrainer(_fresh(), output_dir=str(run_dir), **common).train(items, callback=crash_at_5)
    assert latest_checkpoint(run_dir).name == "checkpoint-00000003"
    torch.manual_seed(999)  # the RNG state is restored from the checkpoint, whatever it is now
    resumed = _fresh(seed=5)  # different initial weights: all of them come from the checkpoint
    out = RSPGTrainer(resumed, output_dir=str(run_dir), **common).train(items)
    assert out.resumed_from.name == "checkpoint-00000003" and out.global_step == 12
    assert [r["step"] for r in out.history] == list(range(4, 13))
    for (name, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6, msg=name)
    losses_ref = [json.loads(line)["loss"] for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))  # steps 4-5 of the stopped run were dropped
    assert [r["loss"] for r in log] == pytest.approx(losses_ref, rel=1e-5)
    assert [p.name for p in list_checkpoints(run_dir)] == ["checkpoint-00000009", "checkpoint-00000012"]
    # a finished run does nothing more
    again = RSPGTrainer(_fresh(), output_dir=str(run_dir), **common).train(items)
    assert again.global_step == 12 and again.history == []


def test_gradient_accumulation_matches_one_large_batch():
    items = matching_task(8, seed=4)
    common = dict(max_steps=1, learning_rate=1e-2, warmup_ratio=0.0, shuffle=False, progress_bar=False,
                  max_grad_norm=None)
    one = RSPGTrainer(_fresh(dropout=0.0), batch_size=8, gradient_accumulation_steps=1, **common).train(items)
    acc = RSPGTrainer(_fresh(dropout=0.0), batch_size=3, gradient_accumulation_steps=3, **common).train(items)
    # micro-batches of 3, 3 and 2 inputs, weighted by size: the same mean loss and the same gradient
    assert acc.history[0]["loss"] == pytest.approx(one.history[0]["loss"], rel=1e-6)
    assert acc.history[0]["grad_norm"] == pytest.approx(one.history[0]["grad_norm"], rel=1e-5)
    assert one.history[0]["grad_norm"] > 0


def test_linear_schedule_with_warmup_and_logs():
    items = matching_task(8, seed=5)
    records = []
    out = RSPGTrainer(_fresh(), max_steps=8, batch_size=4, gradient_accumulation_steps=1, learning_rate=0.1,
                      warmup_ratio=0.25, progress_bar=False).train(items, callback=records.append)
    lrs = [r["lr"] for r in out.history]
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.1 * 5 / 6, 0.1 * 4 / 6, 0.1 * 3 / 6, 0.1 * 2 / 6, 0.1 / 6])
    assert records == out.history
    assert {"step", "epoch", "loss", "success_rate", "lr", "grad_norm"} <= set(out.history[0])
    assert out.history[-1]["epoch"] == pytest.approx(4.0)  # 2 steps per epoch


def test_post_items_need_outputs_and_items_are_validated():
    post = _fresh(mode="post")
    with pytest.raises(ValueError, match="outputs"):
        RSPGTrainer(post, progress_bar=False).train(matching_task(4, seed=0))
    with pytest.raises(ValueError, match=r"items\[1\] \(id 'b'\): field 'evals'"):
        as_rspg_items([{"prompts": ["p", "q"], "evals": [1, 0]}, {"prompts": ["p", "q"], "evals": [1], "id": "b"}])
    with pytest.raises(ValueError, match=r"items\[0\]: field 'evals'\[1\] is not a number"):
        as_rspg_items([{"prompts": ["p", "q"], "evals": [1, "high"]}])
    with pytest.raises(ValueError, match=r"items\[1\]: 3 prompts"):
        as_rspg_items([RSPGItem(["p", "q"], [0, 1]), RSPGItem(["p", "q", "r"], [0, 1, 0])])
    with pytest.raises(ValueError, match="unknown fields"):
        as_rspg_items([{"prompts": ["p"], "evals": [1], "score": 2}])
    with pytest.raises(ValueError, match="field 'outputs'"):
        as_rspg_items([{"prompts": ["p", "q"], "evals": [1, 0], "outputs": ["only one"]}])
    ok = as_rspg_items([{"prompts": ("p", "q"), "evals": [1, 0], "outputs": ["a", "b"], "id": 3}])
    assert ok == [RSPGItem(prompts=["p", "q"], evals=[1.0, 0.0], outputs=["a", "b"], id="3")]


def test_trainer_config():
    with pytest.raises(Exception, match="output_dir"):
        RSPGTrainerConfig(save_every=10)
    cfg = RSPGTrainerConfig()
    assert (cfg.learning_rate, cfg.warmup_ratio, cfg.max_grad_norm, cfg.num_epochs) == (1e-5, 0.05, 1.0, 20)
    assert cfg.batch_size * cfg.gradient_accumulation_steps == 64
    trainer = RSPGTrainer(_fresh(), cfg, num_epochs=2)
    assert trainer.config.num_epochs == 2 and trainer.total_steps(100) == 2 * 2  # 13 micro-batches / 8 -> 2 steps
    assert RSPGTrainerConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(TypeError):
        RSPGTrainer(torch.nn.Linear(2, 1))


def test_evaluate_agrees_with_the_functional_helpers():
    items = matching_task(10, seed=6)
    trainer = RSPGTrainer(_fresh(), progress_bar=False)
    scores = trainer.predict(items)
    evals = torch.tensor([it.evals for it in items], dtype=torch.float64)
    metrics = trainer.evaluate(items)
    chosen = scores.argmax(-1)
    assert metrics["success_rate"] == selection_success_rate(chosen, evals)
    assert metrics["selected_eval"] == selected_performance(chosen, evals)
    assert (metrics["oracle_lower"], metrics["oracle_upper"]) == (0.0, 1.0)
    assert not trainer.selector.training


# ----------------------------------------------------------- functional helpers (Tables 3-5)
EVALS = [[0.2, 0.5, 0.5],   # tie for best between retrievers 1 and 2
         [1.0, 0.0, 0.3],
         [0.4, 0.4, 0.4],   # every retriever is best
         [0.0, 0.1, 0.9]]


def test_success_rate_counts_any_tied_best_as_success():
    assert selection_success_rate([1, 0, 2, 2], EVALS) == 1.0
    assert selection_success_rate([2, 0, 0, 2], EVALS) == 1.0
    assert selection_success_rate([0, 0, 1, 1], EVALS) == 0.5  # rows 0 and 3 wrong
    assert selection_success_rate(torch.tensor([0, 2, 1, 0]), torch.tensor(EVALS)) == 0.25
    assert selection_success_rate([0, 0, 0, 2], [[0.5 - 1e-9, 0.5, 0.1]] + EVALS[1:], atol=1e-6) == 1.0
    with pytest.raises(ValueError, match="rows"):
        selection_success_rate([0], EVALS)
    with pytest.raises(ValueError, match="indices"):
        selection_success_rate([0, 0, 0, 3], EVALS)


def test_oracle_bounds_and_selected_performance_hand_values():
    assert oracle_upper_bound(EVALS) == pytest.approx((0.5 + 1.0 + 0.4 + 0.9) / 4)
    assert oracle_lower_bound(EVALS) == pytest.approx((0.2 + 0.0 + 0.4 + 0.0) / 4)
    assert oracle_bounds(EVALS) == (oracle_lower_bound(EVALS), oracle_upper_bound(EVALS))
    assert selected_performance([0, 2, 1, 1], EVALS) == pytest.approx((0.2 + 0.3 + 0.4 + 0.1) / 4)
    assert retriever_means(EVALS).tolist() == pytest.approx([0.4, 0.25, 0.525])
    assert best_single_retriever(EVALS) == (2, pytest.approx(0.525))
    lower, upper = oracle_bounds(EVALS)
    assert lower <= selected_performance([0, 1, 2, 0], EVALS) <= upper
    with pytest.raises(ValueError, match=r"\[B, R\]"):
        oracle_upper_bound([1.0, 2.0])
