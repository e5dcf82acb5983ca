import pytest
from pydantic import BaseModel

from personakit.llm import CallableGenerator
from personakit.llm.structured import StructuredOutputError, extract_json, generate_structured


class Facet(BaseModel):
    name: str
    reliability: int


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json("```json\n[1, 2]\n```") == [1, 2]
    assert extract_json('Sure: {"a": {"b": [1]}} hope it helps {"c": 2}') == {"a": {"b": [1]}}
    assert extract_json('noise {broken then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("no json here")


def test_retries_only_the_failures_with_the_error_in_the_chat():
    seen = []

    def fn(chat):
        seen.append(chat)
        if isinstance(chat, str):
            return '{"name": "diet", "reliability": 2}' if chat == "good" else '{"name": "diet"}'
        assert chat[-2] == {"role": "assistant", "content": '{"name": "diet"}'}
        assert "field 'reliability'" in chat[-1]["content"]
        return '{"name": "diet", "reliability": 3}'

    out = generate_structured(CallableGenerator(fn), ["good", "bad"], Facet)
    assert out == [Facet(name="diet", reliability=2), Facet(name="diet", reliability=3)]
    assert len(seen) == 3


def test_gives_up_with_a_clear_error_or_none():
    gen = CallableGenerator(lambda chat: "I cannot do that.")
    with pytest.raises(StructuredOutputError, match=r"prompt 1: no valid structured reply after 2 attempts"):
        generate_structured(CallableGenerator(lambda c: '{"name": "x", "reliability": 1}' if c == "a" else "nope"),
                            ["a", "b"], Facet, max_attempts=2)
    assert generate_structured(gen, ["a"], Facet, on_failure="none", max_attempts=1) == [None]


def test_function_validator():
    def positive(value):
        if not isinstance(value, int) or value <= 0:
            raise ValueError("expected a positive integer")
        return value * 10

    replies = iter(["-1", "5"])
    assert generate_structured(CallableGenerator(lambda c: next(replies)), ["q"], positive) == [50]


# ---------------------------------------------------------------- hardening (issue 23)
def test_extract_json_deep_nesting_is_a_value_error_not_a_recursion_error():
    with pytest.raises(ValueError, match="nested"):
        extract_json("[" * 1000 + "]" * 1000)
    with pytest.raises(ValueError):
        extract_json("[" * 1000)
    # a shallow value after a deep prefix is still found
    assert extract_json("[" * 5000 + ' then {"ok": true}') == {"ok": True}


def test_extract_json_is_near_linear_on_unclosed_brackets():
    import time

    for text in ("{" * 200_000, "x [" * 70_000, '{"a": [' * 30_000):
        start = time.perf_counter()
        with pytest.raises(ValueError):
            extract_json(text)
        assert time.perf_counter() - start < 3.0, text[:10]  # quadratic before: ~8 s for the first
    start = time.perf_counter()
    assert extract_json("{" * 200_000 + ' {"ok": 1}') == {"ok": 1}
    assert time.perf_counter() - start < 3.0


def test_extract_json_ignores_brackets_in_strings():
    assert extract_json('Answer: {"a": "x } y ] {", "b": [1]} ok') == {"a": "x } y ] {", "b": [1]}
    assert extract_json('prose with "a quote {x: then\n{"ok": 2}') == {"ok": 2}


def test_deeply_nested_reply_is_retried_and_other_results_kept():
    calls = {"deep": 0}

    def fn(chat):
        if chat == "good":
            return '{"name": "a", "reliability": 1}'
        calls["deep"] += 1
        if calls["deep"] == 1:
            return "[" * 1000 + "]" * 1000
        return '{"name": "b", "reliability": 2}'

    out = generate_structured(CallableGenerator(fn), ["good", "deep"], Facet)
    assert out == [Facet(name="a", reliability=1), Facet(name="b", reliability=2)]
    assert calls["deep"] == 2


def test_any_validator_exception_counts_as_a_failed_attempt():
    seen = []

    def needs_name(value):
        seen.append(value)
        return value["name"]  # KeyError when missing

    replies = iter(['{"title": "x"}', '{"name": "y"}'])
    gen = CallableGenerator(lambda chat: next(replies))
    assert generate_structured(gen, ["q"], needs_name) == ["y"]
    assert len(seen) == 2

    def broken(value):
        raise RuntimeError("validator bug")

    out = generate_structured(CallableGenerator(lambda c: "{}"), ["q"], broken, on_failure="none", max_attempts=2)
    assert out == [None]


def test_structured_error_keeps_the_valid_results():
    gen = CallableGenerator(lambda c: '{"name": "x", "reliability": 1}' if c == "a" else "[" * 1000)
    with pytest.raises(StructuredOutputError) as info:
        generate_structured(gen, ["a", "b", "a"], Facet, max_attempts=2)
    err = info.value
    assert err.index == 1 and "nested" in err.error
    assert err.results == [Facet(name="x", reliability=1), None, Facet(name="x", reliability=1)]
    assert err.failed == [1]
