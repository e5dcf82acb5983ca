import pytest
import torch

from personakit.llm import GenerationSettings, HFGenerator

PROMPTS = [
    "hello",
    "how are you i am fine thanks what do you like",
    [{"role": "system", "content": "be good"}, {"role": "user", "content": "tell me about your day"}],
    "what do you like to bake",
    "cats",
    "my name is a dog",
]


def test_batched_greedy_equals_one_at_a_time(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, batch_size=4)
    settings = GenerationSettings(max_new_tokens=8)
    batched = gen.generate(PROMPTS, settings)
    single = [gen.generate(PROMPTS[i:i + 1], settings, batch_size=1)[0] for i in range(len(PROMPTS))]
    assert batched == single
    assert all(isinstance(t, str) for t in batched)
    assert any(t for t in batched)


def test_prompt_is_stripped_and_order_restored(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, batch_size=2)
    out = gen.generate(PROMPTS, {"max_new_tokens": 5})
    # reversing the prompts reverses the outputs: order restored after length sorting
    rev = gen.generate(PROMPTS[::-1], {"max_new_tokens": 5})
    assert rev == out[::-1]
    # no reply starts with the rendered prompt
    assert all("<|im_start|>" not in t for t in out)
    assert len(gen.generate(["hello"], {"max_new_tokens": 3})[0].split()) <= 3


def test_length_sorted_batches(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok)
    order = gen._batch_order(PROMPTS)
    lengths = [len(gen.encode(PROMPTS[i])) for i in order]
    assert lengths == sorted(lengths, reverse=True)


def test_chat_template_rendering_and_plain_text_fallback(tiny_lm, plain_tokenizer):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok)
    assert gen.use_chat_template
    assert gen.render("hello").endswith("<|im_start|> assistant ")
    plain_tok = plain_tokenizer
    plain = HFGenerator(model, plain_tok)
    assert not plain.use_chat_template
    assert plain.render("hello how") == "hello how"
    assert plain.render([{"role": "user", "content": "hi"}]) == "User: hi\n\nAssistant:"
    assert isinstance(plain.generate(["hello how"], {"max_new_tokens": 4})[0], str)
    with pytest.raises(ValueError, match="no chat template"):
        HFGenerator(model, plain_tok, use_chat_template=True)


def test_sampling_is_seeded_and_leaves_global_rng_alone(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, batch_size=3)
    s = GenerationSettings(max_new_tokens=8, temperature=1.5, seed=3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = gen.generate(PROMPTS, s)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert gen.generate(PROMPTS, s) == a
    others = [gen.generate(PROMPTS, s.model_copy(update={"seed": k})) for k in (4, 5)]
    assert any(o != a for o in others)


def test_max_input_tokens_keeps_the_end(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, max_input_tokens=4)
    ids = gen.encode("hello how are you i am fine")
    assert len(ids) == 4
    assert ids[-1] == tok.convert_tokens_to_ids("assistant")


def test_model_id_default_and_repr(tiny_lm):
    model, tok = tiny_lm
    assert HFGenerator(model, tok, model_id="tiny").model_id == "tiny"
    assert "HFGenerator" in repr(HFGenerator(model, tok))


def test_from_pretrained_uses_backbone_loader(monkeypatch, tiny_lm):
    import personakit.backbones as backbones

    model, tok = tiny_lm
    calls = []

    def fake_load(name_or_path, dtype=None, device=None):
        calls.append(name_or_path)
        return model, tok

    monkeypatch.setattr(backbones, "load_causal_lm", fake_load)
    gen = HFGenerator.from_pretrained("tiny-llama", batch_size=3)
    assert calls == ["tiny-llama"] and gen.model_id == "tiny-llama" and gen.batch_size == 3


@pytest.mark.real_model
def test_smollm2_batched_equals_single(smollm2):
    model, tok = smollm2
    gen = HFGenerator(model, tok, batch_size=3, model_id="smollm2")
    prompts = [
        "What is the capital of France?",
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a fruit."}],
        "Hi! How are you today?",
    ]
    settings = GenerationSettings(max_new_tokens=12)
    batched = gen.generate(prompts, settings)
    single = [gen.generate([p], settings)[0] for p in prompts]
    assert batched == single
    assert all(isinstance(t, str) and t.strip() for t in batched)
    assert all("<|im_start|>" not in t and "assistant" not in t[:10] for t in batched)


SYSTEM = "you are a friendly baker who likes to talk about bread and cats and the sea every day"
TEMPLATED = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}]
             for u in ["hello", "what do you like to bake", "cats", "my name is a dog and i like the sea"]]


