import pytest

from personakit.llm import CallableGenerator, GenerationSettings
from personakit.models.icl import (
    HIST_SYSTEM_PROMPT,
    TST_SYSTEM_PROMPT,
    ICLPromptBuilder,
    ICLPromptBuilderConfig,
    ICLResponder,
    ICLResponderConfig,
)
from personakit.testing import assert_config_matches
from personakit.types import Persona, ResponseExample, Turn


def make_example(i, dialogue=None, n_turns=3, generic=True):
    turns = []
    for t in range(n_turns):
        speaker = "user" if (n_turns - 1 - t) % 2 == 0 else "agent"
        turns.append(Turn(speaker=speaker, text=f"turn {t} of example {i}"))
    return ResponseExample(
        id=f"ex{i}",
        dialogue_id=dialogue or f"d{i}",
        persona=Persona(sentences=[f"persona fact {i}a.", f"persona fact {i}b."]),
        history=turns,
        response=f"target response {i}",
        generic_response=f"generic response {i}" if generic else None,
    )


POOL = [make_example(i) for i in range(10)]


def test_hist_prompt_has_persona_history_in_order_and_last_user_turn_last():
    ex = make_example(99, n_turns=5)
    chat = ICLPromptBuilder(mode="hist", n_shot=0).build(ex)
    assert chat[0]["role"] == "system" and chat[0]["content"].startswith(HIST_SYSTEM_PROMPT)
    assert "persona fact 99a." in chat[0]["content"] and "persona fact 99b." in chat[0]["content"]
    assert chat[1:] == [
        {"role": "user", "content": "turn 0 of example 99"},
        {"role": "assistant", "content": "turn 1 of example 99"},
        {"role": "user", "content": "turn 2 of example 99"},
        {"role": "assistant", "content": "turn 3 of example 99"},
        {"role": "user", "content": "turn 4 of example 99"},
    ]
    flat = " ".join(m["content"] for m in chat)
    assert "target response 99" not in flat and "generic response 99" not in flat


def test_history_window_starts_with_a_user_message_and_merges_same_side_turns():
    ex = make_example(7, n_turns=5)
    chat = ICLPromptBuilder(n_shot=0, max_history_turns=2).build(ex)
    # the window [agent turn 3, user turn 4] loses its leading agent turn
    assert chat[1:] == [{"role": "user", "content": "turn 4 of example 7"}]
    chat = ICLPromptBuilder(n_shot=0, max_history_turns=3).build(ex)
    assert [m["content"] for m in chat[1:]] == ["turn 2 of example 7", "turn 3 of example 7", "turn 4 of example 7"]
    assert len(ICLPromptBuilder(n_shot=0, max_history_turns=None).build(ex)) == 6
    multi = ResponseExample(
        id="m", history=[Turn(speaker="user", text="a"), Turn(speaker="other", text="b")], response="r"
    )
    assert ICLPromptBuilder(n_shot=0).build(multi)[1:] == [{"role": "user", "content": "a\nb"}]


def test_shots_are_rendered_in_the_system_message_with_their_targets():
    ex = make_example(50, n_turns=5)
    builder = ICLPromptBuilder(n_shot=3, seed=1)
    chat = builder.build(ex, POOL)
    shots = builder.select_shots(ex, POOL)
    system = chat[0]["content"]
    assert len(shots) == 3 and [m["role"] for m in chat[1:]] == ["user", "assistant"] * 2 + ["user"]
    for shot in shots:
        block = builder.render_shot(shot)
        assert block in system
        i = shot.id[2:]
        assert block.splitlines() == [
            f"Persona: persona fact {i}a. persona fact {i}b.",
            f"Person: turn 1 of example {i}",
            f"User: turn 2 of example {i}",
            f"Reply: target response {i}",
        ]
    # the shots come after the example's own persona
    assert system.index("persona fact 50a.") < min(system.index(f"persona fact {s.id[2:]}a.") for s in shots)


def test_shots_never_include_the_example_or_its_dialogue():
    pool = POOL + [make_example(100, dialogue="d3")]
    builder = ICLPromptBuilder(n_shot=5, seed=0)
    for ex in pool:
        for seed in range(5):
            builder.seed = seed
            shots = builder.select_shots(ex, pool)
            assert len(shots) == 5
            assert all(s.id != ex.id and s.dialogue_id != ex.dialogue_id for s in shots)
            assert len({s.id for s in shots}) == 5


