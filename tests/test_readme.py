"""The Python snippets of the README and of the docs pages run.

Mechanism (kept deliberately simple):

* Every fenced block opened with exactly ```` ```python ```` in ``README.md`` and in
  ``docs/**/*.md`` is runnable. Blocks of one file run in order in one fresh
  interpreter with one shared namespace, so a later block may use names defined by an
  earlier one. Other fences (```` ```bash ````, ```` ```pycon ````, ```` ```text ````) are not run.
* A block whose fence line is directly preceded by the line ``<!-- snippet: skip -->``
  is shown but not run (for code that needs a GPU, a network endpoint or a long
  training run).
* Files whose snippets load an embedded model carry the ``real_model`` marker; they are
  found by the names of the loaders in their runnable code (``load_embedded``,
  ``load_sentence_encoder``, ``SmolLM2`` ...).

The snippets run from a temporary working directory with ``HF_HUB_OFFLINE=1`` and
``PERSONAKIT_DATA`` set; an exception names the file and the line of the block.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PERSONAKIT_DATA", REPO_ROOT.parent / "shared" / "data"))
SKIP_MARK = "<!-- snippet: skip -->"
REAL_MODEL_HINTS = ("load_embedded", "load_sentence_encoder", "embedded_path", "smollm2", "minilm", "mpnet",
                    "HFGenerator", "LocalLLM")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Runnable ```python blocks of a markdown text as (line number of the fence, code)."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            fence_line = i
            indent = len(lines[i]) - len(lines[i].lstrip())
            lang = stripped[3:].strip()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
                i += 1
            skipped = fence_line > 0 and lines[fence_line - 1].strip() == SKIP_MARK
            if lang == "python" and not skipped:
                blocks.append((fence_line + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


def _doc_files() -> list[Path]:
    files = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file() and python_blocks(f.read_text(encoding="utf-8"))]


def _params():
    params = []
    for path in _doc_files():
        code = "".join(c for _, c in python_blocks(path.read_text(encoding="utf-8")))
        marks = [pytest.mark.real_model] if any(h.lower() in code.lower() for h in REAL_MODEL_HINTS) else []
        params.append(pytest.param(path, marks=marks, id=str(path.relative_to(REPO_ROOT))))
    return params


_RUNNER = r"""
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
ns = {"__name__": "__main__"}
for name, line, code in blocks:
    try:
        exec(compile(code, f"{name}:block at line {line}", "exec"), ns)
    except BaseException:
        print(f"snippet failed: {name}, block starting at line {line}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
print(f"ran {len(blocks)} block(s)")
"""


def test_block_extraction():
    text = "\n".join([
        "# T", "```python", "x = 1", "```", "```bash", "echo no", "```", SKIP_MARK, "```python", "raise SystemExit(1)",
        "```", "- item", "    ```python", "    y = x + 1", "    ```", "```pycon", ">>> 1", "```",
    ])
    assert python_blocks(text) == [(2, "x = 1\n"), (13, "y = x + 1\n")]


def test_readme_gives_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/demo.sh" in readme
    assert "bash scripts/test.sh" in readme
    assert (REPO_ROOT / "scripts" / "demo.sh").is_file() and (REPO_ROOT / "scripts" / "test.sh").is_file()


@pytest.mark.parametrize("path", _params())
def test_snippets_run(path: Path, tmp_path):
    name = str(path.relative_to(REPO_ROOT))
    blocks = [(name, line, code) for line, code in python_blocks(path.read_text(encoding="utf-8"))]
    payload = tmp_path / "blocks.json"
    payload.write_text(json.dumps(blocks), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PERSONAKIT_DATA=str(SHARED_DATA))
    out = subprocess.run([sys.executable, "-c", _RUNNER, str(payload)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"{name}:\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-4000:]}"
    assert f"ran {len(blocks)} block(s)" in out.stdout
