"""LaMP prompt and query construction (paper Table 2) on small files in the official LaMP format."""

from __future__ import annotations

import doctest
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import personakit.retrieval.lamp_prompts as lamp_prompts
from personakit.data import LAMP_TASKS, read_lamp
from personakit.retrieval import BM25Retriever
from personakit.retrieval.lamp_prompts import (
    LAMP_TEMPLATES,
    LaMPPromptBuilder,
    LaMPTemplate,
    clean_pfg_reply,
    count_tokens,
    get_lamp_template,
    lamp_query,
    register_lamp_template,
)
from personakit.types import ProfileExample, ProfileItem, UserProfile

# One question per task, in the official LaMP layout: (input, profile entries, gold output).
QUESTIONS = {
    1: (
        'For an author who has written the paper with the title "Deep nets for cats", which reference is related? '
        'Just answer with [1] or [2] without explanation. [1]: "Feline vision models" [2]: "Stock market prediction"',
        [{"id": "10", "title": "Cat detectors", "abstract": "We detect cats."},
         {"id": "11", "title": "Dog detectors", "abstract": "We detect dogs."}],
        "[1]",
    ),
    2: (
        "Which tag does this movie relate to among the following tags? Just answer with the tag name without further "
        "explanation. tags: [sci-fi, comedy, dark comedy] description: A robot learns to love.",
        [{"id": "20", "description": "Aliens invade Ohio.", "tag": "sci-fi"},
         {"id": "21", "description": "Two friends rob a bank, badly.", "tag": "comedy"}],
        "sci-fi",
    ),
    3: (
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without "
        "further explanation. review: Works great, love it.",
        [{"id": "30", "text": "Broke after a day.", "score": "1"},
         {"id": "31", "text": "Does the job.", "score": "4"}],
        "5",
    ),
    4: (
        "Generate a headline for the following article: The city council voted to build a new park.",
        [{"id": "40", "text": "Voters approved the school budget.", "title": "Budget passes"},
         {"id": "41", "text": "A storm flooded the main street.", "title": "Flood downtown"}],
        "Council backs new park",
    ),
    5: (
        "Generate a title for the following abstract of a paper: We propose a faster sorting algorithm.",
        [{"id": "50", "title": "Quick hashing", "abstract": "A hash table that is quick."},
         {"id": "51", "title": "Lazy graphs", "abstract": "Graphs computed lazily."}],
        "Faster sorting",
    ),
    6: (
        "Generate a subject for the following email: Hi team, the meeting moves to Friday at noon.",
        [{"id": "60", "text": "Please send the report by Monday.", "title": "Report due"},
         {"id": "61", "text": "Lunch is on me today.", "title": "Lunch"}],
        "Meeting moved",
    ),
    7: (
        "Paraphrase the following tweet without any explanation before or after it: so tired of mondays",
        [{"id": "70", "text": "coffee is life"}, {"id": "71", "text": "weekend plz come faster"}],
        "mondays are exhausting",
    ),
}

EXPECTED_QUERY = {
    1: "Feline vision models Stock market prediction",
    2: "A robot learns to love.",
    3: "Works great, love it.",
    4: "The city council voted to build a new park.",
    5: "We propose a faster sorting algorithm.",
    6: "Hi team, the meeting moves to Friday at noon.",
    7: "so tired of mondays",
}

EXPECTED_PROMPT = {
    1: 'For an author who has written the paper with the title "Deep nets for cats", and "Cat detectors", and '
       '"Dog detectors", which reference is related? Just answer with [1] or [2] without explanation. '
       '[1]: "Feline vision models" [2]: "Stock market prediction"',
    2: 'the tag for the movie: "Aliens invade Ohio." is "sci-fi", and the tag for the movie: "Two friends rob a bank, '
       'badly." is "comedy". ' + QUESTIONS[2][0],
    3: '1 is the score for "Broke after a day.", and 4 is the score for "Does the job.". ' + QUESTIONS[3][0],
    4: '"Budget passes" is the title for "Voters approved the school budget.", and "Flood downtown" is the title for '
       '"A storm flooded the main street.". ' + QUESTIONS[4][0],
    5: '"Quick hashing" is the title for "A hash table that is quick.", and "Lazy graphs" is the title for '
       '"Graphs computed lazily.". Following the given patterns ' + QUESTIONS[5][0],
    6: '"Report due" is the title for "Please send the report by Monday.", and "Lunch" is the title for '
       '"Lunch is on me today.". ' + QUESTIONS[6][0],
    7: '"coffee is life", and "weekend plz come faster" are written by a person. Following the given patterns '
       + QUESTIONS[7][0],
}