def _with_input_shapes(model, fn):
    """``fn()``'s result and the ``input_ids`` shape of every forward pass of ``model`` it made."""
    calls = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        return fn(), calls
    finally:
        hook.remove()


def test_shared_prefix_encoded_once_gives_the_unshared_outputs(tiny_lm):
    model, tok = tiny_lm
    shared = HFGenerator(model, tok, batch_size=4, min_shared_prefix=4)
    plain = HFGenerator(model, tok, batch_size=4, share_prefix=False)
    encoded = [shared.encode(p) for p in TEMPLATED]
    p = shared.shared_prefix_length(encoded)
    assert p >= 10  # the rendered system message is common to all four
    assert all(ids[:p] == encoded[0][:p] for ids in encoded) and min(map(len, encoded)) > p
    assert any(ids[p] != encoded[0][p] for ids in encoded)  # the longest common prefix, not shorter
    settings = GenerationSettings(max_new_tokens=6)
    out, calls = _with_input_shapes(model, lambda: shared.generate(TEMPLATED, settings))
    assert calls[0] == (1, p)  # the prefix ran once, for the whole batch
    assert calls[1][1] == max(map(len, encoded)) - p  # then only the rest of each prompt
    assert out == plain.generate(TEMPLATED, settings)
    assert out == [shared.generate([t], settings, batch_size=1)[0] for t in TEMPLATED]
    sampled = shared.generate(TEMPLATED, GenerationSettings(max_new_tokens=6, temperature=0.8, seed=3))
    assert sampled == shared.generate(TEMPLATED, GenerationSettings(max_new_tokens=6, temperature=0.8, seed=3))


def test_prefix_settings_live_on_the_engine(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, min_shared_prefix=3, prefill_batch_size=2, reuse_prefill=False)
    engine = gen.prefix_engine
    assert (engine.min_shared_prefix, engine.prefill_batch_size, engine.reuse_prefill) == (3, 2, False)
    assert engine.pad_token_id == gen.pad_token_id == tok.pad_token_id and engine.model is gen.model
    assert gen.shared_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]]) == 4  # the engine's rules
    gen.share_prefix = False
    assert not engine.share_prefix and gen.shared_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]]) == 0
    with pytest.raises(ValueError, match="min_shared_prefix"):
        HFGenerator(model, tok, min_shared_prefix=0)


def test_prefill_matches_each_prompt_alone_and_the_first_generated_token(tiny_lm):
    model, tok = tiny_lm
    for share in (True, False):
        gen = HFGenerator(model, tok, batch_size=4, min_shared_prefix=4, share_prefix=share)
        encoded = [gen.encode(p) for p in TEMPLATED]
        assert (gen.shared_prefix_length(encoded) > 0) == share
        logits = gen.prefill(TEMPLATED)  # (B, V)
        assert logits.shape == (len(TEMPLATED), model.config.vocab_size)
        with torch.inference_mode():
            alone = torch.stack([model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in encoded])
        torch.testing.assert_close(logits, alone, atol=1e-4, rtol=1e-4)
        first = [tok.decode([int(i)], skip_special_tokens=True) for i in logits.argmax(-1)]
        out = gen.generate(TEMPLATED, {"max_new_tokens": 1}, batch_size=len(TEMPLATED))
        assert [o.strip() for o in out] == [f.strip() for f in first]
    with pytest.raises(ValueError, match="at least one prompt"):
        gen.prefill([])


