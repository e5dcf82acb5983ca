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
