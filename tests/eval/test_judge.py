"""The pairwise LLM judge: prompts in both orders, reconciliation, retries, Wilson intervals."""

from __future__ import annotations

import doctest
import inspect
import itertools
import json
import math

import pytest
from pydantic import ValidationError

import personakit.eval.judge as judge_module
from personakit.eval.judge import (
    JUDGE_QUESTIONS,
    JudgeQuestionResult,
    PairwiseJudge,
    PairwiseJudgeConfig,
    PairwiseVerdict,
    build_judge_prompt,
    judge_pairs,
    reconcile_verdicts,
    wilson_interval,
)
from personakit.llm import CallableGenerator
from personakit.types import Persona, ResponseExample, Turn


def _example(i: int = 0, generic: str | None = "Sounds fun.") -> ResponseExample:
    return ResponseExample(
        id=f"d{i}:1",
        persona=Persona(sentences=["I have two dogs."]),
        history=[Turn(speaker="user", text=f"Hi {i}!"), Turn(speaker="agent", text="Hello."),
                 Turn(speaker="user", text="Any plans?")],
        response="Walking my dogs.",
        generic_response=generic,
    )


def _shown(chat, label: str) -> str:
    """The text of Response A or B in a judge chat."""
    text = chat[-1]["content"]
    if label == "A":
        return text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
    return text.split("Response B:\n")[1].split("\n\n")[0]


def _reply(choice: str) -> str:
    return json.dumps({q: choice for q in JUDGE_QUESTIONS})


def _prefers_word(word: str):
    """A consistent judge: the response containing ``word`` wins, otherwise Similar."""

    def fn(chat):
        a, b = (word in _shown(chat, label) for label in "AB")
        return _reply("A" if a and not b else "B" if b and not a else "Similar")

    return fn


def test_doctests():
    assert doctest.testmod(judge_module, optionflags=doctest.ELLIPSIS).failed == 0


# ---------------------------------------------------------------------- prompts
def test_both_orders_are_asked_with_a_and_b_exchanged():
    seen = []
    gen = CallableGenerator(lambda chat: seen.append(chat) or _reply("Similar"))
    PairwiseJudge(gen).judge([_example()], ["first system"], ["second system"])
    assert len(seen) == 2
    assert (_shown(seen[0], "A"), _shown(seen[0], "B")) == ("first system", "second system")
    assert (_shown(seen[1], "A"), _shown(seen[1], "B")) == ("second system", "first system")
    assert seen[0] == build_judge_prompt(_example(), "first system", "second system")
    assert seen[1] == build_judge_prompt(_example(), "second system", "first system")


def test_prompt_shows_persona_last_turns_generic_and_questions():
    chat = build_judge_prompt(_example(), "ra", "rb", max_history_turns=2)
    assert [m["role"] for m in chat] == ["system", "user"]
    user = chat[1]["content"]
    assert "I have two dogs." in user and "Sounds fun." in user
    assert "Agent: Hello.\nUser: Any plans?" in user and "Hi 0!" not in user  # only the last 2 turns
    for key in JUDGE_QUESTIONS:
        assert f'"{key}"' in user
    assert "Other generic" in build_judge_prompt(_example(), "ra", "rb", generic_response="Other generic")[1]["content"]


def test_missing_generic_response_is_an_error():
    with pytest.raises(ValueError, match="no generic_response; pass generic_responses="):
        PairwiseJudge(CallableGenerator(lambda c: _reply("A"))).judge([_example(generic=None)], ["a"], ["b"])
    # given explicitly, it is used
    seen = []
    gen = CallableGenerator(lambda chat: seen.append(chat) or _reply("A"))
    PairwiseJudge(gen).judge([_example(generic=None)], ["a"], ["b"], generic_responses=["my generic"])
    assert "my generic" in seen[0][-1]["content"]


# ---------------------------------------------------------------------- reconciliation
EXPECTED = {
    ("A", "B"): "win",       # system 1 preferred in both orders
    ("B", "A"): "loss",      # system 2 preferred in both orders
    ("Similar", "Similar"): "tie",
    ("A", "A"): "tie",       # position bias: the first shown wins twice
    ("B", "B"): "tie",       # position bias: the second shown wins twice
    ("A", "Similar"): "tie",
    ("Similar", "B"): "tie",
    ("B", "Similar"): "tie",
    ("Similar", "A"): "tie",
}