def _write_lamp(tmp_path, n: int) -> ProfileExample:
    folder = tmp_path / f"LaMP_{n}"
    folder.mkdir()
    text, profile, output = QUESTIONS[n]
    (folder / "dev_questions.json").write_text(json.dumps([{"id": f"{n}00", "input": text, "profile": profile}]))
    (folder / "dev_outputs.json").write_text(json.dumps({"task": f"LaMP_{n}", "golds": [{"id": f"{n}00", "output": output}]}))
    [example] = read_lamp(folder / "dev_questions.json", folder / "dev_outputs.json")
    return example


@pytest.fixture(params=range(1, 8), ids=lambda n: f"LaMP-{n}")
def lamp_example(request, tmp_path):
    return request.param, _write_lamp(tmp_path, request.param)


def test_doctests():
    assert doctest.testmod(lamp_prompts).failed == 0


def test_every_lamp_task_has_a_template():
    assert set(LAMP_TASKS) <= set(LAMP_TEMPLATES)
    assert "PFG-LaMP" in LAMP_TEMPLATES


def test_query(lamp_example):
    n, example = lamp_example
    builder = LaMPPromptBuilder(f"LaMP_{n}")
    assert builder.task == f"LaMP-{n}"
    assert builder.query(example) == EXPECTED_QUERY[n]
    assert lamp_query(n, example.input) == EXPECTED_QUERY[n]


def test_prompt_matches_table2(lamp_example):
    n, example = lamp_example
    builder = LaMPPromptBuilder(example.task, max_tokens=10_000)
    assert builder.build(example, example.profile.items) == EXPECTED_PROMPT[n]
    assert builder.select(example, example.profile.items) == example.profile.items


def test_no_entry_gives_the_input(lamp_example):
    _, example = lamp_example
    assert LaMPPromptBuilder(example.task).build(example, []) == example.input


def test_input_is_never_cut(lamp_example):
    _, example = lamp_example
    builder = LaMPPromptBuilder(example.task, max_tokens=3)
    assert builder.build(example, example.profile.items) == example.input
    assert builder.select(example, example.profile.items) == []


def test_single_entry_prompts(lamp_example):
    n, example = lamp_example
    builder = LaMPPromptBuilder(example.task)
    one = builder.build(example, example.profile.items[:1])
    entry = get_lamp_template(n).format_entry(example.profile.items[0])
    assert entry in one and EXPECTED_QUERY[n].split(" Stock")[0] in one
    assert get_lamp_template(n).format_entry(example.profile.items[1]) not in one


def _lamp4_items(lengths):
    return [ProfileItem(id=str(i), text=" ".join(["w"] * k), fields={"title": "T"}) for i, k in enumerate(lengths)]


def _lamp4_example():
    return ProfileExample(id="q", task="LaMP-4", input="Generate a headline for the following article: x y z",
                          profile=UserProfile(user_id="u"))


def test_whole_entries_are_kept_and_too_long_ones_skipped():
    example = _lamp4_example()
    items = _lamp4_items([3, 50, 4])
    builder = LaMPPromptBuilder("LaMP-4", max_tokens=40)
    prompt = builder.build(example, items)
    # entry 0 (3 words) and entry 2 (4 words) fit, entry 1 (50 words) is skipped
    assert [i.id for i in builder.select(example, items)] == ["0", "2"]
    assert prompt == '"T" is the title for "w w w", and "T" is the title for "w w w w". ' + example.input
    assert count_tokens(prompt) <= 40
    # one token less and the second entry no longer fits
    tight = LaMPPromptBuilder("LaMP-4", max_tokens=count_tokens(prompt) - 1)
    assert [i.id for i in tight.select(example, items)] == ["0"]


def test_max_items():
    example = _lamp4_example()
    builder = LaMPPromptBuilder("LaMP-4", max_items=1)
    assert [i.id for i in builder.select(example, _lamp4_items([1, 1, 1]))] == ["0"]


