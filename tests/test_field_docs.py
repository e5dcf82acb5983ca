"""A config field is documented one way: ``Field(..., description="...")``, never also by an attribute docstring.

The docs build shows the description as the field's docstring (``docs/_griffe/docstrings.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "personakit"


def _field_calls_with_docstrings(path: Path) -> list[str]:
    found = []
    for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(cls, ast.ClassDef):
            continue
        for st, nxt in zip(cls.body, cls.body[1:]):
            if (isinstance(st, ast.AnnAssign) and isinstance(st.value, ast.Call)
                    and getattr(st.value.func, "id", None) in ("Field", "PathField")
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                found.append(f"{path.relative_to(REPO)}:{st.lineno} {cls.name}.{ast.unparse(st.target)}")
    return found


def test_no_config_field_has_both_a_description_and_an_attribute_docstring():
    doubled = [hit for path in sorted(SRC.rglob("*.py")) for hit in _field_calls_with_docstrings(path)]
    assert not doubled, "fold these attribute docstrings into Field(description=...):\n" + "\n".join(doubled)


def test_the_docs_extension_shows_a_field_description_as_its_docstring():
    sys.path.insert(0, str(REPO / "docs" / "_griffe"))
    try:
        from docstrings import field_description
    finally:
        sys.path.pop(0)
    assert field_description('Field(0.5, ge=0, description=("a " "b"))') == "a b"
    assert field_description('PathField(None, description="where")') == "where"
    assert field_description("3") is None and field_description("Field(1)") is None
