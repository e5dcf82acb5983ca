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
  starts with ``~``, as Sphinx shows it);
* a display-math block (``$$ ... $$`` opening at the start of a line, on one line or
  several) gets a blank line before and after it when its neighbours are text or
  another block: arithmatex reads ``$$ ... $$`` as display math only when it is a
  paragraph of its own, and two blocks on consecutive lines would otherwise become one
  malformed formula.

A pydantic config field is documented once, in ``Field(..., description="...")``: an
attribute without a docstring whose value is a ``Field(...)`` call gets that description
as its docstring, so the reference shows it.

The source files are not changed.
"""

from __future__ import annotations

import ast
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


def _separate_display_math(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if in_fence or stripped.startswith(">>>") or not stripped.startswith("$$"):
            out.append(lines[i])  # code (fenced or doctest) is left alone
            i += 1
            continue
        end = i  # the line that closes the block: this one if "$$" appears again after the opening
        if "$$" not in stripped[2:]:
            end = i + 1
            while end < len(lines) and "$$" not in lines[end]:
                end += 1
            if end == len(lines):  # never closed: leave the text alone
                out.extend(lines[i:])
                break
        if out and out[-1].strip():
            out.append("")
        out.extend(lines[i : end + 1])
        if end + 1 < len(lines) and lines[end + 1].strip():
            out.append("")
        i = end + 1
    return "\n".join(out)


def rewrite(text: str) -> str:
    """Apply the rewrites to a docstring's text."""
    text = _fence_bare_doctests(_EXAMPLE.sub(r"\1Examples:", text))
    return _ROLE.sub(_role, _separate_display_math(text))


def field_description(value: str) -> str | None:
    """The ``description=`` string of a ``Field(...)`` call's source text (``None``: not a Field or none given)."""
    try:
        call = ast.parse(value.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) in ("Field", "PathField")):
        return None
    for kw in call.keywords:
        if kw.arg == "description":
            try:
                text = ast.literal_eval(kw.value)
            except ValueError:
                return None
            return text if isinstance(text, str) else None
    return None


class PersonakitDocstrings(griffe.Extension):
    """Rewrite ``Example:`` headers, Sphinx roles and display-math spacing before griffe parses docstrings;
    give a config field without a docstring its ``Field(description=...)``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute and getattr(obj, "value", None) is not None:
            text = field_description(str(obj.value))
            if text:
                obj.docstring = griffe.Docstring(text, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