def test_custom_tokenizer_callables():
    example = _lamp4_example()
    items = _lamp4_items([2, 2])
    by_chars = LaMPPromptBuilder("LaMP-4", max_tokens=len(example.input) + 40, tokenizer=len)
    chosen = by_chars.select(example, items)
    assert len(chosen) == 1  # one entry is 35 characters with its separator, two are 75
    assert len(by_chars.build(example, items)) <= len(example.input) + 40

    class HFLike:  # a Hugging Face tokenizer returns a mapping with input_ids
        def __call__(self, text):
            return {"input_ids": list(range(len(text.split()) * 2))}

    hf = LaMPPromptBuilder("LaMP-4", max_tokens=2 * count_tokens(by_chars.build(example, items[:1])), tokenizer=HFLike())
    assert len(hf.select(example, items)) == 1
    assert count_tokens("a b", lambda s: [1, 2, 3]) == 3


def test_accepts_retrieved_items(tmp_path):
    example = _write_lamp(tmp_path, 4)
    retrieved = BM25Retriever().retrieve(LaMPPromptBuilder("LaMP-4").query(example), example.profile, k=2)
    builder = LaMPPromptBuilder("LaMP-4")
    assert builder.build(example, retrieved) == builder.build(example, [r.item for r in retrieved])
    with pytest.raises(TypeError, match="ProfileItem or RetrievedItem"):
        builder.build(example, ["plain string"])


def test_task_mismatch_and_missing_field(tmp_path):
    example = _write_lamp(tmp_path, 4)
    with pytest.raises(ValueError, match="is a 'LaMP-4' example, but this builder is for 'LaMP-5'"):
        LaMPPromptBuilder("LaMP-5").build(example, [])
    bad = ProfileItem(id="x9", text="no title here")
    with pytest.raises(ValueError, match="entry 'x9' has no field 'title'"):
        LaMPPromptBuilder("LaMP-4").build(example, [bad])
    with pytest.raises(ValueError, match="no prompt template for task 'LaMP-9'"):
        LaMPPromptBuilder("LaMP-9")


def test_lamp2_news_categorisation_layout(tmp_path):
    folder = tmp_path / "LaMP_2"
    folder.mkdir()
    q = [{"id": "1", "input": "Which category does this article relate to among the following categories? article: "
          "Stocks fell today.", "profile": [{"id": "a", "text": "Team wins cup.", "title": "Cup", "category": "sports"}]}]
    (folder / "q.json").write_text(json.dumps(q))
    [ex] = read_lamp(folder / "q.json", task="LaMP-2")
    builder = LaMPPromptBuilder("LaMP-2")
    assert builder.query(ex) == "Stocks fell today."
    assert builder.build(ex, ex.profile.items) == 'the category for the article: "Team wins cup." is "sports". ' + ex.input


def test_lamp1_title_insertion_fallbacks():
    template = get_lamp_template("LaMP-1")
    assert template.format_prompt(['"A"'], "the title X is long") == 'the title, and "A" X is long'
    assert template.format_prompt(['"A"'], "no marker here") == '"A". no marker here'


def test_pfg_template():
    convo = "Persuadee: Hi there.\nPersuader: Would you donate?\nPersuadee: Maybe, to whom?"
    ex = ProfileExample(id="d:3", task="PFG-LaMP", input=convo, profile=UserProfile(user_id="u"))
    builder = LaMPPromptBuilder("pfg_lamp")
    assert builder.query(ex) == "Hi there. Would you donate? Maybe, to whom?"
    assert builder.build(ex, []) == f"Write the persuader's next reply in this conversation:\n{convo}\nPersuader:"
    prompt = builder.build(ex, [ProfileItem(id="1", text="Save the Children helps kids.")])
    assert prompt.startswith('"Save the Children helps kids." are messages this persuader wrote in earlier conversations.')
    assert prompt.endswith(f"{convo}\nPersuader:")


