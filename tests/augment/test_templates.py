import pytest

from personakit.augment import (
    SMALL_MODEL_PARAMETERS,
    TEMPLATE_NAMES,
    AugmentTemplate,
    GenericResponseAugmenter,
    load_template,
    recommended_template,
    template_path,
)
from personakit.config import ConfigError
from personakit.data import dialogues_to_examples, load_builtin_corpus
from personakit.llm import CallableGenerator
from personakit.types import Persona, ResponseExample, Turn

SINGLE = [name for name in TEMPLATE_NAMES if not name.endswith("-chat")]
CHAT = [name for name in TEMPLATE_NAMES if name.endswith("-chat")]


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
                                         ("persona_chat", "convai2"), ("Built-in", "builtin"),
                                         ("SPC-Chat", "spc-chat"), ("spc_chat", "spc-chat"),
                                         ("ed-chat", "empathetic-chat"), ("persuasion_for_good_chat", "pfg-chat")])
def test_aliases(alias, name):
    assert load_template(alias).name == name


def test_load_template_returns_a_fresh_copy():
    t = load_template("spc")
    t.rules.append("Shout.")
    assert "Shout." not in load_template("spc").rules


def test_every_dataset_has_a_chat_template():
    assert sorted(CHAT) == sorted(f"{name}-chat" for name in SINGLE)
    assert all(load_template(name).layout == "single" for name in SINGLE)
    assert all(load_template(name).layout == "chat" for name in CHAT)


@pytest.mark.parametrize("name", SINGLE)
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
@pytest.mark.parametrize("name", ["spc", "spc-chat"])
def test_persona_withheld_on_real_spc(name):
    from _shared import shared_data_path
    from personakit.data import DEFAULT_AGENTS, read_spc_jsonl

    path = shared_data_path("spc", "test.jsonl")
    dialogues = read_spc_jsonl(path)[:40]
    examples = dialogues_to_examples(dialogues, DEFAULT_AGENTS["spc"])
    assert _assert_persona_withheld(_augmenter(name), examples) > 100


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


CHAT_GOOD = """
name: mine
layout: chat
system: "{scenario}"
user: "{last_user_utterance}"
scenario: A chat.
opening_user: Hello!
"""


@pytest.mark.parametrize(
    "good, mutation, field, message",
    [
        (GOOD, ("{history}\\n>> {last_user_utterance}", "{history} {persona}"), "user", "persona"),
        (GOOD, ("{history}\\n>> {last_user_utterance}", "{history} only"), "user", "last_user_utterance"),
        (GOOD, ('"{scenario} Rules: {rules}"', '"{scenario} {persona}"'), "system", "persona"),
        (GOOD, ("A chat with {user_name}.", "A chat about {topic}."), "scenario", "topic"),
        (GOOD, ("[Be brief.]", "[Be brief., '']"), "rules", "empty"),
        (GOOD, ("user_name: Human", "user_name: Bot"), "agent_name", "differ"),
        (GOOD, ("system:", "sytem:"), "sytem", "Extra inputs"),
        (GOOD, ('"{scenario} Rules: {rules}"', '"{0} {rules}"'), "system", "plain name"),
        # the chat layout
        (CHAT_GOOD, ('user: "{last_user_utterance}"', 'user: "{history} {last_user_utterance}"'), "user",
         "chat layout"),
        (CHAT_GOOD, ('user: "{last_user_utterance}"', 'user: "{persona} {last_user_utterance}"'), "user", "persona"),
        (CHAT_GOOD, ("layout: chat", "layout: chatty"), "layout", "'single' or 'chat'"),
        (CHAT_GOOD, ("opening_user: Hello!", "opening_user: Hello {name}!"), "opening_user", "name"),
        (CHAT_GOOD, ("opening_user: Hello!", "opening_user: ''"), "opening_user", "at least 1 character"),
    ],
)
def test_invalid_user_template_names_file_and_field(tmp_path, good, mutation, field, message):
    path = tmp_path / "bad.yaml"
    path.write_text(good)
    load_template(path)  # valid before the mutation
    path.write_text(good.replace(*mutation))
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


# ------------------------------------------------------------------ chat layout
def _roles(chat):
    return [m["role"] for m in chat]