@pytest.mark.parametrize("first, second", sorted(EXPECTED))
def test_reconcile_every_case(first, second):
    assert reconcile_verdicts(first, second) == EXPECTED[(first, second)]


def test_reconcile_cases_are_exhaustive():
    assert set(EXPECTED) == set(itertools.product(["A", "B", "Similar"], repeat=2))


def test_position_biased_judge_gives_only_ties():
    for choice in ("A", "B"):
        result = judge_pairs(CallableGenerator(lambda chat, *, c=choice: _reply(c)),
                             [_example(i) for i in range(3)], ["dogs!", "x", "y"], ["no", "dogs", "z"])
        for q in result.questions.values():
            assert (q.wins, q.ties, q.losses, q.consistent) == (0, 3, 0, 0)
            assert q.consistency == 0.0 and math.isnan(q.decided_win_rate)


def test_consistent_judge_gives_wins_and_losses():
    result = judge_pairs(CallableGenerator(_prefers_word("dogs")), [_example(i) for i in range(4)],
                         ["my dogs", "my dogs", "plain", "same"], ["plain", "plain", "my dogs", "same"],
                         names=("ours", "base"))
    assert result.names == ("ours", "base")
    for key, q in result.questions.items():
        assert q.question == key
        assert (q.wins, q.ties, q.losses, q.n, q.decided, q.consistent) == (2, 1, 1, 4, 3, 4)
        assert q.win_rate == 0.5 and q.tie_rate == 0.25 and q.loss_rate == 0.25
    assert [ex.outcomes["balance"] for ex in result.examples] == ["win", "win", "loss", "tie"]
    assert result.examples[0].first.balance == "A" and result.examples[0].second.balance == "B"
    assert result.n == 4 and result.n_failed == 0


def test_questions_are_reconciled_independently():
    reply = iter([json.dumps({"naturalness": "A", "persona_accuracy": "A", "generic_value": "Similar", "balance": "B"}),
                  json.dumps({"naturalness": "B", "persona_accuracy": "A", "generic_value": "B", "balance": "A"})])
    result = judge_pairs(CallableGenerator(lambda chat: next(reply)), [_example()], ["x"], ["y"])
    assert result.examples[0].outcomes == {"naturalness": "win", "persona_accuracy": "tie",
                                           "generic_value": "tie", "balance": "loss"}


# ---------------------------------------------------------------------- verdict parsing, retries, failures
@pytest.mark.parametrize("raw, value", [
    ("A", "A"), (" a ", "A"), ("Response B", "B"), ("b.", "B"), ("SIMILAR", "Similar"), ("tie", "Similar"),
    ('"A"', "A"),
])
def test_verdict_values_are_read_leniently(raw, value):
    verdict = PairwiseVerdict.model_validate({q: raw for q in JUDGE_QUESTIONS} | {"why": "ignored"})
    assert verdict.naturalness == value


@pytest.mark.parametrize("raw", ["C", "both good", 1, None])
def test_invalid_verdict_values_are_rejected(raw):
    with pytest.raises(ValidationError, match='expected "A", "B" or "Similar"'):
        PairwiseVerdict.model_validate({q: raw for q in JUDGE_QUESTIONS})


def test_invalid_json_is_retried_then_accepted():
    calls = []

    def fn(chat):
        calls.append(chat)
        return "I think A is better." if len(chat) == 2 else "```json\n" + _reply("A") + "\n```"

    result = judge_pairs(CallableGenerator(fn), [_example()], ["x"], ["y"], max_attempts=2)
    assert len(calls) == 4  # two orders, each asked twice
    assert calls[2][-1]["role"] == "user" and "could not be used" in calls[2][-1]["content"]
    assert result.n_failed == 0 and result.examples[0].outcomes["naturalness"] == "tie"


def test_always_invalid_is_a_recorded_failure():
    def fn(chat):
        shown_first = _shown(chat if len(chat) == 2 else chat[:2], "A")
        return "no idea" if shown_first == "bad" else _reply("Similar")

    result = judge_pairs(CallableGenerator(fn), [_example(0), _example(1)], ["bad", "ok"], ["ok", "fine"],
                         max_attempts=2)
    assert result.n == 2 and result.n_failed == 1 and result.failed_ids == ["d0:1"]
    failed = result.examples[0]
    assert failed.failed and failed.outcomes is None and failed.first is None
    assert failed.second is not None  # the swapped order did validate; kept for inspection
    for q in result.questions.values():
        assert q.n == 1 and q.ties == 1  # the failed pair is left out of the rates
    assert "1 failed" in result.to_markdown()
    assert result.to_dict()["examples"][0]["outcomes"] is None


