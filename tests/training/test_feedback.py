"""LLMFeedbackScorer: per-document and per-prompt EVAL, batching, de-duplication, persistent cache, resume."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import personakit.training.feedback as feedback_module
from personakit.eval.lamp import lamp_eval_fn
from personakit.llm import CallableGenerator, GenerationSettings, HFGenerator, ResponseCache
from personakit.retrieval import BM25Retriever
from personakit.retrieval.lamp_prompts import LaMPPromptBuilder
from personakit.training.feedback import LLMFeedbackScorer, feedback_settings
from personakit.types import ProfileExample, ProfileItem, UserProfile


def _examples(n: int = 3) -> list[ProfileExample]:
    out = []
    for i in range(n):
        items = [ProfileItem(id=f"{i}-{j}", text=f"news {i} {j} about town", fields={"title": f"title {j} words"})
                 for j in range(4)]
        out.append(ProfileExample(id=f"q{i}", task="LaMP-4", input=f"Generate a headline for the following article: story {i}",
                                  profile=UserProfile(user_id=f"u{i}", items=items), target=f"title {i} words"))
    return out


def _title_copier(calls: list[int] | None = None, fail_after: int | None = None):
    """A batched stand-in LLM: answers the first quoted title of each prompt; records batch sizes."""
    state = {"batches": 0}

    def fn(prompts):
        if fail_after is not None and state["batches"] >= fail_after:
            raise RuntimeError("killed")
        state["batches"] += 1
        if calls is not None:
            calls.append(len(prompts))
        return [p.split('"')[1] if '"' in p else "nothing" for p in prompts]

    return CallableGenerator(fn, model_id="title-copier", batched=True, batch_size=4)


def test_doctests():
    assert doctest.testmod(feedback_module).failed == 0


def test_scores_match_eval_of_outputs():
    examples = _examples()
    calls: list[int] = []
    scorer = LLMFeedbackScorer(_title_copier(calls), "LaMP-4")
    scores = scorer.score_candidates(examples, [ex.profile.items for ex in examples])
    f = lamp_eval_fn("LaMP-4")
    assert len(scores) == 3
    for i, (ex, row) in enumerate(zip(examples, scores)):
        assert row.shape == (4,) and row.dtype == np.float64
        expected = [f(f"title {j} words", ex.target) for j in range(4)]
        np.testing.assert_allclose(row, expected)
        assert row[i] == 1.0  # the document whose title is the target
    # every (example, document) prompt in batches of 4: 12 distinct prompts -> 4 + 4 + 4
    assert calls == [4, 4, 4]
    assert scorer.generated == 12


def test_duplicate_prompts_are_generated_once():
    ex = _examples(1)[0]
    calls: list[int] = []
    scorer = LLMFeedbackScorer(_title_copier(calls), "LaMP-4")
    items = ex.profile.items
    scores = scorer.score_candidates([ex, ex], [items[:2] + items[:2], items[:2]])
    assert sum(calls) == 2
    np.testing.assert_allclose(scores[0], np.r_[scores[1], scores[1]])


def test_persistent_cache_second_call_generates_nothing(tmp_path):
    examples = _examples()
    cache_path = tmp_path / "feedback.jsonl"
    calls: list[int] = []
    first = LLMFeedbackScorer(_title_copier(calls), "LaMP-4", cache=cache_path).score_candidates(
        examples, [ex.profile.items for ex in examples])
    assert sum(calls) == 12 and len(ResponseCache(cache_path)) == 12
    calls.clear()
    scorer = LLMFeedbackScorer(_title_copier(calls), "LaMP-4", cache=str(cache_path))
    again = scorer.score_candidates(examples, [ex.profile.items for ex in examples])
    assert calls == []  # served from the file
    assert scorer.generated == 0 and scorer.requested == 12
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # other settings are other cache entries
    calls.clear()
    LLMFeedbackScorer(_title_copier(calls), "LaMP-4", cache=cache_path, settings={"max_new_tokens": 5}).score_candidates(
        examples[:1], [examples[0].profile.items[:1]])
    assert calls == [1]


def test_interrupted_run_resumes(tmp_path):
    examples = _examples()
    cands = [ex.profile.items for ex in examples]
    cache_path = tmp_path / "feedback.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        LLMFeedbackScorer(_title_copier(fail_after=2), "LaMP-4", cache=cache_path).score_candidates(examples, cands)
    assert len(ResponseCache(cache_path)) == 8  # the two finished batches were kept
    calls: list[int] = []
    resumed = LLMFeedbackScorer(_title_copier(calls), "LaMP-4", cache=cache_path).score_candidates(examples, cands)
    assert calls == [4]  # only the missing batch
    fresh = LLMFeedbackScorer(_title_copier(), "LaMP-4").score_candidates(examples, cands)
    for a, b in zip(resumed, fresh):
        np.testing.assert_array_equal(a, b)


def test_score_prompts_and_item_lists_for_rspg():
    examples = _examples(2)
    builder = LaMPPromptBuilder("LaMP-4")
    scorer = LLMFeedbackScorer(_title_copier(), builder)
    bm25 = BM25Retriever()
    lists = [[[], [r.item for r in bm25.retrieve(builder.query(ex), ex.profile, k=2)], ex.profile.items[::-1]]
             for ex in examples]
    result = scorer.score_item_lists(examples, lists)
    assert [len(p) for p in result.prompts] == [3, 3]
    assert result.prompts[0][0] == examples[0].input  # no retrieval: the bare input
    assert result.outputs[0][0] == "nothing"
    assert result.outputs[1][2] == "title 3 words"  # reversed profile: the first quoted title is entry 3
    np.testing.assert_allclose(result.scores[1], [lamp_eval_fn("LaMP-4")(o, examples[1].target) for o in result.outputs[1]])
    direct = scorer.score_prompts(examples, result.prompts)
    assert direct.outputs == result.outputs


def test_custom_eval_and_settings():
    ex = _examples(1)[0]
    seen = {}

    def fn(prompt, settings):
        seen["settings"] = settings
        return "x"

    scorer = LLMFeedbackScorer(CallableGenerator(fn), LaMPPromptBuilder("LaMP-4"), eval_fn=lambda p, t: float(len(p)),
                               settings=GenerationSettings(max_new_tokens=3))
    np.testing.assert_array_equal(scorer.score_candidates([ex], [ex.profile.items[:2]])[0], [1.0, 1.0])
    assert seen["settings"].max_new_tokens == 3
    assert scorer.eval_name == "<lambda>"
    assert LLMFeedbackScorer(CallableGenerator(fn), "LaMP-4").settings == feedback_settings("LaMP-4")
    assert feedback_settings("LaMP-1").max_new_tokens == 8


def test_errors():
    examples = _examples(2)
    scorer = LLMFeedbackScorer(_title_copier(), "LaMP-4")
    with pytest.raises(ValueError, match="2 examples but 1 candidate lists"):
        scorer.score_candidates(examples, [[]])
    no_target = examples[0].model_copy(update={"target": None})
    with pytest.raises(ValueError, match="example 'q0' has no target"):
        scorer.score_candidates([no_target], [examples[0].profile.items])
    rating = ProfileExample(id="r1", task="LaMP-3", input="review: fine", profile=UserProfile(user_id="u"), target="great")
    with pytest.raises(ValueError, match="example 'r1': lamp3_score: .*target 'great'"):
        LLMFeedbackScorer(CallableGenerator(lambda p: "4"), "LaMP-3").score_candidates(
            [rating], [[ProfileItem(id="a", text="ok", fields={"score": 3})]])
    with pytest.raises(ValueError, match="prompt_builder is required"):
        LLMFeedbackScorer(_title_copier())
    with pytest.raises(TypeError, match="cache must be"):
        LLMFeedbackScorer(_title_copier(), "LaMP-4", cache=3)


def test_default_generator_is_loaded_lazily(monkeypatch):
    loaded = []

    def fake_from_pretrained(name, **kwargs):
        loaded.append((name, kwargs))
        return CallableGenerator(lambda p: "title 0 words", model_id=name)

    monkeypatch.setattr(HFGenerator, "from_pretrained", classmethod(lambda cls, name, **kw: fake_from_pretrained(name, **kw)))
    scorer = LLMFeedbackScorer(prompt_builder="LaMP-4")
    assert loaded == []
    ex = _examples(1)[0]
    assert scorer.score_candidates([ex], [ex.profile.items[:1]])[0].tolist() == [1.0]
    assert loaded == [("smollm2-135m-instruct", {"batch_size": 16})]


def _tiny_hf_generator():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    import torch

    words = ("<pad> <eos> <unk> the is title for a headline generate following article story news town about "
             "0 1 2 3 words : . , and").split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         intermediate_size=32, vocab_size=len(words), max_position_embeddings=256,
                                         pad_token_id=0, eos_token_id=1, bos_token_id=None)).eval()
    return HFGenerator(model, tok, batch_size=4, model_id="tiny-llama")


def test_with_a_tiny_hf_model_batched_equals_one_at_a_time(tmp_path):
    examples = _examples(2)
    cands = [ex.profile.items[:3] for ex in examples]
    gen = _tiny_hf_generator()
    settings = GenerationSettings(max_new_tokens=4)
    batched = LLMFeedbackScorer(gen, "LaMP-4", settings=settings, cache=tmp_path / "c.jsonl")
    single = LLMFeedbackScorer(gen, "LaMP-4", settings=settings, batch_size=1)
    a = batched.score_prompts(examples, batched.candidate_prompts(examples, cands))
    b = single.score_prompts(examples, single.candidate_prompts(examples, cands))
    assert a.outputs == b.outputs  # greedy decoding: batching does not change the outputs
    for x, y in zip(a.scores, b.scores):
        np.testing.assert_array_equal(x, y)
    assert batched.generated == 6
    again = LLMFeedbackScorer(gen, "LaMP-4", settings=settings, cache=tmp_path / "c.jsonl")
    again.score_candidates(examples, cands)
    assert again.generated == 0


@pytest.mark.real_model
def test_real_smollm2_pfg_prompts(smollm2, tmp_path):
    model, tokenizer = smollm2
    gen = HFGenerator(model, tokenizer, batch_size=4, model_id="smollm2-135m-instruct")
    convo = "Persuadee: Hi, what is this about?\nPersuader: A charity for kids.\nPersuadee: Which charity?"
    ex = ProfileExample(id="d:5", task="PFG-LaMP", input=convo, profile=UserProfile(user_id="u"),
                        target="It is Save the Children, they help kids around the world.")
    docs = [ProfileItem(id="a", text="Save the Children helps kids in war zones."), ProfileItem(id="b", text="ok")]
    scorer = LLMFeedbackScorer(gen, "PFG-LaMP", cache=tmp_path / "c.jsonl", settings=feedback_settings("PFG-LaMP", max_new_tokens=12))
    [scores] = scorer.score_candidates([ex], [docs])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    assert scorer.generated == 2
    assert LLMFeedbackScorer(gen, "PFG-LaMP", cache=tmp_path / "c.jsonl", settings=scorer.settings).score_candidates(
        [ex], [docs])[0].tolist() == scores.tolist()


def _pfg_example() -> ProfileExample:
    convo = "Persuadee: Hi.\nPersuader: Would you donate?\nPersuadee: To whom?"
    return ProfileExample(id="d:3", task="PFG-LaMP", input=convo, profile=UserProfile(user_id="u"),
                          target="Save the Children helps kids.")


def test_pfg_outputs_are_post_processed_before_eval(tmp_path):
    ex = _pfg_example()
    docs = [ProfileItem(id="a", text="kids"), ProfileItem(id="b", text="wrong")]
    answers = {"kids": "Persuader: Save the Children helps kids. Persuadee: ok", "wrong": "Persuadee: Who are they?"}
    llm = CallableGenerator(lambda p: next(v for k, v in answers.items() if f'"{k}"' in p), model_id="fixed")
    scorer = LLMFeedbackScorer(llm, "PFG-LaMP", cache=tmp_path / "c.jsonl")
    scored = scorer.score_item_lists([ex], [[docs[:1], docs[1:]]])
    assert scored.outputs[0] == [scorer.prompt_builder.postprocess(answers["kids"]), scorer.prompt_builder.postprocess(
        answers["wrong"])]
    assert scored.outputs[0][0] == "Save the Children helps kids."
    assert scored.scores[0][0] == 1.0
    # the response cache keeps the completions as generated
    cache = ResponseCache(tmp_path / "c.jsonl")
    assert sorted(cache.get(k) for k in cache.keys()) == sorted(answers.values())
    raw = LLMFeedbackScorer(llm, "PFG-LaMP", postprocess=None).score_item_lists([ex], [[docs[:1], docs[1:]]])
    assert raw.outputs[0] == [answers["kids"], answers["wrong"]]
    assert raw.scores[0][0] < 1.0
    upper = LLMFeedbackScorer(llm, "PFG-LaMP", postprocess=str.upper).score_item_lists([ex], [[docs[:1]]])
    assert upper.outputs[0] == [answers["kids"].upper()]


def test_lamp_outputs_are_not_post_processed():
    examples = _examples(1)
    llm = CallableGenerator(lambda p: "Persuader: title 0 words", model_id="labelled")
    scorer = LLMFeedbackScorer(llm, "LaMP-4")
    assert scorer.score_item_lists(examples, [[examples[0].profile.items[:1]]]).outputs == [["Persuader: title 0 words"]]


def test_postprocess_errors():
    with pytest.raises(ValueError, match="postprocess"):
        LLMFeedbackScorer(_title_copier(), "LaMP-4", postprocess="strip")
    with pytest.raises(TypeError, match="postprocess"):
        LLMFeedbackScorer(_title_copier(), "LaMP-4", postprocess=3)
