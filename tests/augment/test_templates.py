import pytest

from personakit.augment import (
    TEMPLATE_NAMES,
    AugmentTemplate,
    GenericResponseAugmenter,
    load_template,
    template_path,
)
from personakit.config import ConfigError
from personakit.data import dialogues_to_examples, load_builtin_corpus
from personakit.llm import CallableGenerator
from personakit.types import Persona, ResponseExample, Turn


def _augmenter(template, **kwargs):
    return GenericResponseAugmenter(CallableGenerator(lambda chat: "ok"), template=template, **kwargs)


def _example(agent="agent", user="user"):
    return ResponseExample(
        id="d:5",
        persona=Persona(sentences=["I keep bees on my roof.", "My sister is a pilot."],
                        attributes={"emotion": "wistful", "age": 41}),
        user_persona=Persona(sentences=["I collect stamps."]),
        history=[
            Turn(speaker=user, text="Hi there, how is your week going?"),
            Turn(speaker=agent, text="Busy!  Lots\nof work."),
            Turn(speaker=user, text="What do you do on weekends?"),
            Turn(speaker=agent, text="Mostly gardening."),
            Turn(speaker=user, text="Do you have any pets?"),
        ],
        response="Just my bees, if they count!",
        agent=agent,
        metadata={"situation": "She remembered her childhood home.", "turn_index": 5},
    )


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_shipped_templates_load_and_render(name):
    t = load_template(name)
    assert t.name == name
    assert template_path(name).is_file()
    system = t.render_system()
    assert "{" not in system and "}" not in system  # every format field filled
    for item in t.rules + t.goals:
        assert item.split("{")[0] in system
    assert "neutral" in system.lower()


@pytest.mark.parametrize("alias, name", [("ED", "empathetic"), ("persuasion_for_good", "pfg"),
                                         ("empathetic-dialogues", "empathetic"), ("spc_jsonl", "spc"),
                                         ("persona_chat", "convai2"), ("Built-in", "builtin")])
def test_aliases(alias, name):
    assert load_template(alias).name == name


def test_load_template_returns_a_fresh_copy():
    t = load_template("spc")
    t.rules.append("Shout.")
    assert "Shout." not in load_template("spc").rules


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_prompt_isolates_last_user_utterance_and_keeps_order(name):
    ex = _example()
    t = load_template(name)
    system, user = _augmenter(name).build_prompt(ex)
    assert system == {"role": "system", "content": t.render_system()}
    assert user["role"] == "user"
    text = user["content"]
    # earlier turns in order, with the template's names and collapsed whitespace
    lines = [f"{t.user_name}: Hi there, how is your week going?", f"{t.agent_name}: Busy! Lots of work.",
             f"{t.user_name}: What do you do on weekends?", f"{t.agent_name}: Mostly gardening."]
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)
    # the last user utterance appears once, after the history block, on its own
    last = "Do you have any pets?"
    assert text.count(last) == 1
    assert text.index(last) > positions[-1]
    assert f"{t.user_name}: {last}" in text  # isolated on its own line
    history_block = text[: text.index(last)]
    assert all(line in history_block for line in lines)
    # dataset speaker labels never reach the prompt
    ex2 = _example(agent="User 2", user="User 1")
    assert "User 2" not in _augmenter(name).build_prompt(ex2)[1]["content"]
    assert _augmenter(name).build_prompt(ex2) == _augmenter(name).build_prompt(ex)


def test_first_turn_uses_empty_history_text():
    ex = ResponseExample(id="a", history=[Turn(speaker="user", text="Hello?")], response="Hi.")
    t = load_template("builtin")
    content = _augmenter("builtin").build_prompt(ex)[1]["content"]
    assert t.empty_history in content and content.count("Hello?") == 1


def test_max_history_turns():
    ex = _example()
    content = _augmenter("spc", max_history_turns=2).build_prompt(ex)[1]["content"]
    assert "Mostly gardening." in content and "Do you have any pets?" in content
    assert "weekends" not in content and "Hi there" not in content
    with pytest.raises(ValueError, match="max_history_turns"):
        _augmenter("spc", max_history_turns=0)


def _persona_strings(ex):
    out = []
    for persona in (ex.persona, ex.user_persona):
        if persona is None:
            continue
        out += [s for s in persona.sentences if s.strip()]
        out += [f"{k}: {v}" for k, v in persona.attributes.items() if v not in (None, "")]
    return out