@pytest.mark.parametrize("prompts", [PROMPTS, TEMPLATED + PROMPTS[:3]], ids=["no-shared-prefix", "shared-prefix"])
def test_prefill_in_sub_batches_decodes_all_rows_together_with_the_same_outputs(tiny_lm, prompts):
    model, tok = tiny_lm
    plain = HFGenerator(model, tok, batch_size=len(prompts), min_shared_prefix=4)
    split = HFGenerator(model, tok, batch_size=len(prompts), min_shared_prefix=4, prefill_batch_size=2)
    settings = GenerationSettings(max_new_tokens=7)
    out, calls = _with_input_shapes(model, lambda: split.generate(prompts, settings))
    single = [plain.generate([p], settings, batch_size=1)[0] for p in prompts]
    assert out == single == plain.generate(prompts, settings)
    prompt_passes = [shape for shape in calls if shape[1] > 1]
    assert all(shape[0] <= 2 for shape in prompt_passes)  # prompts were prefilled two at a time (or the prefix once)
    assert sum(1 for shape in calls if shape[0] == len(prompts)) >= 7  # every decoding step carried all rows
    sampled = GenerationSettings(max_new_tokens=5, temperature=0.8, seed=1)
    assert split.generate(prompts, sampled) == split.generate(prompts, sampled)
    with pytest.raises(ValueError, match="prefill_batch_size"):
        HFGenerator(model, tok, prefill_batch_size=0)


def test_prefill_in_sub_batches_with_one_token_prompts(tiny_lm, plain_tokenizer):
    model, _ = tiny_lm
    prompts = ["how are you i am fine thanks", "hello", "cats"]
    split = HFGenerator(model, plain_tokenizer, batch_size=3, prefill_batch_size=1)
    assert [len(split.encode(p)) for p in prompts][1:] == [1, 1]  # nothing of these is prefilled
    settings = GenerationSettings(max_new_tokens=5)
    assert split.generate(prompts, settings) == [split.generate([p], settings, batch_size=1)[0] for p in prompts]


TURNS = ["hello how are you", "i am fine thanks what do you like", "i like to bake cookies",
         "tell me about your day", "good day sunny weather"]


