"""Griffe extension used by the docs build (mkdocs.yml, mkdocstrings ``extensions``).

personakit's docstrings follow the house style: Google sections with a singular
``Example:`` header holding doctests, and a few Sphinx roles (``:class:`X```). Griffe's
Google parser knows only the plural ``Examples:`` (a singular ``Example:`` becomes an
admonition whose ``>>>`` lines render as nested block quotes) and does not read Sphinx
roles. This extension rewrites them in the docstring text before parsing:

* a line ``Example:`` (alone, any indentation) becomes ``Examples:``, so doctests
  render as Python code;
* in a docstring with no examples section, a bare doctest block (lines from a ``>>>``
  line to the next blank line) is fenced as ``pycon`` code;
* ``:class:`~a.b.C``` (and ``:meth:``, ``:func:``, ``:attr:``, ``:mod:``, ``:data:``,
  ``:obj:``, ``:exc:``) becomes inline code ```C``` (the last dotted part when the target
  starts with ``~``, as Sphinx shows it).

The source files are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fence_bare_doctests(text: str) -> str:
    if re.search(r"^\s*Examples:\s*$", text, re.MULTILINE):
        return text
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>") and (i == 0 or not lines[i - 1].strip()):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rewrite(text: str) -> str:
    """Apply the rewrites to a docstring's text."""
    return _ROLE.sub(_role, _fence_bare_doctests(_EXAMPLE.sub(r"\1Examples:", text)))


class PersonakitDocstrings(griffe.Extension):
    """Rewrite ``Example:`` headers and Sphinx roles before griffe parses docstrings."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