@pytest.mark.parametrize("raw, drop, keep", [
    ("Persuader: I completely understand your", "I completely understand your", "I completely understand your"),
    ("Persuader: Persuader: hi", "hi", "hi"),
    ("**Persuader:** Thanks!", "Thanks!", "Thanks!"),
    ("Persuadee: The point is", "", "The point is"),
    ("  persuadee : no thanks", "", "no thanks"),
    ("I'm glad to hear that you're", "I'm glad to hear that you're", "I'm glad to hear that you're"),
    ("Sure, it helps kids. Persuadee: ok", "Sure, it helps kids.", "Sure, it helps kids."),
    ("Persuadee: ok. Persuader: great", "", "ok."),
    ("It helps.\nPersuader: And more", "It helps.", "It helps."),
    ("I am the persuader: it matters", "I am the persuader: it matters", "I am the persuader: it matters"),
    ("Persuader:", "", ""),
    ("", "", ""),
])
def test_clean_pfg_reply(raw, drop, keep):
    assert clean_pfg_reply(raw, wrong_role="drop") == drop
    assert clean_pfg_reply(raw) == clean_pfg_reply(raw, wrong_role="keep") == keep


def test_clean_pfg_reply_rejects_unknown_mode():
    with pytest.raises(ValueError, match="wrong_role"):
        clean_pfg_reply("x", wrong_role="cut")


@given(st.text(max_size=60))
def test_clean_pfg_reply_is_idempotent_and_label_free(text):
    for mode in ("drop", "keep"):
        once = clean_pfg_reply(text, wrong_role=mode)
        assert clean_pfg_reply(once, wrong_role=mode) == once
        assert "Persuadee:" not in once and "Persuader:" not in once


def test_postprocess_only_for_pfg():
    for task in ("LaMP-1", "LaMP-2", "LaMP-3", "LaMP-4", "LaMP-5", "LaMP-6", "LaMP-7"):
        assert get_lamp_template(task).postprocess is None
        assert LaMPPromptBuilder(task).postprocess("Persuader: x\ny") == "Persuader: x\ny"
    builder = LaMPPromptBuilder("PFG-LaMP")
    assert builder.postprocess("Persuader: Hi there.  Persuadee: no") == "Hi there."
    assert builder.postprocess("Persuadee: I'm not sure.") == "I'm not sure."  # wrong label stripped, text kept


def test_register_custom_template():
    template = LaMPTemplate("my-task", "- {text}", "{entries}\n{input}", lambda s: s.lower(), separator="\n")
    register_lamp_template(template)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_lamp_template(template)
        ex = ProfileExample(id="1", task="my-task", input="Q?", profile=UserProfile(user_id="u"))
        builder = LaMPPromptBuilder("my-task")
        assert builder.build(ex, [ProfileItem(id="a", text="x"), ProfileItem(id="b", text="y")]) == "- x\n- y\nQ?"
        assert builder.query(ex) == "q?"
    finally:
        LAMP_TEMPLATES.pop("my-task")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), max_size=8), st.integers(min_value=1, max_value=120))
def test_budget_property(lengths, budget):
    example = _lamp4_example()
    items = _lamp4_items(lengths)
    builder = LaMPPromptBuilder("LaMP-4", max_tokens=budget)
    prompt = builder.build(example, items)
    chosen = builder.select(example, items)
    assert example.input in prompt
    assert count_tokens(prompt) <= max(budget, count_tokens(example.input))
    ids = [i.id for i in chosen]
    assert ids == [i.id for i in items if i.id in ids]  # retrieval order kept
    for item in chosen:
        assert f'"{item.text}"' in prompt  # whole entries only
    # greedy: every skipped entry really did not fit at the moment it was considered
    kept: list[ProfileItem] = []
    for item in items:
        trial = LaMPPromptBuilder("LaMP-4", max_tokens=10_000).build(example, kept + [item])
        if count_tokens(trial) <= budget:
            kept.append(item)
    assert [i.id for i in kept] == ids


def test_config_matches_builder():
    from personakit.retrieval.lamp_prompts import LaMPPromptConfig
    from personakit.testing import assert_config_matches

    assert_config_matches(LaMPPromptConfig, exclude=["tokenizer"])
    builder = LaMPPromptConfig.from_dict({"task": "LaMP_5", "max_tokens": 64}).build(tokenizer=len)
    assert (builder.task, builder.max_tokens, builder.tokenizer) == ("LaMP-5", 64, len)
    with pytest.raises(Exception, match="max_tokens"):
        LaMPPromptConfig(task="LaMP-5", max_tokens=0)
