"""Helpers of the questioner-aware tests: tiny random causal LMs, a word-level tokenizer, examples."""

from __future__ import annotations

import torch

from personakit.types import Persona, ResponseExample, Turn

WORDS = ("agent: user: persona: hello hi how are you i am fine thanks what do like to donate money children "
         "help the a is my name yes no maybe good bad day charity save give please sure").split()
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS = 0, 1, 2
VOCAB = len(SPECIALS) + len(WORDS)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def build_lm(kind: str = "llama", seed: int = 0, layers: int = 2):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    ids = dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
    if kind == "llama":
        cfg = LlamaConfig(hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=128, **ids)
        return LlamaForCausalLM(cfg).eval()
    if kind == "qwen2":
        cfg = Qwen2Config(hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=128, **ids)
        return Qwen2ForCausalLM(cfg).eval()
    if kind == "gpt2":
        cfg = GPT2Config(n_embd=16, n_layer=layers, n_head=2, vocab_size=VOCAB, n_positions=128, **ids)
        return GPT2LMHeadModel(cfg).eval()
    raise ValueError(kind)


QUESTIONERS = ["ann", "bob", "cat", "dan"]


def make_examples(n: int = 16) -> list[ResponseExample]:
    """``n`` examples: 4 questioners, 2 question clusters (metadata["question_cluster"])."""
    texts = ["how are you", "will you donate money", "what is the charity", "hello my name is ann"]
    replies = ["i am fine thanks", "yes i like to help", "save the children", "hi how are you"]
    out = []
    for i in range(n):
        q = QUESTIONERS[i % 4]
        k = (i // 4) % 2
        out.append(ResponseExample(
            id=f"d{i}:1", persona=Persona(sentences=[f"my name is {q}"]), agent="agent",
            history=[Turn(speaker="agent", text="hello"), Turn(speaker="user", text=texts[(i + k) % 4])],
            response=replies[(i * 3) % 4], questioner_id=q, responder_id="r1",
            metadata={"question_cluster": k}))
    return out
