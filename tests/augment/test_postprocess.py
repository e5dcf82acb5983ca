import pytest

from personakit.augment import clean_generic_response, speaker_label_leak


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Sure, I can help.", "Sure, I can help."),
        ("  Agent: Sure, I can help.  ", "Sure, I can help."),
        ("Assistant: Agent: Sure.", "Sure."),
        ("<agent> Sure.", "Sure."),
        ("**Agent:** Sure.", "Sure."),
        ("Agent's reply: Sure.", "Sure."),
        ("Response: Sure.", "Sure."),
        ('"Sure, I can help."', "Sure, I can help."),
        ('Agent: "Sure."', "Sure."),
        ("\u201cSure thing.\u201d", "Sure thing."),
        ('"Yes," she said, "sure."', '"Yes," she said, "sure."'),  # not one quoted span
        ("Sure.\nUser: Thanks!\nAgent: You're welcome.", "Sure."),
        ("Sure.\n\n<user> Thanks!", "Sure."),
        ("Sure. What about you?\nAnything else.", "Sure. What about you? Anything else."),
        ("User: I am the user now.", ""),
        ("(no more than 2 sentences)\n\nUser: hm", ""),
        ("Sure (I think).\n[note]\nYes.", "Sure (I think). Yes."),
        ("I am not sure.\n\nUser's last message, which Agent replies", "I am not sure."),
        ("The user's last message was odd.", "The user's last message was odd."),
        ("", ""),
        ("Me too! It is great.", "Me too! It is great."),
        ("I like the Agent: Smith movies.", "I like the Agent: Smith movies."),  # not at the start
        ("I'm Agent in a friendly chat. You're asking for a friendly chat.", "You're asking for a friendly chat."),
        ("Hi, I am Agent! Nice to meet you.", "Nice to meet you."),
        ("I\u2019m Agent.", ""),
        ("I'm Agent_1. Hello!", "Hello!"),
        ("Hello, my name is User. I bake.", "I bake."),
        ("I'm an agent for a travel firm.", "I'm an agent for a travel firm."),  # not the label
        ("I'm agent-free. Agents are busy.", "I'm agent-free. Agents are busy."),
    ],
)
def test_clean(raw, expected):
    assert clean_generic_response(raw) == expected


def test_custom_names():
    raw = "Listener: That sounds hard.\nSpeaker: It was.\nListener: I see."
    assert clean_generic_response(raw, agent_name="Listener", user_name="Speaker") == "That sounds hard."
    raw = "Persuader: Save the Children helps kids.\nPersuadee: ok"
    assert clean_generic_response(raw, "Persuader", "Persuadee") == "Save the Children helps kids."
    # a label with a space
    assert clean_generic_response("Hi.\nUser 1: yo", "User 2", "User 1") == "Hi."


@pytest.mark.parametrize(
    "raw, leak",
    [
        ("Agent: Sure.", True),
        ("Assistant: Sure.", True),
        ("<agent> Sure.", True),
        ("Sure.\nUser: thanks", True),
        ("I'm Agent in a friendly chat.", True),
        ("Thanks, User!", True),
        ("I'm Agent_1.", True),
        ("Ask User 2 about it.", True),
        ("Sure, I can help.", False),
        ("My travel agent booked it; the user manual helps.", False),
        ("", False),
    ],
)
def test_speaker_label_leak(raw, leak):
    assert speaker_label_leak(raw) is leak


def test_speaker_label_leak_custom_names():
    assert speaker_label_leak("As Listener, I hear you.", "Listener", "Speaker")
    assert not speaker_label_leak("As Listener, I hear you.")  # not this template's names
    assert clean_generic_response("I'm Listener. That sounds hard.", "Listener", "Speaker") == "That sounds hard."
