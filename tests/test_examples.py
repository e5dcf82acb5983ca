"""Every script in ``examples/`` runs to completion and answers ``--help``.

How an example declares what it needs (module-level comments, anywhere in the file):

* ``# personakit-example: real_model`` -- it loads an embedded model (SmolLM2, MiniLM,
  mpnet): the test gets the ``real_model`` marker and a longer timeout.
* ``# personakit-example: real_data`` -- it reads ``../shared/data``: the test gets the
  ``real_data`` marker and skips when that folder is absent. Several flags may be
  given comma-separated: ``# personakit-example: real_model, real_data``.
* ``# personakit-example-args: --limit 3`` -- arguments for the test run (parsed with
  :func:`shlex.split`), e.g. to keep it small.

The script runs as a subprocess from the repository root with ``HF_HUB_OFFLINE=1`` and
``PERSONAKIT_DATA`` pointing at the shared data folder; it must exit 0 and
print something.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.py"))
SHARED_DATA = Path(os.environ.get("PERSONAKIT_DATA", REPO_ROOT.parent / "shared" / "data"))
KNOWN_FLAGS = {"real_model", "real_data", "slow"}
_FLAGS_RE = re.compile(r"^#\s*personakit-example:\s*(.+?)\s*$", re.MULTILINE)
_ARGS_RE = re.compile(r"^#\s*personakit-example-args:\s*(.*?)\s*$", re.MULTILINE)


def example_flags(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    flags = {f.strip() for m in _FLAGS_RE.findall(text) for f in m.split(",") if f.strip()}
    unknown = flags - KNOWN_FLAGS
    if unknown:
        raise ValueError(f"{path}: unknown personakit-example flags {sorted(unknown)}; known: {sorted(KNOWN_FLAGS)}")
    return flags


def example_args(path: Path) -> list[str]:
    found = _ARGS_RE.findall(path.read_text(encoding="utf-8"))
    return shlex.split(found[-1]) if found else []


def _params():
    params = []
    for path in EXAMPLES:
        flags = example_flags(path)
        marks = [getattr(pytest.mark, f) for f in sorted(flags)]
        params.append(pytest.param(path, flags, marks=marks, id=path.stem))
    return params


def _run(path: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PERSONAKIT_DATA=str(SHARED_DATA), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, str(path), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_there_are_examples():
    assert EXAMPLES, f"no examples found in {REPO_ROOT / 'examples'}"


def test_flag_parsing(tmp_path):
    script = tmp_path / "ex.py"
    script.write_text("# personakit-example: real_model, real_data\n# personakit-example-args: --n 2 'a b'\n")
    assert example_flags(script) == {"real_model", "real_data"}
    assert example_args(script) == ["--n", "2", "a b"]
    script.write_text("# personakit-example: gpu\n")
    with pytest.raises(ValueError, match="unknown personakit-example flags"):
        example_flags(script)


@pytest.mark.parametrize(("path", "flags"), _params())
def test_example_runs(path: Path, flags: set[str]):
    if "real_data" in flags and not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    timeout = 900 if "real_model" in flags else 300
    out = _run(path, example_args(path), timeout)
    assert out.returncode == 0, f"{path.name} exited {out.returncode}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{path.name} printed nothing"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in EXAMPLES])
def test_example_help(path: Path):
    out = _run(path, ["--help"], 120)
    assert out.returncode == 0, f"{path.name} --help exited {out.returncode}\n{out.stderr[-3000:]}"
    assert "usage" in out.stdout.lower(), f"{path.name} --help printed no usage line:\n{out.stdout[:500]}"