@pytest.mark.parametrize("name", CHAT)
def test_chat_layout_sends_the_history_as_alternating_turns(name):
    chat = _augmenter(name).build_prompt(_example())
    assert chat[0] == {"role": "system", "content": load_template(name).render_system()}
    assert _roles(chat) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in chat[1:]] == [
        "Hi there, how is your week going?", "Busy! Lots of work.", "What do you do on weekends?",
        "Mostly gardening.", "Do you have any pets?"]
    # neither the template's names nor the dataset's labels reach the turns
    ex2 = _example(agent="User 2", user="User 1")
    assert _augmenter(name).build_prompt(ex2) == chat
    assert "User 2" not in str(chat)


def test_chat_layout_merges_consecutive_turns_of_one_side():
    ex = ResponseExample(id="m", history=[
        Turn(speaker="u", text="Hi."), Turn(speaker="u", text="Anyone there?"), Turn(speaker="a", text="Yes."),
        Turn(speaker="a", text="Sorry,  I was away."), Turn(speaker="u", text="No problem."),
        Turn(speaker="u", text="So, pets?")], response="A cat.", agent="a")
    chat = _augmenter("spc-chat").build_prompt(ex)
    assert chat[1:] == [{"role": "user", "content": "Hi.\nAnyone there?"},
                        {"role": "assistant", "content": "Yes.\nSorry, I was away."},
                        {"role": "user", "content": "No problem.\nSo, pets?"}]


def test_chat_layout_opens_a_history_that_starts_with_the_agent():
    ex = ResponseExample(id="p", history=[Turn(speaker="persuader", text="Have you heard of Save the Children?"),
                                          Turn(speaker="persuadee", text="No, what is it?")],
                         response="A charity.", agent="persuader")
    chat = _augmenter("pfg-chat").build_prompt(ex)
    assert _roles(chat) == ["system", "user", "assistant", "user"]
    assert chat[1]["content"] == load_template("pfg-chat").opening_user == "Hi!"
    # max_history_turns can cut a history so that it starts with the agent
    chat = _augmenter("spc-chat", max_history_turns=2).build_prompt(_example())
    assert [m["content"] for m in chat[1:]] == ["Hi!", "Mostly gardening.", "Do you have any pets?"]
    # a custom opening, with the template's names
    t = AugmentTemplate(layout="chat", system="Chat.", user="{last_user_utterance}",
                        opening_user="Hello, {agent_name}.", agent_name="Bo")
    assert _augmenter(t, max_history_turns=2).build_prompt(_example())[1]["content"] == "Hello, Bo."


def test_chat_layout_first_turn_and_user_wrapper():
    t = AugmentTemplate(layout="chat", system="Chat.", user="{user_name} says: {last_user_utterance}")
    ex = ResponseExample(id="a", history=[Turn(speaker="user", text="Hello?")], response="Hi.")
    assert _augmenter(t).build_prompt(ex) == [{"role": "system", "content": "Chat."},
                                             {"role": "user", "content": "User says: Hello?"}]


@pytest.mark.parametrize("name", CHAT)
def test_chat_layout_persona_never_in_prompt(name):
    ex = _example()
    text = str(_augmenter(name).build_prompt(ex))
    assert not any(s in text for s in _persona_strings(ex))


def test_single_layout_still_takes_a_history_block():
    assert AugmentTemplate(system="S.", user="{history}\n{last_user_utterance}").layout == "single"


@pytest.mark.parametrize("dataset, params, expected", [
    ("spc", 135_000_000, "spc-chat"), ("Synthetic-Persona-Chat", SMALL_MODEL_PARAMETERS - 1, "spc-chat"),
    ("spc", SMALL_MODEL_PARAMETERS, "spc"), ("ed", 8_000_000_000, "empathetic"), ("pfg", None, "pfg"),
    ("builtin-chat", None, "builtin"), ("builtin", 135_000_000, "builtin-chat"),
])
def test_recommended_template(dataset, params, expected):
    assert recommended_template(dataset, params) == expected
    assert expected in TEMPLATE_NAMES


def test_recommended_template_unknown_dataset():
    with pytest.raises(KeyError, match="unknown dataset 'lamp'"):
        recommended_template("lamp", 1)
