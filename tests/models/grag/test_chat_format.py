"""Chat-format prompts, the end-of-turn target and stop, one source of loss-weight defaults, and the
zero-initialised style path of PostGRAG (tiny random Llama, word-level tokenizer with a chat template)."""

from __future__ import annotations

import pytest
import torch

from grag_testkit import EOS, PAD, SPECIALS, WORDS, build_backbone, make_examples
from personakit.models.grag import GRAGConfig, PostGRAG, PreGRAG, PreSFT, build_grag_model
from personakit.models.grag.chat import chat_turns, end_of_turn_ids, end_of_turn_text, stop_token_ids
from personakit.types import Turn

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
CHAT_WORDS = ["<|im_start|>", "<|im_end|>", "system", "user", "assistant"]


def chat_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + CHAT_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=CHAT_WORDS[:2],
                                   chat_template=CHAT_TEMPLATE)


def chat_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=32, vocab_size=len(SPECIALS) + len(WORDS) + len(CHAT_WORDS),
                      max_position_embeddings=256, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=1)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def tok():
    return chat_tokenizer()


# ---------------------------------------------------------------- one source of defaults
@pytest.mark.parametrize("method, alpha, beta", [("presft", 0.0, 0.0), ("pregrag", 0.0, 0.05),
                                                 ("postgrag", 0.5, 0.05)])
def test_config_and_from_backbone_give_the_same_defaults(method, alpha, beta):
    config = GRAGConfig(method=method)
    assert (config.alpha, config.beta) == (alpha, beta)
    model = build_grag_model(method, build_backbone("llama"))
    assert (model.config.alpha, model.config.beta) == (alpha, beta)


def test_explicit_weights_are_kept_and_round_trip(tmp_path):
    config = GRAGConfig(method="postgrag", alpha=0.0, beta=1.0)
    assert (config.alpha, config.beta) == (0.0, 1.0)
    config.save_pretrained(tmp_path)
    again = GRAGConfig.from_pretrained(tmp_path)
    assert (again.alpha, again.beta) == (0.0, 1.0)


def test_bad_style_init_and_prompt_format_name_the_field():
    with pytest.raises(ValueError, match="style_init"):
        GRAGConfig(method="postgrag", style_init="random")
    with pytest.raises(ValueError, match="prompt_format"):
        GRAGConfig(method="presft", prompt_format="markdown")


# ---------------------------------------------------------------- chat helpers
def test_chat_turns_merge_and_roles():
    turns = [Turn(speaker="a", text="hi"), Turn(speaker="u", text="hello  there"), Turn(speaker="u", text="yes"),
             Turn(speaker="a", text="no")]
    assert chat_turns(turns, agent="a") == [
        {"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello there\nyes"},
        {"role": "assistant", "content": "no"}]


def test_end_of_turn_is_read_from_the_template(tok):
    assert end_of_turn_text(tok) == "<|im_end|>"
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tok) == [eot]
    assert stop_token_ids(tok) == [eot, EOS]


# ---------------------------------------------------------------- collator
def test_chat_collator_prompt_target_and_persona_placement(tok):
    examples = make_examples()
    model = PreSFT.from_backbone(chat_llama(), tok, mode="hist")
    collator = model.make_collator()
    assert collator.prompt_format == "chat"
    batch = collator(examples)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    row = batch["input_ids"][1][batch["attention_mask"][1].bool()].tolist()
    text = tok.decode(row)
    assert "persona: i play guitar" in text  # the persona is in the system message
    assert text.count("<|im_start|>") == 5  # system, user, assistant, user, assistant (the cue)
    target = batch["labels"][1][batch["labels"][1] != -100].tolist()
    assert target[-1] == eot  # the reply ends with the end-of-turn token
    assert tok.decode(target[:-1]) == examples[1].response
    prompt = batch["prompt_ids"][1][batch["prompt_mask"][1].bool()].tolist()
    assert row[: len(prompt)] == prompt and tok.decode(prompt).endswith("assistant")

    post = PostGRAG.from_backbone(chat_llama(), tok).make_collator()(examples)
    history = tok.decode(post["history_ids"][0][post["history_mask"][0].bool()].tolist())
    assert "bake" not in history and "persona" not in history  # PostGRAG's H carries no persona
    assert post["generic_labels"][0][post["generic_labels"][0] != -100].tolist()[-1] == eot


def test_chat_collator_drops_the_oldest_turns_beyond_the_budget(tok):
    ex = make_examples()[1]  # three history turns
    model = PreSFT.from_backbone(chat_llama(), tok, mode="hist")
    full = model.make_collator()([ex])["prompt_ids"][0].tolist()
    short = model.make_collator(max_persona_tokens=4, max_history_tokens=4)([ex])["prompt_ids"][0].tolist()
    assert len(short) < len(full)
    assert tok.decode(short).count("<|im_start|>") < tok.decode(full).count("<|im_start|>")
    assert "what do you like to do" in tok.decode(short)  # the last user turn is kept


