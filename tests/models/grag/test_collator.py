"""GRAGCollator: the documented formats for every method and architecture."""

from __future__ import annotations

import pytest
import torch
from grag_testkit import BOS, EOS, PAD, build_tokenizer

from personakit.models.grag import GRAGCollator
from personakit.types import Persona, ResponseExample, Turn


def decode(tok, row, mask=None):
    ids = [int(i) for i, m in zip(row, mask if mask is not None else [1] * len(row)) if m]
    return tok.convert_ids_to_tokens(ids)


def test_encoder_decoder_presft_hist_and_tst(examples):
    tok = build_tokenizer("encdec")
    hist = GRAGCollator(tok, method="presft", mode="hist")(examples)
    assert set(hist) == {"input_ids", "attention_mask", "labels"}
    assert decode(tok, hist["input_ids"][0], hist["attention_mask"][0]) == (
        "<s> persona: i love to bake cookies i am a nurse user: hello how are you </s>".split())
    # labels: <s> R_P </s> (BART start token is </s>, not dropped), -100 padding
    assert decode(tok, [i for i in hist["labels"][2] if i != -100]) == "<s> good </s>".split()
    assert (hist["labels"][2] == -100).sum() > 0
    tst = GRAGCollator(tok, method="presft", mode="tst")(examples)
    assert decode(tok, tst["input_ids"][1], tst["attention_mask"][1]) == (
        "<s> persona: i play guitar generic response: i like cats </s>".split())


def test_decoder_start_token_is_dropped_from_labels(examples):
    tok = build_tokenizer("encdec")
    batch = GRAGCollator(tok, method="presft", decoder_start_token_id=BOS)(examples)
    assert decode(tok, [i for i in batch["labels"][2] if i != -100]) == "good </s>".split()


def test_encoder_decoder_pregrag_and_postgrag_fields(examples):
    tok = build_tokenizer("encdec")
    pre = GRAGCollator(tok, method="pregrag")(examples)
    assert set(pre) == {"input_ids", "attention_mask", "labels", "response_ids", "response_mask",
                        "generic_ids", "generic_mask"}
    assert decode(tok, pre["input_ids"][0], pre["attention_mask"][0]) == (
        "<s> persona: i love to bake cookies i am a nurse user: hello how are you generic response: "
        "i am fine thanks </s>").split()
    post = GRAGCollator(tok, method="postgrag")(examples)
    assert set(post) == {"persona_ids", "persona_mask", "history_ids", "history_mask", "generic_ids",
                         "generic_mask", "response_ids", "response_mask", "labels", "generic_labels"}
    assert decode(tok, post["persona_ids"][2], post["persona_mask"][2]) == "<s> (none) </s>".split()
    assert decode(tok, post["history_ids"][1], post["history_mask"][1]) == (
        "<s> user: hi agent: hello user: what do you like to do </s>".split())
    assert decode(tok, post["generic_ids"][1], post["generic_mask"][1]) == "<s> i like cats </s>".split()
    assert decode(tok, [i for i in post["generic_labels"][1] if i != -100]) == "<s> i like cats </s>".split()
    # right padding, masks match pad positions
    assert torch.equal(post["history_ids"] == PAD, post["history_mask"] == 0)


def test_decoder_only_formats(examples):
    tok = build_tokenizer("decoder")
    batch = GRAGCollator(tok, method="presft", architecture="decoder-only")(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "prompt_ids", "prompt_mask"}
    prompt = "<s> persona: i play guitar user: hi agent: hello user: what do you like to do agent:".split()
    assert decode(tok, batch["prompt_ids"][1], batch["prompt_mask"][1]) == prompt
    row = decode(tok, batch["input_ids"][1], batch["attention_mask"][1])
    assert row == prompt + "i love to play guitar at night </s>".split()
    labels = batch["labels"][1]
    assert (labels[: len(prompt)] == -100).all()
    assert decode(tok, [i for i in labels if i != -100]) == "i love to play guitar at night </s>".split()

    post = GRAGCollator(tok, method="postgrag", architecture="decoder-only")(examples)
    assert decode(tok, post["history_ids"][0], post["history_mask"][0]) == "<s> user: hello how are you agent:".split()
    assert decode(tok, post["generic_input_ids"][0], post["generic_attention_mask"][0]) == (
        "<s> i am fine thanks i bake cookies generic response: i am fine thanks </s>".split())
    assert decode(tok, [i for i in post["generic_labels"][0] if i != -100]) == "i am fine thanks </s>".split()
    # the R_P sequence is the history prompt followed by the target
    n = int(post["history_mask"][0].sum())
    assert torch.equal(post["input_ids"][0, :n], post["history_ids"][0, :n])


def test_history_truncation_keeps_the_end_and_budgets(examples):
    tok = build_tokenizer("encdec")
    batch = GRAGCollator(tok, method="postgrag", max_history_tokens=4, max_persona_tokens=2)(examples)
    assert decode(tok, batch["history_ids"][1], batch["history_mask"][1]) == "<s> you like to do </s>".split()
    assert decode(tok, batch["persona_ids"][0], batch["persona_mask"][0]) == "<s> i love </s>".split()
    turns = GRAGCollator(tok, method="postgrag", max_history_turns=1)(examples)
    assert decode(tok, turns["history_ids"][1], turns["history_mask"][1]) == (
        "<s> user: what do you like to do </s>".split())


def test_inference_batches_have_no_targets(examples):
    tok = build_tokenizer("decoder")
    batch = GRAGCollator(tok, method="pregrag", architecture="decoder-only", with_targets=False)(examples)
    assert set(batch) == {"prompt_ids", "prompt_mask", "generic_ids", "generic_mask"}


def test_missing_generic_response_names_the_example():
    tok = build_tokenizer("encdec")
    ex = ResponseExample(id="x:7", persona=Persona(sentences=["i bake"]), history=[Turn(speaker="user", text="hi")],
                         response="hello")
    GRAGCollator(tok, method="presft", mode="hist")([ex])  # Hist does not need R_G
    with pytest.raises(ValueError, match=r"'x:7'.*generic_response"):
        GRAGCollator(tok, method="postgrag")([ex])
    with pytest.raises(ValueError, match="method"):
        GRAGCollator(tok, method="grag")
