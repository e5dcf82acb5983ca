import pytest

from personakit.config import ConfigError
from personakit.llm import (
    CallableGenerator,
    GenerationError,
    GenerationSettings,
    TextGenerator,
    apply_stop,
    messages_to_text,
    prompt_to_messages,
    validate_prompt,
)


class Recorder(TextGenerator):
    """Records each batch it is given; reverses the order of batching."""

    def __init__(self, batch_size=2):
        super().__init__(model_id="recorder", batch_size=batch_size)
        self.batches = []

    def _batch_order(self, prompts):
        return list(reversed(range(len(prompts))))

    def _generate_batch(self, prompts, settings):
        self.batches.append(list(prompts))
        return [f"<{p}>" for p in prompts]


def test_generate_batches_in_hook_order_and_restores_input_order():
    gen = Recorder(batch_size=2)
    out = gen.generate(["a", "b", "c", "d", "e"])
    assert out == ["<a>", "<b>", "<c>", "<d>", "<e>"]
    assert gen.batches == [["e", "d"], ["c", "b"], ["a"]]


def test_batch_size_override_and_on_batch_callback():
    gen = Recorder(batch_size=2)
    seen = []
    gen.generate(["a", "b", "c"], batch_size=3, on_batch=lambda idx, texts: seen.append((idx, texts)))
    assert gen.batches == [["c", "b", "a"]]
    assert seen == [([2, 1, 0], ["<c>", "<b>", "<a>"])]


def test_stop_sequences_and_strip_apply_to_every_backend():
    gen = CallableGenerator(lambda p: f"  {p} reply\nUser: next ### tail ")
    assert gen.generate(["x"], GenerationSettings(stop=["\n"])) == ["x reply"]
    assert gen.generate(["x"], {"stop": ["###", "next"]}) == ["x reply\nUser:"]
    assert gen.generate(["x"], {"strip": False}) == ["  x reply\nUser: next ### tail "]


def test_apply_stop_earliest_wins():
    assert apply_stop("one. two! three", [" three", "!"]) == "one. two"
    assert apply_stop("\n\nhello\nworld", ["\n"]) == "hello"


def test_settings_validation_and_dict_coercion():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        CallableGenerator(lambda p: p).generate(["a"], {"max_new_tokens": 0})
    with pytest.raises(ValueError):
        GenerationSettings(temperature=-1)
    with pytest.raises(ValueError, match="stop"):
        GenerationSettings(stop=[""])
    with pytest.raises(ValueError):
        GenerationSettings(unknown=1)
    assert GenerationSettings(temperature=0.5).do_sample
    assert not GenerationSettings().do_sample


def test_cache_fields_drop_sampling_fields_when_greedy():
    greedy = GenerationSettings(seed=1, top_p=0.5)
    assert "seed" not in greedy.cache_fields() and "top_p" not in greedy.cache_fields()
    sampled = GenerationSettings(temperature=1.0, seed=1)
    assert sampled.cache_fields()["seed"] == 1


def test_prompt_validation_names_the_prompt_and_field():
    assert validate_prompt("hi") == "hi"
    with pytest.raises(ValueError, match=r"prompt 1, message 0: field 'role'"):
        CallableGenerator(lambda p: "x").generate(["ok", [{"role": "robot", "content": "x"}]])
    with pytest.raises(ValueError, match="field 'content'"):
        validate_prompt([{"role": "user", "content": 3}])
    with pytest.raises(TypeError, match="expected a string or a list"):
        validate_prompt(42)
    with pytest.raises(ValueError, match="no messages"):
        validate_prompt([])
    with pytest.raises(TypeError, match="generate_one"):
        CallableGenerator(lambda p: "x").generate("a single string")


def test_backend_returning_wrong_count_is_an_error():
    gen = CallableGenerator(lambda ps: ["only one"], batched=True)
    with pytest.raises(GenerationError, match="1 completions for a batch of 2"):
        gen.generate(["a", "b"])
    gen = CallableGenerator(lambda p: 3)
    with pytest.raises(GenerationError, match="returned a int"):
        gen.generate(["a"])


def test_empty_input_and_generate_one():
    gen = CallableGenerator(lambda p: p * 2)
    assert gen.generate([]) == []
    assert gen.generate_one("ab") == "abab"


def test_prompt_helpers():
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert prompt_to_messages("hi") == [{"role": "user", "content": "hi"}]
    assert prompt_to_messages(chat) == chat
    assert messages_to_text(chat) == "System: S\n\nUser: U\n\nAssistant:"
    assert messages_to_text("raw") == "raw"


def test_progress_bar_is_shown_on_request(capsys):
    gen = CallableGenerator(lambda p: p, batch_size=1)
    gen.generate(["a", "b"], progress=True)
    assert "generating (callable)" in capsys.readouterr().err