def test_plain_format_is_kept_for_tokenizers_without_template():
    from grag_testkit import tokenizer_for

    model = PreSFT.from_backbone(build_backbone("llama"), tokenizer_for("llama"))
    assert model.make_collator().prompt_format == "plain"
    with pytest.raises(ValueError, match="chat template"):
        model.make_collator(prompt_format="chat")


@pytest.mark.parametrize("cls", [PreSFT, PreGRAG, PostGRAG])
def test_chat_format_trains_and_generates_for_every_model(cls, tok):
    model = cls.from_backbone(chat_llama(), tok)
    batch = model.make_collator()(make_examples())
    out = model(**batch)
    assert torch.isfinite(out.loss)
    model.eval()
    gen = model.respond(make_examples(), max_new_tokens=4)
    assert len(gen) == 3


def test_a_trained_model_learns_to_end_its_turn(tok):
    """Trained on replies that end with <|im_end|>, greedy generation stops there."""
    torch.manual_seed(0)
    model = PreSFT.from_backbone(chat_llama(), tok, mode="hist")
    examples = make_examples()[:2]
    batch = model.make_collator()(examples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    ids = model.generate(model.make_collator(with_targets=False)(examples), max_new_tokens=20)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    for row, ex in zip(ids.tolist(), examples):
        assert eot in row, row
        assert tok.decode(row[: row.index(eot)]) == ex.response
        assert all(t == PAD for t in row[row.index(eot) + 1:])  # nothing after the turn ends
    assert model.respond(examples, max_new_tokens=20) == [ex.response for ex in examples]


# ---------------------------------------------------------------- style initialisation
def _next_token_logits(model: PostGRAG, batch) -> torch.Tensor:
    """PostGRAG's next-token logits continuing H (the training path), for each row's last history token."""
    out = model(**batch)
    first = (out.labels != -100).float().argmax(dim=1)  # first scored position of each continuation
    return out.logits[torch.arange(len(first)), first - 1]  # (B, V): the logits predicting R_P's first token


@pytest.mark.parametrize("plain", [False, True])
def test_zero_style_init_leaves_the_backbone_intact(tok, plain):
    from grag_testkit import tokenizer_for

    tokenizer = tokenizer_for("llama") if plain else tok
    backbone = build_backbone("llama") if plain else chat_llama()
    model = PostGRAG.from_backbone(backbone, tokenizer, extractor_heads=2).eval()
    assert model.config.style_init == "zero"
    batch = model.make_collator()(make_examples())
    with torch.no_grad():
        out = model(**batch)
        assert torch.count_nonzero(out.style) == 0
        got = _next_token_logits(model, batch)
        h_ids, h_mask = batch["history_ids"], batch["history_mask"]
        ref = model.base_model(input_ids=h_ids, attention_mask=h_mask).logits  # the backbone alone
        last = h_mask.sum(dim=1) - 1
        want = ref[torch.arange(len(last)), last]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # generation equals the bare backbone's greedy continuation of H (same stop ids)
    batch = model.make_collator(with_targets=False)(make_examples())
    gen = model.generate(batch, max_new_tokens=5, do_sample=False)
    bare = model._generate_from_prompt(batch["history_ids"], batch["history_mask"], max_new_tokens=5,
                                       do_sample=False, pad_token_id=model.pad_token_id,
                                       eos_token_id=model.stop_token_ids())
    assert torch.equal(gen, bare)


def test_paper_style_init_changes_the_backbone(tok):
    model = PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2, style_init="paper").eval()
    batch = model.make_collator()(make_examples())
    with torch.no_grad():
        out = model(**batch)
        assert float(out.style.norm()) > 0
        got = _next_token_logits(model, batch)
        ref = model.base_model(input_ids=batch["history_ids"], attention_mask=batch["history_mask"]).logits
        last = batch["history_mask"].sum(dim=1) - 1
        want = ref[torch.arange(len(last)), last]
    assert not torch.allclose(got, want, atol=1e-3)


def test_zero_style_grows_with_training(tok):
    model = PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2)
    batch = model.make_collator()(make_examples())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    assert float(model.style_extractor.out_proj.weight.detach().abs().sum()) > 0
    with torch.no_grad():
        assert float(model(**batch).style.norm()) > 0


def test_bf16_backbone_with_fp32_extractors(tok):
    backbone = chat_llama().to(torch.bfloat16)
    model = PostGRAG.from_backbone(backbone, tok, extractor_heads=2)
    assert model.style_extractor.q_proj.weight.dtype == torch.float32
    out = model(**model.make_collator()(make_examples()))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.style_extractor.out_proj.weight.grad is not None