def test_cache_makes_a_rerun_free(tmp_path):
    calls = []
    gen = CallableGenerator(lambda chat: calls.append(chat) or _reply("Similar"), model_id="fake-judge")
    path = tmp_path / "judge.jsonl"
    first = judge_pairs(gen, [_example(0), _example(1)], ["a", "b"], ["c", "d"], cache=path)
    assert len(calls) == 4 and path.is_file()
    second = judge_pairs(gen, [_example(0), _example(1)], ["a", "b"], ["c", "d"], cache=str(path))
    assert len(calls) == 4
    assert second.to_dict() == first.to_dict()


# ---------------------------------------------------------------------- Wilson interval
def test_wilson_interval_against_hand_computation():
    # k = 8, n = 10, z = 1.959964: p = 0.8, z^2 = 3.841459,
    # centre = (0.8 + 3.841459 / 20) / (1 + 3.841459 / 10) = 0.992073 / 1.384146 = 0.716740,
    # half = (1.959964 / 1.384146) * sqrt(0.8 * 0.2 / 10 + 3.841459 / 400) = 1.416009 * 0.160011 = 0.226577
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.716740 - 0.226577, abs=1e-5)
    assert high == pytest.approx(0.716740 + 0.226577, abs=1e-5)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)


def test_wilson_interval_edges():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - 0.2775, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    narrow, wide = wilson_interval(8, 10, 0.5), wilson_interval(8, 10, 0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, 1.0)


def test_question_result_intervals():
    q = JudgeQuestionResult("balance", wins=8, ties=5, losses=2, consistent=13)
    assert q.win_rate_interval == wilson_interval(8, 15)
    assert q.decided_win_rate_interval == wilson_interval(8, 10)
    assert q.to_dict()["decided_win_rate"] == 0.8


# ---------------------------------------------------------------------- report
def test_markdown_and_dict_report():
    result = judge_pairs(CallableGenerator(_prefers_word("dogs")), [_example(i) for i in range(2)],
                         ["my dogs", "same"], ["plain", "same"], names=("PostGRAG", "PreSFT"))
    lines = result.to_markdown().splitlines()
    assert lines[0] == ("| question | n | PostGRAG wins | ties | PreSFT wins | PostGRAG win rate "
                        "| PostGRAG decided win rate | consistent |")
    assert lines[2] == "| naturalness | 2 | 1 | 1 | 0 | 50.0% [9.5, 90.5] | 100.0% [20.7, 100.0] | 100.0% |"
    assert [line.split(" | ")[0] for line in lines[2:6]] == [
        "| naturalness", "| persona accuracy", "| value beyond generic", "| balance"]
    assert "2 of 2 pairs judged" in lines[-1] and "0 failed" in lines[-1]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["names"] == ["PostGRAG", "PreSFT"] and data["n"] == 2 and data["n_failed"] == 0
    assert data["questions"]["balance"]["wins"] == 1 and len(data["examples"]) == 2
    assert "examples" not in result.to_dict(include_examples=False)


# ---------------------------------------------------------------------- argument checks
@pytest.mark.parametrize("kwargs, arg", [
    ({"responses_a": ["x"]}, "responses_a"),
    ({"responses_b": ["x", "y", "z"]}, "responses_b"),
    ({"generic_responses": ["g"]}, "generic_responses"),
])
def test_length_mismatch_names_the_argument(kwargs, arg):
    args = {"examples": [_example(0), _example(1)], "responses_a": ["a", "b"], "responses_b": ["c", "d"]} | kwargs
    with pytest.raises(ValueError, match=f"judge: {arg} has {len(kwargs[arg])} entries but examples has 2"):
        PairwiseJudge(CallableGenerator(lambda c: _reply("A"))).judge(**args)


def test_other_argument_errors():
    judge = PairwiseJudge(CallableGenerator(lambda c: _reply("A")))
    with pytest.raises(ValueError, match="examples is empty"):
        judge.judge([], [], [])
    with pytest.raises(TypeError, match="responses_a must be a list"):
        judge.judge([_example()], "a", ["b"])
    with pytest.raises(TypeError, match=r"examples\[0\] is dict"):
        judge.judge([{"id": "x"}], ["a"], ["b"])
    with pytest.raises(ValueError, match="names must be two different names"):
        judge.judge([_example()], ["a"], ["b"], names=("x", "x"))
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        PairwiseJudge(CallableGenerator(str), max_attempts=0)
    with pytest.raises(TypeError, match="must be a TextGenerator"):
        PairwiseJudge(lambda p: p)


