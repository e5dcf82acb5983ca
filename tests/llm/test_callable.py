from personakit.llm import CallableGenerator, GenerationSettings


def test_per_prompt_function_with_and_without_settings():
    assert CallableGenerator(lambda p: p.upper()).generate(["a", "b"]) == ["A", "B"]
    gen = CallableGenerator(lambda p, s: f"{p}:{s.max_new_tokens}")
    assert gen.generate(["a"], GenerationSettings(max_new_tokens=7)) == ["a:7"]


def test_batched_function_receives_whole_batches():
    batches = []

    def fn(prompts):
        batches.append(list(prompts))
        return [p[::-1] for p in prompts]

    gen = CallableGenerator(fn, batched=True, batch_size=2, model_id="rev")
    assert gen.generate(["ab", "cd", "ef"]) == ["ba", "dc", "fe"]
    assert batches == [["ab", "cd"], ["ef"]]
    assert gen.model_id == "rev"


def test_chat_prompts_are_passed_through():
    gen = CallableGenerator(lambda chat: chat[-1]["content"])
    assert gen.generate([[{"role": "user", "content": "hello"}]]) == ["hello"]


def test_rejects_non_callable():
    import pytest

    with pytest.raises(TypeError):
        CallableGenerator("not a function")