def test_style_layers_reach_the_style_decoder_and_are_checked(tok):
    model = PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2, style_init="paper", style_layers=[0]).eval()
    assert model.config.style_layers == [0] and model.style_decoder.active_layers == (0,)
    every = PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2, style_init="paper").eval()
    assert every.style_decoder.active_layers is None
    every.load_state_dict(model.state_dict())  # same weights; only where the style goes differs
    batch = model.make_collator()(make_examples())
    with torch.no_grad():
        one, all_layers = _next_token_logits(model, batch), _next_token_logits(every, batch)
        ref = model.base_model(input_ids=batch["history_ids"], attention_mask=batch["history_mask"]).logits
    last = batch["history_mask"].sum(dim=1) - 1
    bare = ref[torch.arange(len(last)), last]
    assert not torch.allclose(one, all_layers, atol=1e-4) and not torch.allclose(one, bare, atol=1e-4)
    with pytest.raises(ValueError, match="style_layers"):
        GRAGConfig(method="postgrag", style_layers=[])
    with pytest.raises(ValueError, match="style_layers"):
        GRAGConfig(method="presft", style_layers=[0])
    with pytest.raises(ValueError, match="active_layers must be non-empty indices"):
        PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2, style_layers=[99])


# ---------------------------------------------------------------- persona_in_history (a departure, off by default)
@pytest.mark.parametrize("plain", [False, True])
def test_persona_in_history_starts_postgrag_as_presft_hist(tok, plain):
    """H = PreSFT(Hist)'s prompt, token for token; with the zero style a fresh PostGRAG's L_P is PreSFT(Hist)'s."""
    from grag_testkit import tokenizer_for

    tokenizer = tokenizer_for("llama") if plain else tok
    make = (lambda: build_backbone("llama")) if plain else chat_llama
    post = PostGRAG.from_backbone(make(), tokenizer, extractor_heads=2, persona_in_history=True).eval()
    pre = PreSFT.from_backbone(make(), tokenizer, mode="hist").eval()
    assert post.config.persona_in_history and post.make_collator().persona_in_history
    examples = make_examples()
    batch, pre_batch = post.make_collator()(examples), pre.make_collator()(examples)
    assert torch.equal(batch["history_ids"], pre_batch["prompt_ids"])
    assert torch.equal(batch["history_mask"], pre_batch["prompt_mask"])
    with torch.no_grad():
        torch.testing.assert_close(post(**batch).loss_p, pre(**pre_batch).loss_p, atol=1e-5, rtol=1e-5)
        # generation continues the same prompt: the same greedy tokens as PreSFT(Hist)
        gen = post.generate(post.make_collator(with_targets=False)(examples), max_new_tokens=4, do_sample=False)
        ref = pre.generate(pre.make_collator(with_targets=False)(examples), max_new_tokens=4, do_sample=False)
    assert torch.equal(gen, ref)
    paper = PostGRAG.from_backbone(make(), tokenizer, extractor_heads=2).make_collator()(examples)
    assert paper["history_ids"].shape[1] < batch["history_ids"].shape[1]  # the paper's H leaves the persona out


def test_persona_in_history_is_postgrag_only_and_round_trips(tok, tmp_path):
    with pytest.raises(ValueError, match="persona_in_history"):
        GRAGConfig(method="presft", persona_in_history=True)
    with pytest.raises(ValueError, match="persona_in_history"):
        GRAGConfig(method="postgrag", persona_in_history="yes")
    with pytest.raises(ValueError, match="persona_in_history"):
        PreGRAG.from_backbone(chat_llama(), tok).make_collator(persona_in_history=True)
    model = PostGRAG.from_backbone(chat_llama(), tok, extractor_heads=2, persona_in_history=True)
    model.save_pretrained(tmp_path)
    again = PostGRAG.from_pretrained(tmp_path)
    assert again.config.persona_in_history is True and "persona_in_history=True" in repr(again.make_collator(tok))


def test_persona_in_history_encoder_decoder_encodes_presft_hist_input():
    from grag_testkit import tokenizer_for

    tokenizer = tokenizer_for("bart")
    post = PostGRAG.from_backbone(build_backbone("bart"), tokenizer, extractor_heads=2, persona_in_history=True)
    pre = PreSFT.from_backbone(build_backbone("bart"), tokenizer, mode="hist")
    batch, pre_batch = post.make_collator()(make_examples()), pre.make_collator()(make_examples())
    assert torch.equal(batch["history_ids"], pre_batch["input_ids"])  # E_H encodes "persona: P" sep H
    assert torch.isfinite(post(**batch).loss)
