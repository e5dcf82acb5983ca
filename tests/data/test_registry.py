"""read_dataset / detect_format, the lazy built-in corpus name, and the load_dataset example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import personakit.data as data
from personakit.data import DATASET_READERS, detect_format, read_dataset
from personakit.types import Dialogue, ProfileExample, UserProfile

REPO_ROOT = Path(__file__).resolve().parents[2]


def _files(tmp_path):
    spc = tmp_path / "a.jsonl"
    spc.write_text(json.dumps({"user1_personas": [], "user2_personas": [], "turns": [{"speaker": "User 1", "text": "hi"}]}) + "\n")
    reviews = tmp_path / "r.jsonl"
    reviews.write_text(json.dumps({"user_id": "u", "history": [{"text": "ok"}]}) + "\n")
    ed = tmp_path / "e.csv"
    ed.write_text("conv_id,utterance_idx,prompt,utterance\nc1,1,p,hello\n")
    spc_csv = tmp_path / "s.csv"
    spc_csv.write_text('user 1 personas,user 2 personas,Best Generated Conversation\n"a","b","User 1: hi"\n')
    convai = tmp_path / "c.txt"
    convai.write_text("1 your persona: x.\n2 hi\tho\n")
    folder = tmp_path / "FullData"
    folder.mkdir()
    (folder / "full_dialog.csv").write_text(",Unit,Turn,B4,B2\n0,hi,0,0,20180904-045349_715_live\n")
    lamp = tmp_path / "LaMP_7_dev_questions.json"
    lamp.write_text(json.dumps([{"id": "1", "input": "Paraphrase: hi", "profile": [{"id": "2", "text": "yo"}]}]))
    return {
        "spc_jsonl": spc,
        "reviews": reviews,
        "empathetic_dialogues": ed,
        "spc_csv": spc_csv,
        "convai2": convai,
        "persuasion_for_good": folder,
        "lamp": lamp,
    }


def test_detect_and_read_every_format(tmp_path):
    files = _files(tmp_path)
    assert set(files) == set(DATASET_READERS)
    expected_type = {"lamp": ProfileExample, "reviews": UserProfile}
    for fmt, path in files.items():
        assert detect_format(path) == fmt
        records = read_dataset(path)
        assert len(records) == 1 and isinstance(records[0], expected_type.get(fmt, Dialogue))
    assert read_dataset(files["spc_jsonl"], "SPC")[0].turns[0].text == "hi"
    with pytest.raises(ValueError, match="unknown dataset format"):
        read_dataset(files["spc_jsonl"], "nope")
    odd = tmp_path / "x.dat"
    odd.write_text("?")
    with pytest.raises(ValueError, match="cannot tell"):
        detect_format(odd)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing.csv")


def test_lazy_builtin_corpus_name():
    assert "load_builtin_corpus" in data.__all__ and "load_builtin_corpus" in dir(data)
    with pytest.raises(AttributeError):
        data.no_such_name  # noqa: B018
    try:
        loader = data.load_builtin_corpus
    except ImportError:  # pragma: no cover - the sub-package is written in parallel
        pytest.skip("personakit.data.builtin is not available")
    dialogues = loader("train")
    assert dialogues and isinstance(dialogues[0], Dialogue)


def test_importing_data_stays_light():
    code = (
        "import sys, personakit.data; "
        "heavy = [m for m in ('torch', 'torch_geometric', 'sentence_transformers', 'peft') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_dataset_example_on_a_small_file(tmp_path):
    files = _files(tmp_path)
    script = REPO_ROOT / "examples" / "load_dataset.py"
    result = subprocess.run(
        [sys.executable, str(script), str(files["convai2"])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "dialogues: 1" in result.stdout and "response examples for agent 'self': 1" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    result = subprocess.run([sys.executable, str(script), str(bad), "--format", "spc_jsonl"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "line 1" in result.stderr
