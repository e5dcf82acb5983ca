"""The shared collator pieces: one causal-LM convention (prompt kept at its end, target capped then EOS,
the same batch keys) for the questioner and CoPersona collators; padding helpers; the special-token probe."""

from __future__ import annotations

import pytest
import torch
from _questioner_kit import build_tokenizer
from _questioner_kit import make_examples as questioner_examples
from grag_testkit import tokenizer_for

from personakit.models.collators import CausalLMCollator, TokenCollator, probe_special_tokens
from personakit.models.padding import left_pad, pad_rows, pad_stack, trim_padding
from personakit.models.questioner import QuestionerCollator
from personakit.types import ResponseExample, Turn

LONG = ResponseExample(id="d:1", history=[Turn(speaker="user", text="hello how are you " * 5)],
                       response="i am fine thanks " * 4)


class _Plain(CausalLMCollator):
    def prompt_text(self, example):
        return example.history[-1].text


def _target(batch, row=0):
    labels = batch["labels"][row]
    return labels[labels != -100].tolist()


def test_causal_lm_convention_caps_prompt_end_and_target_start():
    tok = build_tokenizer()
    coll = _Plain(tok, max_prompt_tokens=5, max_response_tokens=3)
    batch = coll([LONG])
    assert set(batch) == {"prompt_ids", "prompt_mask", "input_ids", "attention_mask", "labels"}
    words = tok("hello how are you " * 5, add_special_tokens=False)["input_ids"]
    assert batch["prompt_ids"][0].tolist() == [tok.bos_token_id] + words[-5:]  # BOS + the prompt's end
    resp = tok(" i am fine thanks " * 4, add_special_tokens=False)["input_ids"]
    assert _target(batch) == resp[:3] + [tok.eos_token_id]  # first 3 tokens, then EOS
    n = int(batch["prompt_mask"][0].sum())
    assert torch.equal(batch["input_ids"][0, :n], batch["prompt_ids"][0, :n])
    assert set(coll.__class__(tok, with_targets=False)([LONG])) == {"prompt_ids", "prompt_mask"}
    no_bos = _Plain(tok, max_prompt_tokens=5, add_special_prefix=False)([LONG])
    assert no_bos["prompt_ids"][0].tolist() == words[-5:]
    with pytest.raises(ValueError, match="max_response_tokens"):
        _Plain(tok, max_response_tokens=0)
    with pytest.raises(ValueError, match="empty"):
        coll([])


def test_questioner_and_copersona_collators_share_the_convention():
    pytest.importorskip("torch_geometric")
    from copersona_testkit import build_context, examples, make_model

    from personakit.models.copersona import CoPersonaCollator, CoPersonaConfig

    tok = build_tokenizer()
    q = QuestionerCollator(tok, {}, max_response_tokens=2)(questioner_examples(2))
    assert isinstance(QuestionerCollator(tok, {}), CausalLMCollator)
    assert len(_target(q)) <= 3 and _target(q)[-1] == tok.eos_token_id
    model = make_model(build_context())
    config = CoPersonaConfig.from_dict({**model.config.to_dict(), "max_response_tokens": 2})
    c = CoPersonaCollator(model.tokenizer, config, model.context)(examples())
    assert len(_target(c)) == 3 and _target(c)[-1] == model.tokenizer.eos_token_id
    shared = {"prompt_ids", "prompt_mask", "input_ids", "attention_mask", "labels"}
    assert shared <= set(q) and shared <= set(c)
    assert set(q) - shared == {"questioner_ids", "cluster_ids"} and set(c) - shared == {"user_index"}


def test_copersona_old_max_target_tokens_gives_the_same_batches():
    from personakit.models.copersona import CoPersonaConfig

    assert CoPersonaConfig(max_target_tokens=64).max_response_tokens == 63 == CoPersonaConfig().max_response_tokens
    with pytest.raises(ValueError, match="max_target_tokens"):
        CoPersonaConfig(max_target_tokens=1)


def test_probe_special_tokens_and_token_collator_pad_rules():
    assert probe_special_tokens(tokenizer_for("bart")) == ([1], [2])  # <s> ... </s>
    assert probe_special_tokens(tokenizer_for("llama")) == ([1], [])  # <s> ...
    tok = build_tokenizer()
    tok.pad_token = None
    assert TokenCollator(tok).pad_token_id == tok.eos_token_id  # EOS pads
    with pytest.raises(ValueError, match="pad token"):
        TokenCollator(tok, pad_falls_back_to_eos=False)


def test_padding_helpers():
    assert pad_rows([[5, 6], [7], []], -1).tolist() == [[5, 6], [7, -1], [-1, -1]]
    ids, mask = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]]), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    assert trim_padding(ids, mask)[0].tolist() == [[5, 6], [7, 0]]
    assert left_pad(ids, mask, 0)[0].tolist() == [[5, 6], [0, 7]]
    assert pad_stack([torch.ones(1, 2), torch.zeros(1, 3)], 9).tolist() == [[1, 1, 9], [0, 0, 0]]
    from personakit.models.grag import encoding

    assert encoding.left_pad is left_pad and encoding.pad_stack is pad_stack  # the old import path works