def test_shot_sampling_is_deterministic_and_order_independent():
    builder = ICLPromptBuilder(n_shot=2, seed=0)
    examples = [make_example(i) for i in range(20, 26)]
    first = builder.build_many(examples, POOL)
    again = ICLPromptBuilder(n_shot=2, seed=0).build_many(examples[::-1], POOL)[::-1]
    assert first == again
    other_seeds = [ICLPromptBuilder(n_shot=2, seed=s).build_many(examples, POOL) for s in (1, 2)]
    assert any(o != first for o in other_seeds)


def test_small_pool_gives_fewer_shots():
    ex = make_example(0)
    shots = ICLPromptBuilder(n_shot=5).select_shots(ex, POOL[:3])
    assert {s.id for s in shots} == {"ex1", "ex2"}


def test_tst_prompt_has_persona_and_generic_response_but_no_history():
    ex = make_example(42)
    builder = ICLPromptBuilder(mode="tst", n_shot=2)
    chat = builder.build(ex, POOL)
    assert [m["role"] for m in chat] == ["system", "user"]
    assert chat[0]["content"].startswith(TST_SYSTEM_PROMPT) and "persona fact 42a." in chat[0]["content"]
    assert chat[-1]["content"] == "Generic reply: generic response 42"
    assert all("turn" not in m["content"] for m in chat)
    for shot in builder.select_shots(ex, POOL):
        i = shot.id[2:]
        assert f"Generic reply: generic response {i}\nRewritten: target response {i}" in chat[0]["content"]


def test_tst_requires_generic_responses_on_examples_and_shots():
    ex = make_example(1, generic=False)
    with pytest.raises(ValueError, match=r"example 'ex1' has no field 'generic_response'"):
        ICLPromptBuilder(mode="tst", n_shot=0).build(ex)
    pool = POOL + [make_example(77, generic=False)]
    with pytest.raises(ValueError, match=r"shot 'ex77' has no field 'generic_response'"):
        ICLResponder(CallableGenerator(lambda p: "x"), mode="tst", n_shot=1, shot_pool=pool)
    # ICL(Hist) does not need them
    ICLPromptBuilder(mode="hist", n_shot=2).build(ex, pool)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ICLPromptBuilder(mode="other")
    with pytest.raises(ValueError, match="n_shot"):
        ICLPromptBuilder(n_shot=-1)
    with pytest.raises(ValueError, match="shot_pool"):
        ICLResponder(CallableGenerator(lambda p: "x"), n_shot=2)


def test_responder_generates_through_a_callable_generator():
    seen = []

    def fn(chat, settings):
        seen.append((chat, settings))
        last = chat[-1]["content"]
        return f"You: answer to [{last}]\nUser: a continuation"

    examples = [make_example(i) for i in range(30, 35)]
    responder = ICLResponder(CallableGenerator(fn, batched=False), n_shot=2, shot_pool=POOL, seed=0)
    out = responder.respond(examples)
    assert out == [f"answer to [turn 2 of example {i}]" for i in range(30, 35)]
    assert len(seen) == 5
    assert seen[0][1].stop == ["\n"] and seen[0][1].max_new_tokens == 48
    assert seen[0][0] == responder.prompts(examples)[0]
    out2 = responder.respond(examples[:1], GenerationSettings(max_new_tokens=3))
    assert seen[-1][1].max_new_tokens == 3 and len(out2) == 1


def test_configs_mirror_constructors():
    assert_config_matches(ICLPromptBuilderConfig)
    assert_config_matches(ICLResponderConfig, exclude=["generator", "shot_pool"])
    cfg = ICLResponderConfig.from_yaml("mode: tst\nn_shot: 1\nsettings:\n  max_new_tokens: 12\n")
    responder = cfg.build(generator=CallableGenerator(lambda p: "ok"), shot_pool=POOL)
    assert responder.mode == "tst" and responder.n_shot == 1 and responder.settings.max_new_tokens == 12
    assert ICLResponderConfig.from_yaml(cfg.to_yaml()) == cfg
    assert isinstance(ICLPromptBuilderConfig(n_shot=0).build(), ICLPromptBuilder)