def _turn_prompt(k):
    """The prompt of dialogue turn ``k``: the turns before it, then ``no`` and turn ``k`` on its own."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": " ".join(TURNS[:k] + ["no", TURNS[k]])}]


DIALOGUE = [_turn_prompt(k) for k in range(1, len(TURNS))]  # each shares its history with the later turns


def _prefilled_positions(calls):
    return sum(shape[0] * shape[1] for shape in calls if shape[1] > 1)


@pytest.mark.parametrize("prefill_batch_size", [None, 2])
def test_prompts_sharing_a_longer_prefix_reuse_its_prefill(tiny_lm, prefill_batch_size):
    model, tok = tiny_lm
    prompts = DIALOGUE + TEMPLATED[1:3]  # dialogue turns and two unrelated prompts with the same system message
    gen = HFGenerator(model, tok, batch_size=len(prompts), min_shared_prefix=4, prefill_batch_size=prefill_batch_size)
    encoded = [gen.encode(p) for p in prompts]
    shared = gen.shared_prefix_length(encoded)
    points = gen.branch_points(encoded)
    last = len(DIALOGUE) - 1  # the longest turn is prefilled in full; the earlier turns reuse its history
    assert points[last] == (last, 0) and points[-1][1] == points[-2][1] == 0
    for k in range(1, last):  # turn k + 1 agrees with the last turn on the words of turns 1..k
        source, reused = points[k]
        assert source == last and encoded[k][shared:shared + reused] == encoded[last][shared:shared + reused]
        assert encoded[k][shared + reused] != encoded[last][shared + reused]  # the longest agreement
    settings = GenerationSettings(max_new_tokens=6)
    out, calls = _with_input_shapes(model, lambda: gen.generate(prompts, settings))
    # the same generator prefilling every prompt in full after the shared prefix computes more positions
    full = HFGenerator(model, tok, batch_size=len(prompts), min_shared_prefix=4, prefill_batch_size=prefill_batch_size,
                       reuse_prefill=False)
    assert all(reused == 0 for _, reused in full.branch_points(encoded))
    out_full, calls_full = _with_input_shapes(model, lambda: full.generate(prompts, settings))
    assert _prefilled_positions(calls) < _prefilled_positions(calls_full)
    assert out == out_full
    plain = HFGenerator(model, tok, share_prefix=False)
    assert out == [plain.generate([p], settings, batch_size=1)[0] for p in prompts]
    assert out == plain.generate(prompts, settings, batch_size=len(prompts))
    logits = gen.prefill(prompts)
    with torch.inference_mode():
        alone = torch.stack([model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in encoded])
    torch.testing.assert_close(logits, alone, atol=1e-4, rtol=1e-4)


def test_batch_order_keeps_prompts_with_a_longer_shared_prefix_together(tiny_lm):
    model, tok = tiny_lm
    prompts = [DIALOGUE[0], TEMPLATED[0], DIALOGUE[2], TEMPLATED[3], DIALOGUE[1], TEMPLATED[2], DIALOGUE[3]]
    gen = HFGenerator(model, tok, min_shared_prefix=4)
    order = gen._batch_order(prompts)
    dialogue = [i for i, p in enumerate(prompts) if p in DIALOGUE]
    positions = sorted(order.index(i) for i in dialogue)
    assert positions == list(range(positions[0], positions[0] + len(dialogue)))  # one run of the order
    lengths = [len(gen.encode(prompts[i])) for i in order if i in dialogue]
    assert lengths == sorted(lengths, reverse=True)
    assert order[0] == prompts.index(DIALOGUE[3])  # the group holding the longest prompt runs first
    # in batches of 3 the turns still share their prefill, and the outputs stay those of one at a time
    settings = GenerationSettings(max_new_tokens=5)
    out = HFGenerator(model, tok, batch_size=3, min_shared_prefix=4).generate(prompts, settings)
    assert out == [gen.generate([p], settings, batch_size=1)[0] for p in prompts]
    # without share_prefix or reuse_prefill: a plain sort by length
    for plain in (HFGenerator(model, tok, share_prefix=False), HFGenerator(model, tok, reuse_prefill=False)):
        lengths = [len(plain.encode(prompts[i])) for i in plain._batch_order(prompts)]
        assert lengths == sorted(lengths, reverse=True)


def test_no_prefill_reuse_for_a_sliding_window_cache(tiny_lm):
    from transformers import MistralConfig, MistralForCausalLM

    _, tok = tiny_lm
    torch.manual_seed(0)
    config = MistralConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           intermediate_size=32, vocab_size=len(tok), max_position_embeddings=256, sliding_window=8,
                           pad_token_id=0, eos_token_id=1, bos_token_id=None)
    gen = HFGenerator(MistralForCausalLM(config).eval(), tok, min_shared_prefix=4)
    encoded = [gen.encode(p) for p in DIALOGUE]
    assert all(reused == 0 for _, reused in gen.branch_points(encoded))  # its cache keeps only 8 positions
    out = gen.generate(DIALOGUE, GenerationSettings(max_new_tokens=3))
    assert len(out) == len(DIALOGUE) and all(isinstance(t, str) for t in out)


def test_plain_text_prompts_of_a_chat_model_get_their_own_cache_keys(tiny_lm, plain_tokenizer):
    """The same prompt rendered with and without the chat template is a different model input."""
    from personakit.llm import GenerationSettings
    from personakit.llm.cache import cache_key

    model, tok = tiny_lm
    chat, plain = HFGenerator(model, tok, model_id="m"), HFGenerator(model, tok, model_id="m", use_chat_template=False)
    assert chat.model_id == "m" and plain.model_id == "m:plain-text"
    assert HFGenerator(model, tok, model_id="m:plain-text", use_chat_template=False).model_id == "m:plain-text"
    s = GenerationSettings(max_new_tokens=4)
    assert cache_key("hi", chat.model_id, s) != cache_key("hi", plain.model_id, s)
    # a tokenizer without a template renders plain text anyway: its id is left alone
    assert HFGenerator(model, plain_tokenizer, model_id="m", use_chat_template=False).model_id == "m"