def test_config_mirrors_the_constructor():
    params = set(inspect.signature(PairwiseJudge.__init__).parameters) - {"self", "generator"}
    assert set(PairwiseJudgeConfig.model_fields) == params
    judge = PairwiseJudgeConfig(max_history_turns=2, settings={"max_new_tokens": 32}).build(
        generator=CallableGenerator(str))
    assert judge.max_history_turns == 2 and judge.settings.max_new_tokens == 32


# ---------------------------------------------------------------------- a real (weak) judge
@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_judge_returns_a_consistent_tally(smollm2):
    from personakit.llm import HFGenerator

    model, tokenizer = smollm2
    gen = HFGenerator(model, tokenizer, batch_size=4, model_id="smollm2")
    result = PairwiseJudge(gen, max_attempts=1, settings={"max_new_tokens": 48}).judge(
        [_example(0), _example(1)], ["I'll walk my two dogs in the park.", "Nothing much."],
        ["Nothing much.", "Maybe I'll take my dogs to the beach."])
    assert result.n == 2
    for q in result.questions.values():
        assert q.wins + q.ties + q.losses == result.n - result.n_failed


# ---------------------------------------------------------------------- answer="choice"
class _LikelihoodStub(CallableGenerator):
    """A local-model stand-in: ``prefill`` returns next-token logits preferring the response that mentions dogs."""

    class _Tok:
        vocab = {"A": 0, "B": 1, "Similar": 2}

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [self.vocab[text]]}

    def __init__(self):
        super().__init__(lambda chat: "unused")
        self.tokenizer = self._Tok()
        self.seen: list = []

    def prefill(self, prompts):
        import torch

        self.seen += prompts
        rows = []
        for chat in prompts:
            text = chat[-1]["content"]
            a = text.split("Response A:\n")[1].split("\n")[0]
            b = text.split("Response B:\n")[1].split("\n")[0]
            pick = 0 if "dog" in a and "dog" not in b else 1 if "dog" in b and "dog" not in a else 2
            row = torch.zeros(5)
            row[pick] = 3.0
            row[3] = 10.0  # a token outside the three choices never wins
            rows.append(row)
        return torch.stack(rows)


def test_choice_mode_asks_each_question_alone_and_reads_the_likeliest_choice():
    stub = _LikelihoodStub()
    result = PairwiseJudge(stub, answer="choice", batch_size=3).judge(
        [_example(0), _example(1)], ["I walk my dogs.", "Nothing."], ["Nothing.", "Nothing much."])
    assert len(stub.seen) == 2 * 2 * len(JUDGE_QUESTIONS)  # pairs x orders x questions
    assert all("Answer with one word" in chat[-1]["content"] for chat in stub.seen)
    assert result.n_failed == 0
    for q in result.questions.values():
        assert (q.wins, q.ties, q.losses) == (1, 1, 0)  # the dog reply wins in both orders; the other pair ties
    assert result.examples[0].first.naturalness == "A" and result.examples[0].second.naturalness == "B"


def test_choice_mode_needs_a_local_model():
    with pytest.raises(ValueError, match="HFGenerator"):
        PairwiseJudge(CallableGenerator(lambda chat: "{}"), answer="choice")
    with pytest.raises(ValueError, match="'json' or 'choice'"):
        PairwiseJudge(CallableGenerator(lambda chat: "{}"), answer="vote")
    with pytest.raises(ValueError, match="unknown question"):
        build_judge_prompt(_example(), "a", "b", question="fluency")


@pytest.mark.real_model
@pytest.mark.slow
def test_smollm2_choice_judge_gives_a_verdict_for_every_pair(smollm2):
    from personakit.llm import HFGenerator

    model, tokenizer = smollm2
    gen = HFGenerator(model, tokenizer, batch_size=4, model_id="smollm2")
    result = PairwiseJudge(gen, answer="choice").judge(
        [_example(0), _example(1)], ["I'll walk my two dogs in the park.", "Nothing much."],
        ["Nothing much.", "Maybe I'll take my dogs to the beach."])
    assert result.n == 2 and result.n_failed == 0
    for q in result.questions.values():
        assert q.wins + q.ties + q.losses == 2
