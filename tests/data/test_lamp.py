"""LaMP reader; the benchmark files are not available, tests write them in the official format."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from personakit.data import DataFormatError, lamp_retrieval_text, normalize_lamp_task, read_lamp, read_lamp_outputs

QUESTIONS_4 = [
    {
        "id": "310",
        "input": "Generate a headline for the following article: Stocks rose today.",
        "profile": [
            {"id": "3100", "text": "The city council met.", "title": "Council meets", "date": "2014-04-15"},
            {"id": "3101", "text": "Rain is expected.", "title": "Rain ahead"},
        ],
    },
    {"id": "311", "input": "Generate a headline for the following article: A new park.", "profile": []},
]
OUTPUTS_4 = {"task": "LaMP_4", "golds": [{"id": "311", "output": "Park opens"}, {"id": "310", "output": "Stocks up"}]}


def _dump(path, obj):
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


def _folder(tmp_path, name="LaMP_4"):
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_lamp4_questions_and_outputs_parsed_exactly(tmp_path):
    folder = _folder(tmp_path, "data")
    q = _dump(folder / "dev_questions.json", QUESTIONS_4)
    o = _dump(folder / "dev_outputs.json", OUTPUTS_4)
    ex1, ex2 = read_lamp(q, o)
    assert (ex1.id, ex1.task, ex1.target) == ("310", "LaMP-4", "Stocks up")
    assert ex1.input.startswith("Generate a headline")
    assert ex1.profile.user_id == "310"
    first, second = ex1.profile.items
    assert (first.id, first.text, first.fields) == ("3100", "The city council met.", {"title": "Council meets"})
    assert first.timestamp == datetime(2014, 4, 15, tzinfo=timezone.utc)
    assert second.timestamp is None
    assert lamp_retrieval_text(first, "LaMP-4") == "Council meets The city council met."
    assert (ex2.target, ex2.profile.items) == ("Park opens", [])


def test_task_from_filename_or_argument(tmp_path):
    q = _dump(_folder(tmp_path, "LaMP_4") / "train_questions.json", QUESTIONS_4)
    assert read_lamp(q)[0].task == "LaMP-4"  # from the folder name
    assert read_lamp(q)[0].target is None
    plain = _dump(tmp_path / "questions.json", QUESTIONS_4)
    with pytest.raises(DataFormatError, match="cannot tell the LaMP task"):
        read_lamp(plain)
    assert read_lamp(plain, task="lamp4")[0].task == "LaMP-4"
    with pytest.raises(DataFormatError, match="outputs are for LaMP-4"):
        read_lamp(plain, _dump(tmp_path / "o.json", OUTPUTS_4), task="LaMP-7")


@pytest.mark.parametrize(
    "task, entry, text, fields",
    [
        ("LaMP-1", {"id": "1", "title": "Deep nets", "abstract": "We study nets."}, "We study nets.", {"title": "Deep nets"}),
        ("LaMP-2", {"id": "2", "description": "A space saga.", "tag": "sci-fi"}, "A space saga.", {"tag": "sci-fi"}),
        (
            "LaMP-2",
            {"id": "2", "text": "Markets fell.", "title": "Fall", "category": "business", "date": "2012-05-28"},
            "Markets fell.",
            {"title": "Fall", "category": "business"},
        ),
        ("LaMP-3", {"id": "3", "text": "Great blender.", "score": "5"}, "Great blender.", {"score": 5}),
        ("LaMP-5", {"id": "5", "title": "On graphs", "abstract": "Graphs are neat."}, "Graphs are neat.", {"title": "On graphs"}),
        ("LaMP-6", {"id": "6", "text": "Meeting at 3.", "title": "Meeting"}, "Meeting at 3.", {"title": "Meeting"}),
        ("LaMP-7", {"id": "7", "text": "Sunny day!", "date": "2009-06-16"}, "Sunny day!", {}),
    ],
)
def test_profile_entry_per_task(tmp_path, task, entry, text, fields):
    q = _dump(tmp_path / "q.json", [{"id": "9", "input": "x", "profile": [entry]}])
    [ex] = read_lamp(q, task=task)
    [item] = ex.profile.items
    assert (item.id, item.text, item.fields) == (entry["id"], text, fields)
    assert (item.timestamp is not None) == ("date" in entry)


def test_wrapped_questions_and_user_id(tmp_path):
    wrapped = {"task": "LaMP_6", "golds": [{"id": "1", "input": "Generate a subject", "profile": [], "user_id": 42}]}
    [ex] = read_lamp(_dump(tmp_path / "test_questions.json", wrapped))
    assert ex.task == "LaMP-6" and ex.profile.user_id == "42"


def test_outputs_reader_and_task_names(tmp_path):
    task, golds = read_lamp_outputs(_dump(tmp_path / "o.json", OUTPUTS_4))
    assert task == "LaMP-4" and golds == {"311": "Park opens", "310": "Stocks up"}
    assert normalize_lamp_task("LaMP_3") == normalize_lamp_task(3) == normalize_lamp_task("lamp-3") == "LaMP-3"
    with pytest.raises(ValueError, match="unknown LaMP task"):
        normalize_lamp_task("LaMP-8")


def _corrupt(mutate):
    data = json.loads(json.dumps(QUESTIONS_4))
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda d: d[0]["profile"][1].pop("title"), "[0].profile[1].title", "missing"),
        (lambda d: d[0]["profile"][0].update(text=5), "[0].profile[0].text", "expected a string, got int"),
        (lambda d: d[0]["profile"][0].update(date="yesterday"), "[0].profile[0].date", "expected a date"),
        (lambda d: d[1].pop("input"), "[1].input", "missing"),
        (lambda d: d[1].update(profile={}), "[1].profile", "expected a list, got object"),
        (lambda d: d[1].update(id="310"), "[1].id", "repeated question id"),
        (lambda d: d[0]["profile"][0].pop("id"), "[0].profile[0].id", "missing"),
    ],
)
def test_corrupted_questions_are_located(tmp_path, mutate, field, reason):
    q = _dump(_folder(tmp_path) / "dev_questions.json", _corrupt(mutate))
    with pytest.raises(DataFormatError) as info:
        read_lamp(q)
    err = info.value
    assert err.path == str(q) and err.field == field
    assert str(err.record).startswith(field[1])  # the record index
    assert str(q) in str(err) and f"record {field[1]}" in str(err) and repr(field) in str(err)
    assert reason in str(err)


def test_lamp3_bad_score_and_bad_json(tmp_path):
    data = [{"id": "1", "input": "rate", "profile": [{"id": "a", "text": "ok", "score": "five"}]}]
    q = _dump(tmp_path / "lamp3_q.json", data)
    with pytest.raises(DataFormatError, match="expected a number, got 'five'") as info:
        read_lamp(q)
    assert info.value.field == "[0].profile[0].score"
    bad = tmp_path / "LaMP_1_q.json"
    bad.write_text('[{"id": "1",\n "input": "x",\n "profile": [}]', encoding="utf-8")
    with pytest.raises(DataFormatError, match="invalid JSON") as info:
        read_lamp(bad)
    assert info.value.record == 3 and info.value.unit == "line"


def test_outputs_missing_gold_and_bad_golds(tmp_path):
    folder = _folder(tmp_path)
    q = _dump(folder / "dev_questions.json", QUESTIONS_4)
    o = _dump(folder / "dev_outputs.json", {"task": "LaMP_4", "golds": [{"id": "310", "output": "x"}]})
    with pytest.raises(DataFormatError, match="no gold output for question id '311'") as info:
        read_lamp(q, o)
    assert info.value.path == str(o) and info.value.field == "golds"
    o = _dump(folder / "o2.json", {"task": "LaMP_4", "golds": [{"id": "310"}]})
    with pytest.raises(DataFormatError) as info:
        read_lamp(q, o)
    assert info.value.field == "golds[0].output" and info.value.record == 0
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_lamp(folder / "nothing.json")
