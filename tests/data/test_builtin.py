"""Tests for the built-in sample corpus (personakit.data.builtin)."""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import sys
from importlib import resources
from pathlib import Path

import pytest

import personakit
import personakit.data.builtin as builtin
from personakit.data.builtin import (
    BUILTIN_CORPUS_FILE,
    BUILTIN_CORPUS_LICENSE,
    BUILTIN_SPLITS,
    builtin_corpus_path,
    load_builtin_corpus,
)
from personakit.types import Dialogue

TOPICS = {"food", "pets", "travel", "work", "music", "sports", "books", "weather", "school", "health"}
# Short function words ignored when checking that agent replies draw on the persona.
_STOP = set(
    "that this with from have your what when they them there their about would could should "
    "just like really been very much some than then into only also i'm it's don't".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) >= 4 and w not in _STOP}


@pytest.fixture(scope="module")
def corpus() -> list[Dialogue]:
    return load_builtin_corpus("all")


def test_split_sizes(corpus):
    train, test = load_builtin_corpus("train"), load_builtin_corpus("test")
    assert (len(train), len(test), len(corpus)) == (28, 12, 40)
    assert len(load_builtin_corpus()) == 40  # default is "all"
    assert all(d.metadata["split"] == "train" for d in train)
    assert all(d.metadata["split"] == "test" for d in test)
    assert {d.id for d in train}.isdisjoint({d.id for d in test})
    assert [d.id for d in corpus] == [d.id for d in load_builtin_corpus("all")]  # stable order


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'valid'.*\['train', 'test', 'all'\]"):
        load_builtin_corpus("valid")
    assert BUILTIN_SPLITS == ("train", "test", "all")


def test_ids_unique(corpus):
    ids = [d.id for d in corpus]
    assert len(set(ids)) == len(ids) == 40


def test_turns_alternate_and_are_short(corpus):
    for d in corpus:
        assert 6 <= len(d.turns) <= 8, d.id
        expected = ["user" if i % 2 == 0 else "agent" for i in range(len(d.turns))]
        assert [t.speaker for t in d.turns] == expected, d.id
        assert d.speakers == ["user", "agent"]
        for t in d.turns:
            words = len(t.text.split())
            sentences = len(re.findall(r"[.!?]+(?:\s|$)", t.text))
            assert 5 <= words <= 25, (d.id, t.text)
            assert 1 <= sentences <= 2, (d.id, t.text)


def test_personas_and_participants(corpus):
    for d in corpus:
        assert set(d.personas) == {"agent", "user"}, d.id
        agent = d.personas["agent"]
        assert not agent.is_empty(), d.id
        assert 4 <= len(agent.sentences) <= 5, d.id
        assert all(re.match(r"(I|My) ", s) for s in agent.sentences), d.id
        assert d.personas["user"].sentences, d.id
        assert set(d.participants) == {"agent", "user"}, d.id
        assert d.metadata["topic"] in TOPICS, d.id


def test_agent_replies_use_the_persona(corpus):
    # At least two agent turns per dialogue share a content word with the agent persona,
    # so a persona-aware responder has something to exploit.
    for d in corpus:
        persona_words = set().union(*(_content_words(s) for s in d.personas["agent"].sentences))
        hits = sum(bool(_content_words(t.text) & persona_words) for t in d.turns if t.speaker == "agent")
        assert hits >= 2, d.id


def test_topics_balanced(corpus):
    counts = collections.Counter(d.metadata["topic"] for d in corpus)
    assert counts == {topic: 4 for topic in TOPICS}