def _assert_persona_withheld(augmenter, examples):
    checked = 0
    for ex in examples:
        history_text = "\n".join(t.text for t in ex.history)
        prompt_text = "\n".join(m["content"] for m in augmenter.build_prompt(ex))
        for sentence in _persona_strings(ex):
            if sentence in history_text:
                continue
            checked += 1
            assert sentence not in prompt_text, f"{ex.id}: persona {sentence!r} leaked into the prompt"
    return checked


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_persona_never_in_prompt_unless_in_history(name):
    examples = dialogues_to_examples(load_builtin_corpus(), "agent")
    examples.append(_example())
    assert _assert_persona_withheld(_augmenter(name), examples) > 100
    # the situation prompt and attribute values are withheld too
    prompt = "\n".join(m["content"] for m in _augmenter(name).build_prompt(_example()))
    assert "wistful" not in prompt and "childhood home" not in prompt and "bees" not in prompt


def test_persona_said_in_history_stays():
    ex = _example()
    ex = ex.model_copy(update={"history": [*ex.history[:-1], Turn(speaker="user", text="I keep bees on my roof.")]})
    prompt = "\n".join(m["content"] for m in _augmenter("spc").build_prompt(ex))
    assert "I keep bees on my roof." in prompt  # literally in H, so it is part of the prompt


@pytest.mark.real_data
def test_persona_withheld_on_real_spc():
    from _shared import shared_data_path
    from personakit.data import DEFAULT_AGENTS, read_spc_jsonl

    path = shared_data_path("spc", "test.jsonl")
    dialogues = read_spc_jsonl(path)[:40]
    examples = dialogues_to_examples(dialogues, DEFAULT_AGENTS["spc"])
    assert _assert_persona_withheld(_augmenter("spc"), examples) > 100


# ------------------------------------------------------------------ user templates
GOOD = """
name: mine
system: "{scenario} Rules: {rules}"
user: "{history}\\n>> {last_user_utterance}"
scenario: A chat with {user_name}.
rules: [Be brief.]
agent_name: Bot
user_name: Human
"""


def test_user_yaml_template(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    t = load_template(path)
    assert t.name == "mine"
    assert load_template(str(path)) == t
    ex = _example()
    system, user = _augmenter(path).build_prompt(ex)
    assert system["content"] == "A chat with Human. Rules: - Be brief."
    assert user["content"].endswith(">> Do you have any pets?")
    assert "Bot: Mostly gardening." in user["content"]


@pytest.mark.parametrize(
    "mutation, field, message",
    [
        (("{history}\\n>> {last_user_utterance}", "{history} {persona}"), "user", "persona"),
        (("{history}\\n>> {last_user_utterance}", "{history} only"), "user", "last_user_utterance"),
        (('"{scenario} Rules: {rules}"', '"{scenario} {persona}"'), "system", "persona"),
        (("A chat with {user_name}.", "A chat about {topic}."), "scenario", "topic"),
        (("[Be brief.]", "[Be brief., '']"), "rules", "empty"),
        (("user_name: Human", "user_name: Bot"), "agent_name", "differ"),
        (("system:", "sytem:"), "sytem", "Extra inputs"),
        (('"{scenario} Rules: {rules}"', '"{0} {rules}"'), "system", "plain name"),
    ],
)
def test_invalid_user_template_names_file_and_field(tmp_path, mutation, field, message):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(*mutation))
    with pytest.raises(ConfigError) as info:
        load_template(path)
    text = str(info.value)
    assert str(path) in text
    assert f"'{field}" in text
    assert message in text


def test_missing_field_and_bad_yaml(tmp_path):
    path = tmp_path / "nosystem.yaml"
    path.write_text("user: '{last_user_utterance}'\n")
    with pytest.raises(ConfigError, match=r"nosystem\.yaml.*\n.*field 'system': Field required"):
        load_template(path)
    path.write_text("system: [unclosed\n")
    with pytest.raises(ConfigError, match=r"nosystem\.yaml: invalid YAML"):
        load_template(path)


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(KeyError, match="unknown augmentation template 'nope'"):
        load_template("nope")
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_template(tmp_path / "absent.yaml")


def test_template_object_passes_through():
    t = AugmentTemplate(system="Task.", user="{last_user_utterance}")
    assert load_template(t) is t
    assert _augmenter(t).build_prompt(_example())[1]["content"] == "Do you have any pets?"
