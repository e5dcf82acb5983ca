"""Bits per character: the formula by hand, and model scoring against per-example loops."""

from __future__ import annotations

import math
import string

import pytest
import torch
from tokenizers import Tokenizer, models, processors
from transformers import BartConfig, BartForConditionalGeneration, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from personakit.eval import bits_per_character, model_bits_per_character, reference_log_likelihoods

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer(add_bos_eos: bool) -> PreTrainedTokenizerFast:
    """A character-level tokenizer built locally (BPE with no merges)."""
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    if add_bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


REFS = ["hi there!", "I love dogs.", "ok", "a much longer reference sentence here"]
CTXS = ["Q: hello? A: ", "", "say ok: ", "tell me something. "]


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    tok = char_tokenizer(add_bos_eos=False)
    config = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(config).eval(), tok


@pytest.fixture(scope="module")
def bart():
    torch.manual_seed(0)
    tok = char_tokenizer(add_bos_eos=True)
    config = BartConfig(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=len(tok),
                        max_position_embeddings=128, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id)
    return BartForConditionalGeneration(config).eval(), tok


def test_formula_by_hand():
    # two texts: 3 + 5 nats over 2 + 6 characters
    assert bits_per_character([-3.0, -5.0], ["ab", "cdefgh"]) == pytest.approx(8 / math.log(2) / 8)
    # per-token lists and tensors are summed
    assert bits_per_character([[-1.0, -2.0], torch.tensor([-5.0])], ["ab", "cdefgh"]) == pytest.approx(
        8 / math.log(2) / 8)
    # "mean" averages per-text BPC instead
    mean = (3 / math.log(2) / 2 + 5 / math.log(2) / 6) / 2
    assert bits_per_character([-3.0, -5.0], ["ab", "cdefgh"], reduction="mean") == pytest.approx(mean)


def test_formula_errors():
    with pytest.raises(ValueError, match="2 log-likelihoods but 1 texts"):
        bits_per_character([-1.0, -1.0], ["a"])
    with pytest.raises(ValueError, match="must be <= 0"):
        bits_per_character([2.0], ["a"])
    with pytest.raises(ValueError, match="every text is empty"):
        bits_per_character([0.0], [""])
    with pytest.raises(ValueError, match="empty input"):
        bits_per_character([], [])


def causal_loop(model, tok, ref: str, ctx: str) -> float:
    """One example at a time, through the model's own loss with the context masked out."""
    prefix = [tok.bos_token_id] + (tok(ctx, add_special_tokens=False)["input_ids"] if ctx else [])
    target = tok(ref, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prefix + target])
    labels = ids.clone()
    labels[0, : len(prefix)] = -100
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss  # mean over the reference tokens
    return -float(loss) * len(target)


def test_causal_lm_matches_per_example_loop(llama):
    model, tok = llama
    expected = [causal_loop(model, tok, r, c) for r, c in zip(REFS, CTXS)]
    got = reference_log_likelihoods(model, tok, REFS, CTXS, batch_size=3)
    assert got == pytest.approx(expected, abs=1e-4)
    bpc = model_bits_per_character(model, tok, REFS, CTXS, batch_size=3)
    total_chars = sum(len(r) for r in REFS)
    assert bpc == pytest.approx(-sum(expected) / math.log(2) / total_chars, rel=1e-5)


def test_causal_lm_without_context_and_batch_size_invariance(llama):
    model, tok = llama
    expected = [causal_loop(model, tok, r, "") for r in REFS]
    assert reference_log_likelihoods(model, tok, REFS, batch_size=1) == pytest.approx(expected, abs=1e-4)
    assert reference_log_likelihoods(model, tok, REFS, batch_size=8) == pytest.approx(expected, abs=1e-4)


def test_context_changes_the_score_but_not_what_is_counted(llama):
    model, tok = llama
    with_ctx = reference_log_likelihoods(model, tok, ["hello"], ["some context "])
    without = reference_log_likelihoods(model, tok, ["hello"])
    assert with_ctx[0] != pytest.approx(without[0], abs=1e-6)


def test_append_eos_adds_one_scored_token(llama):
    model, tok = llama
    base = reference_log_likelihoods(model, tok, ["hey"])[0]
    with_eos = reference_log_likelihoods(model, tok, ["hey"], append_eos=True)[0]
    ids = torch.tensor([[tok.bos_token_id] + tok("hey", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logp_eos = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)[tok.eos_token_id]
    assert with_eos == pytest.approx(base + float(logp_eos), abs=1e-4)


def test_model_training_mode_is_restored(llama):
    model, tok = llama
    model.train()
    try:
        reference_log_likelihoods(model, tok, ["abc"])
        assert model.training
    finally:
        model.eval()


def seq2seq_loop(model, tok, ref: str, ctx: str) -> float:
    enc = tok(ctx, return_tensors="pt")
    labels = tok(text_target=ref, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(**enc, labels=labels).loss
    return -float(loss) * labels.shape[1]


def test_seq2seq_matches_per_example_loop(bart):
    model, tok = bart
    expected = [seq2seq_loop(model, tok, r, c) for r, c in zip(REFS, CTXS)]
    got = reference_log_likelihoods(model, tok, REFS, CTXS, batch_size=3)
    assert got == pytest.approx(expected, abs=1e-4)
    total_chars = sum(len(r) for r in REFS)
    assert model_bits_per_character(model, tok, REFS, CTXS, batch_size=2) == pytest.approx(
        -sum(expected) / math.log(2) / total_chars, rel=1e-5)


def test_input_errors(llama):
    model, tok = llama
    with pytest.raises(ValueError, match="2 references but 1 contexts"):
        reference_log_likelihoods(model, tok, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty input"):
        reference_log_likelihoods(model, tok, [])
    with pytest.raises(TypeError, match="not a single string"):
        reference_log_likelihoods(model, tok, "abc")


def test_numpy_inputs():
    import numpy as np

    assert bits_per_character([np.float32(-2.0), np.array([-1.0, -1.0])], ["ab", "cd"]) == pytest.approx(
        4 / math.log(2) / 4)
