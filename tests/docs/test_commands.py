"""Every ``personakit ...`` command shown in the README and the docs parses, and every ``personakit run`` one loads.

The ```python blocks run in ``tests/test_readme.py``; this test covers the shell blocks
(```bash, ```sh, ```console). A command is one line, or several joined by a trailing
``\\``; comments and anything from a redirection (``>``, ``|``) on are dropped.

* every command parses with the ``personakit`` argument parser (a misspelt option fails);
* every ``personakit run RECIPE ...`` command is run with ``--print-config`` added: the
  recipe, the shipped config name and every ``--set`` override are checked exactly as a
  real run checks them before it trains (a config the reader writes, ``my.yaml``, is
  skipped: it is not in the repository).

Commands in the usage synopses (``personakit run RECIPE [--config ...]``) are not commands
and are skipped.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "console", "shell"}


def shell_commands(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, argv without 'personakit')`` of each personakit command in the file's shell blocks."""
    out: list[tuple[int, list[str]]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i, lang = 0, None
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            lang = None if lang is not None else (stripped[3:].strip() or "text")
            i += 1
            continue
        if lang in SHELL_LANGS and stripped.lstrip("$ ").startswith("personakit"):
            start = i
            text = stripped.lstrip("$ ")
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            try:
                argv = shlex.split(text, comments=True)
            except ValueError as err:
                raise AssertionError(f"{path.relative_to(REPO)}:{start + 1}: cannot split {text!r}: {err}")
            for stop in (">", ">>", "|", "&&", ";"):
                if stop in argv:
                    argv = argv[: argv.index(stop)]
            if argv and argv[0] == "personakit" and not any(a.isupper() and len(a) > 2 for a in argv[1:3]):
                out.append((start + 1, argv[1:]))
        i += 1
    return out


def _all_commands() -> list[tuple[str, int, list[str]]]:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [(str(f.relative_to(REPO)), line, argv) for f in files for line, argv in shell_commands(f)]


COMMANDS = _all_commands()


def test_the_docs_show_commands_of_every_kind():
    kinds = {argv[0] for _, _, argv in COMMANDS if argv}
    assert {"run", "evaluate", "augment", "demo", "models"} <= kinds, kinds
    recipes = {argv[1] for _, _, argv in COMMANDS if argv[:1] == ["run"] and len(argv) > 1}
    assert {"grag", "questioner", "copersona", "ropg", "retrieved-persona"} <= recipes, recipes


@pytest.mark.parametrize("where,line,argv", COMMANDS, ids=[f"{w}:{n}" for w, n, _ in COMMANDS])
def test_documented_command_parses(where, line, argv):
    from personakit.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}:{line}: `personakit {' '.join(argv)}` does not parse (exit {exc.code})")


RUNS = [(w, n, a) for w, n, a in COMMANDS if a[:1] == ["run"] and len(a) > 1 and not a[1].startswith("-")]


@pytest.mark.parametrize("where,line,argv", RUNS, ids=[f"{w}:{n}" for w, n, _ in RUNS])
def test_documented_run_command_loads_its_config(where, line, argv, capsys):
    from personakit.cli import main

    if "--config" in argv:
        config = argv[argv.index("--config") + 1]
        if config.endswith((".yaml", ".yml", ".json")) and not (REPO / config).is_file():
            pytest.skip(f"{config} is the reader's own file")
    argv = [a for a in argv if a != "--print-config"]
    rc = main([*argv, "--print-config"])
    err = capsys.readouterr().err
    assert rc == 0, f"{where}:{line}: `personakit {' '.join(argv)}` fails before training: {err.strip()}"
