"""Batched schema-guided decoding: the same replies as one prompt at a time (tiny random Llama, no download)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from copersona_kit import tiny_llama  # noqa: E402
from personakit.facets import FacetSchema, SchemaGuidedGenerator  # noqa: E402
from personakit.facets.constrained import (ChoiceSlot, LiteralPiece, StringSlot, _BatchCache, schema_skeleton,
                                           summary_skeleton)  # noqa: E402
from personakit.facets.summarize import SummaryReply  # noqa: E402

PROMPTS = ["hello how are you", "tell me", "i love to bake cookies and my dogs like the rain", "how are you",
           "i play guitar at night", "hello"]


CORPUS = ['{"summary": "The user bakes cookies.", "quotes": ["i love to bake"], "reliability": "strong"}',
          '{"facets": [{"name": "Hobbies", "definition": "what the user does", "values": "low / high"}]}',
          "none weak moderate strong", "hello how are you i love to bake cookies and my dogs like the rain",
          "i play guitar at night, tell me about your day"] * 4


def _bpe_tokenizer():
    """A byte-level BPE tokenizer trained here on a few lines (quotes and options get their own tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def _generator(seed: int = 0, **kwargs) -> SchemaGuidedGenerator:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bpe_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=len(tok), max_position_embeddings=1024, pad_token_id=0,
                         eos_token_id=1, bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger logits: greedy argmax never hinges on float noise
        model.lm_head.weight.mul_(20.0)
    return SchemaGuidedGenerator(model, tok, use_chat_template=False, **kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_fill_equals_one_prompt_at_a_time(seed):
    gen = _generator(seed)
    skeletons = [schema_skeleton(2, name_tokens=3, text_tokens=6), summary_skeleton(summary_tokens=5, quote_tokens=3),
                 [LiteralPiece('{"a": "'), StringSlot(4), LiteralPiece('", "b": "'),
                  ChoiceSlot(("none", "weak", "moderate", "strong")), LiteralPiece('"}')]]
    for skeleton in skeletons:
        single = gen.generate_json(PROMPTS, skeleton, batch_size=1)
        for size in (2, 4, 16):
            assert gen.generate_json(PROMPTS, skeleton, batch_size=size) == single
        for raw in single:
            json.loads(raw)
    FacetSchema.model_validate(json.loads(gen.generate_json(PROMPTS[:1], skeletons[0])[0]))
    SummaryReply.model_validate(json.loads(gen.generate_json(PROMPTS[:1], skeletons[1])[0]))


def test_batched_fill_with_a_shared_prompt_prefix_and_truncation():
    gen = _generator(2, max_input_tokens=24)
    prompts = ["hello how are you i love to bake cookies " + p for p in PROMPTS]
    skeleton = summary_skeleton(summary_tokens=6, quote_tokens=3)
    assert gen.generate_json(prompts, skeleton, batch_size=3) == gen.generate_json(prompts, skeleton, batch_size=1)


def test_batch_cache_logits_equal_a_full_forward():
    model, tok = tiny_llama(3)
    model.eval()
    rows = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [5, 6, 7, 8, 9, 10, 11, 12, 20, 21, 22, 23, 24], [30, 31, 32]]
    state = _BatchCache(model, len(rows), pad_id=0, reserve=4)  # small reserve: the buffers overflow too

    def full(ids):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0]

    got = state.feed(dict(enumerate(rows)), {i: 0 for i in range(len(rows))})
    for i, ids in enumerate(rows):
        torch.testing.assert_close(got[i], full(ids), atol=1e-5, rtol=1e-4)
    rows = [rows[0][:6] + [40, 41], rows[1] + [42], rows[2][:1] + [43, 44, 45, 46, 47, 48, 49]]
    got = state.feed({0: rows[0], 2: rows[2]}, {0: 5, 2: 1})  # row 1 waits
    torch.testing.assert_close(got[0], full(rows[0])[5:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[2], full(rows[2])[1:], atol=1e-5, rtol=1e-4)
    got = state.feed({1: rows[1]}, {1: len(rows[1]) - 1})
    torch.testing.assert_close(got[1], full(rows[1])[-1:], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        state.feed({0: rows[0]}, {0: len(rows[0])})


def test_generator_batch_size_is_checked():
    model, tok = tiny_llama(0)
    with pytest.raises(ValueError):
        SchemaGuidedGenerator(model, tok, batch_size=0)


def test_batched_summarizer_equals_one_prompt_at_a_time():
    from copersona_kit import encoder, users
    from personakit.facets import FacetSummarizer

    gen = _generator(0)
    schema = FacetSchema(facets=[{"name": n, "definition": f"{n} of the user", "values": "low / high"}
                                 for n in ("Hobbies", "Tone", "Work")])
    kwargs = dict(max_items=2, on_failure="placeholder", reliability="evidence", encoder=encoder, constrained=gen)
    one = FacetSummarizer(None, schema, batch_size=1, **kwargs).summarize(users())
    batched = FacetSummarizer(None, schema, batch_size=7, **kwargs)  # two users (6 prompts) per batch
    assert batched.summarize(users()) == one
    assert batched.last_stats.failures == 0 and batched.last_stats.summarized == 4
