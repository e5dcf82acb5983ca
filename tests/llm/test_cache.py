import json

import pytest

from personakit.llm import CachedGenerator, CallableGenerator, GenerationSettings, ResponseCache, cache_key


class Boom(RuntimeError):
    pass


def counting(fail_after=None):
    calls = []

    def fn(prompt):
        if fail_after is not None and len(calls) >= fail_after:
            raise Boom("killed")
        calls.append(prompt)
        return f"reply to {prompt}"

    return fn, calls


PROMPTS = [f"p{i}" for i in range(10)]


def test_interrupted_run_resumes_without_regenerating(tmp_path):
    path = tmp_path / "cache.jsonl"
    fn, calls = counting(fail_after=5)
    gen = CachedGenerator(CallableGenerator(fn, model_id="m", batch_size=2), path)
    with pytest.raises(Boom):
        gen.generate(PROMPTS)
    # two complete batches (4 prompts) are durable; the 5th prompt's batch was never completed
    assert len(ResponseCache(path)) == 4

    fn2, calls2 = counting()
    gen2 = CachedGenerator(CallableGenerator(fn2, model_id="m", batch_size=2), path)
    out = gen2.generate(PROMPTS)
    assert out == [f"reply to {p}" for p in PROMPTS]
    assert calls2 == PROMPTS[4:]
    assert (gen2.hits, gen2.misses) == (4, 6)

    fn3, calls3 = counting()
    assert CachedGenerator(CallableGenerator(fn3, model_id="m"), path).generate(PROMPTS) == out
    assert calls3 == []


def test_torn_last_line_is_ignored_with_warning_and_cut(tmp_path):
    path = tmp_path / "cache.jsonl"
    ResponseCache(path).put_many({"a": "A", "b": "B"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "c", "resp')  # a kill in the middle of a write
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        cache = ResponseCache(path)
    assert len(cache) == 2 and cache.get("a") == "A" and "c" not in cache
    cache.put("d", "D")  # appends on a fresh line
    assert ResponseCache(path).get("d") == "D"
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "response": "A"}\nnot json\n{"key": "b", "response": "B"}\n')
    with pytest.raises(ValueError, match=r"cache.jsonl: line 2"):
        ResponseCache(path)
    path.write_text('{"key": "a"}\n')
    with pytest.raises(ValueError, match=r"line 1: field 'response'"):
        ResponseCache(path)


def test_key_depends_on_prompt_model_and_settings():
    s = GenerationSettings(max_new_tokens=8)
    base = cache_key("hi", "m", s)
    assert base == cache_key("hi", "m", GenerationSettings(max_new_tokens=8))
    assert base != cache_key("hi!", "m", s)
    assert base != cache_key("hi", "m2", s)
    assert base != cache_key("hi", "m", GenerationSettings(max_new_tokens=9))
    assert base != cache_key([{"role": "user", "content": "hi"}], "m", s)
    sampled = GenerationSettings(temperature=1.0)
    assert cache_key("hi", "m", sampled) != cache_key("hi", "m", sampled.model_copy(update={"seed": 1}))


def test_duplicates_in_one_call_generate_once(tmp_path):
    fn, calls = counting()
    gen = CachedGenerator(CallableGenerator(fn, model_id="m"), tmp_path / "c.jsonl")
    assert gen.generate(["x", "y", "x"]) == ["reply to x", "reply to y", "reply to x"]
    assert calls == ["x", "y"]


def test_different_settings_miss(tmp_path):
    fn, calls = counting()
    gen = CachedGenerator(CallableGenerator(fn, model_id="m"), tmp_path / "c.jsonl")
    gen.generate(["x"], {"max_new_tokens": 5})
    gen.generate(["x"], {"max_new_tokens": 6})
    gen.generate(["x"], {"max_new_tokens": 5})
    assert calls == ["x", "x"]
