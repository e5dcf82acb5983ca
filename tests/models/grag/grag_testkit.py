"""Helpers of the GRAG tests: tiny random backbones (BART, T5, BERT2BERT, Llama) and word-level tokenizers."""

from __future__ import annotations

import torch

from personakit.types import Persona, ResponseExample, Turn

torch.set_num_threads(1)

WORDS = (
    "persona: user: agent: generic response: (none) hello hi how are you i am fine thanks what do like to "
    "bake cookies dogs cats the a is my name tell me about your day good bad weather sunny rain yes no "
    "love play guitar nurse work at night that sounds nice"
).split()
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS = 0, 1, 2
BACKBONES = ("bart", "t5", "bert2bert", "llama")
ENCDEC = ("bart", "t5", "bert2bert")


def build_tokenizer(kind: str = "encdec"):
    """Word-level tokenizer: ``<s> text </s>`` (encoder-decoder) or ``<s> text`` (decoder-only)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    single = "<s> $A </s>" if kind == "encdec" else "<s> $A"
    backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


VOCAB = len(SPECIALS) + len(WORDS)


def build_backbone(kind: str, seed: int = 0):
    from transformers import (BartConfig, BartForConditionalGeneration, BertConfig, EncoderDecoderConfig,
                              EncoderDecoderModel, LlamaConfig, LlamaForCausalLM, T5Config,
                              T5ForConditionalGeneration)

    torch.manual_seed(seed)
    ids = dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
    if kind == "bart":
        cfg = BartConfig(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=VOCAB,
                         max_position_embeddings=128, decoder_start_token_id=EOS, forced_eos_token_id=None, **ids)
        model = BartForConditionalGeneration(cfg)
    elif kind == "t5":
        cfg = T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, vocab_size=VOCAB,
                       decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
        model = T5ForConditionalGeneration(cfg)
    elif kind == "bert2bert":
        common = dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=VOCAB,
                      max_position_embeddings=128, pad_token_id=PAD)
        enc = BertConfig(num_hidden_layers=1, **common)
        dec = BertConfig(num_hidden_layers=2, is_decoder=True, add_cross_attention=True, **common)
        cfg = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
        cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = BOS, PAD, EOS
        model = EncoderDecoderModel(config=cfg)
        model.generation_config.decoder_start_token_id = BOS
        model.generation_config.eos_token_id = EOS
        model.generation_config.pad_token_id = PAD
    elif kind == "llama":
        cfg = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=256, **ids)
        model = LlamaForCausalLM(cfg)
    else:
        raise ValueError(kind)
    return model


def tokenizer_for(kind: str):
    return build_tokenizer("decoder" if kind == "llama" else "encdec")


def make_examples() -> list[ResponseExample]:
    return [
        ResponseExample(
            id="d:1", persona=Persona(sentences=["i love to bake cookies", "i am a nurse"]),
            history=[Turn(speaker="user", text="hello how are you")],
            response="i am fine thanks i bake cookies", generic_response="i am fine thanks",
        ),
        ResponseExample(
            id="d:3", persona=Persona(sentences=["i play guitar"]),
            history=[Turn(speaker="user", text="hi"), Turn(speaker="agent", text="hello"),
                     Turn(speaker="user", text="what do you like to do")],
            response="i love to play guitar at night", generic_response="i like cats",
        ),
        ResponseExample(
            id="d:5", persona=Persona(),
            history=[Turn(speaker="user", text="tell me about your day")],
            response="good", generic_response="my day is good thanks how about you",
        ),
    ]
