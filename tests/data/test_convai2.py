"""ConvAI2 / PersonaChat reader (ParlAI text format); real files are not available, tests write them."""

from __future__ import annotations

import pytest

from personakit.data import DataFormatError, read_convai2
from personakit.types import Turn

BOTH_ORIGINAL = (
    "1 your persona: i like to remodel homes.\n"
    "2 your persona: i like to go hunting.\n"
    "3 partner's persona: i love cats.\n"
    "4 hi , how are you doing ?\tgood ! just got back from hunting .\t\tno .|good ! just got back from hunting .\n"
    "5 what did you hunt ?\tdeer , it was a good day .\t\tdeer , it was a good day .|i like pie .\n"
    "1 your persona: i am a nurse.\n"
    "2 __SILENCE__\thello , i work nights .\n"
    "3 cool , me too .\tnice !\n"
)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_small_both_original_file_parsed_exactly(tmp_path):
    path = _write(tmp_path, "valid_both_original.txt", BOTH_ORIGINAL)
    d1, d2 = read_convai2(path)
    assert d1.id == "valid_both_original-0" and d2.id == "valid_both_original-1"
    assert d1.turns == [
        Turn(speaker="partner", text="hi , how are you doing ?"),
        Turn(speaker="self", text="good ! just got back from hunting ."),
        Turn(speaker="partner", text="what did you hunt ?"),
        Turn(speaker="self", text="deer , it was a good day ."),
    ]
    assert d1.personas["self"].sentences == ["i like to remodel homes.", "i like to go hunting."]
    assert d1.personas["partner"].sentences == ["i love cats."]
    assert d1.metadata == {
        "source_file": "valid_both_original.txt",
        "line": 1,
        "persona_variant": "original",
        "persona_side": "both",
    }
    # __SILENCE__ is not a turn: self opens the second dialogue
    assert d2.turns[0] == Turn(speaker="self", text="hello , i work nights .")
    assert [t.speaker for t in d2.turns] == ["self", "partner", "self"]
    assert d2.personas["partner"].sentences == []
    assert "candidates" not in d1.metadata


def test_candidates_kept_on_request(tmp_path):
    path = _write(tmp_path, "train_self_revised.txt", BOTH_ORIGINAL)
    d1, d2 = read_convai2(path, keep_candidates=True)
    assert d1.metadata["candidates"] == {
        "1": ["no .", "good ! just got back from hunting ."],
        "3": ["deer , it was a good day .", "i like pie ."],
    }
    assert d2.metadata["candidates"] == {}
    assert d1.metadata["persona_variant"] == "revised" and d1.metadata["persona_side"] == "self"


def test_no_cands_variant_and_trailing_partner_line(tmp_path):
    text = "1 your persona: i fish.\n2 hi\they there\n3 bye\n"
    path = _write(tmp_path, "test_self_original_no_cands.txt", text)
    [d] = read_convai2(path, keep_candidates=True)
    assert [(t.speaker, t.text) for t in d.turns] == [("partner", "hi"), ("self", "hey there"), ("partner", "bye")]
    assert d.metadata["candidates"] == {}


@pytest.mark.parametrize(
    "text, line, field, reason",
    [
        ("1 your persona: a.\n3 hi\tho\n", 2, "line_id", "expected line number 2"),
        ("1 your persona: a.\nhi\tho\n", 2, "line_id", "starting with its number"),
        ("2 hi\tho\n", 1, "line_id", "expected line number 1"),
        ("1 hi\tho\n2 your persona: late.\n", 2, "persona", "after the first utterance"),
        ("1 your persona: a.\n2 hi\t\n", 2, "labels", "empty response"),
        ("1 your persona: a.\n2 \t\n", 2, "text", "empty utterance"),
    ],
)
def test_corrupted_lines_are_located(tmp_path, text, line, field, reason):
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(DataFormatError) as info:
        read_convai2(path)
    err = info.value
    assert (err.path, err.record, err.field) == (str(path), line, field)
    assert reason in str(err) and f"line {line}" in str(err) and str(path) in str(err)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        read_convai2(tmp_path / "nothing.txt")