def test_recurring_responders(corpus):
    by_agent: dict[str, list[Dialogue]] = collections.defaultdict(list)
    for d in corpus:
        by_agent[d.participants["agent"]].append(d)
    recurring = {a: ds for a, ds in by_agent.items() if len(ds) > 1}
    assert {a: len(ds) for a, ds in recurring.items()} == {"agent-rosa": 3, "agent-kofi": 3, "agent-ines": 2}
    for agent_id, ds in recurring.items():
        # the same responder keeps the same persona, meets different users, in both splits
        assert len({tuple(d.personas["agent"].sentences) for d in ds}) == 1, agent_id
        assert len({d.participants["user"] for d in ds}) == len(ds), agent_id
        assert {d.metadata["split"] for d in ds} == {"train", "test"}, agent_id
    assert sum(len(ds) for ds in by_agent.values() if len(ds) == 1) == 32
    users = [d.participants["user"] for d in corpus]
    assert len(set(users)) == len(users)


def test_file_is_package_data():
    res = builtin_corpus_path()
    assert res.is_file()
    assert res.name == BUILTIN_CORPUS_FILE
    assert resources.files("personakit.data.builtin").joinpath("dialogues.jsonl").is_file()
    package_root = Path(personakit.__file__).resolve().parent
    with resources.as_file(res) as path:
        rel = path.resolve().relative_to(package_root).as_posix()
        assert rel == "data/builtin/dialogues.jsonl"
        assert path.stat().st_size < 60_000
    # The setuptools package-data globs ship it in wheels (checked when the source tree is here).
    pyproject = package_root.parents[1] / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["personakit"]
        assert any(fnmatch.fnmatch(rel, g) for g in globs)


def test_license_note():
    assert "Apache" in BUILTIN_CORPUS_LICENSE and "original" in BUILTIN_CORPUS_LICENSE


def _write_copy(tmp_path: Path, mutate) -> Path:
    lines = builtin_corpus_path().read_text(encoding="utf-8").splitlines()
    lines = mutate(lines)
    path = tmp_path / "dialogues.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_copy_loads(tmp_path, monkeypatch):
    path = _write_copy(tmp_path, lambda lines: lines[:3] + [""] + lines[3:5])  # blank lines are skipped
    monkeypatch.setattr(builtin, "builtin_corpus_path", lambda: path)
    assert len(load_builtin_corpus()) == 5


def test_corrupted_json_names_file_and_line(tmp_path, monkeypatch):
    path = _write_copy(tmp_path, lambda lines: lines[:6] + [lines[6][:-10]] + lines[7:])
    monkeypatch.setattr(builtin, "builtin_corpus_path", lambda: path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: line 7: invalid dialogue record"):
        load_builtin_corpus("train")


def test_schema_error_names_field(tmp_path, monkeypatch):
    def drop_speaker(lines):
        rec = json.loads(lines[1])
        del rec["turns"][2]["speaker"]
        return [lines[0], json.dumps(rec)] + lines[2:]

    path = _write_copy(tmp_path, drop_speaker)
    monkeypatch.setattr(builtin, "builtin_corpus_path", lambda: path)
    with pytest.raises(ValueError, match=r"line 2: invalid dialogue record: field 'turns\.2\.speaker'"):
        load_builtin_corpus()


def test_bad_split_and_duplicate_id(tmp_path, monkeypatch):
    def bad_split(lines):
        rec = json.loads(lines[0])
        rec["metadata"]["split"] = "dev"
        return [json.dumps(rec)] + lines[1:]

    path = _write_copy(tmp_path, bad_split)
    monkeypatch.setattr(builtin, "builtin_corpus_path", lambda: path)
    with pytest.raises(ValueError, match=r"line 1: .*field 'metadata\.split' is 'dev'"):
        load_builtin_corpus()

    path = _write_copy(tmp_path, lambda lines: lines[:4] + [lines[1]])
    duplicate = r"line 5: field 'id': duplicate id 'builtin-train-02' \(first on line 2\)"
    with pytest.raises(ValueError, match=duplicate):
        load_builtin_corpus()


def test_results_are_fresh_objects():
    first = load_builtin_corpus("test")
    first[0].turns.clear()
    assert len(load_builtin_corpus("test")[0].turns) >= 6
