"""A tiny random Llama with a locally built word-level tokenizer and chat template."""

from __future__ import annotations

import pytest

WORDS = (
    "hello hi how are you i am fine thanks what do like to bake cookies dogs cats "
    "the a is my name tell me about your day good bad weather sunny rain yes no"
).split()

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + ["system", "user", "assistant", "User:", "Assistant:"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    kwargs = dict(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    if chat_template is not None:
        kwargs["chat_template"] = chat_template
    return PreTrainedTokenizerFast(**kwargs)


def build_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, vocab_size=vocab_size, max_position_embeddings=256,
        pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    # larger logits so that greedy argmax never hinges on float noise
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


@pytest.fixture(scope="session")
def tiny_lm():
    tok = build_tokenizer()
    model = build_model(len(tok))
    return model, tok


@pytest.fixture(scope="session")
def plain_tokenizer():
    """The same word-level tokenizer without a chat template."""
    return build_tokenizer(chat_template=None)
