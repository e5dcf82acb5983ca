"""The docstring examples of the readers run (file-based ones are marked +SKIP)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "personakit.data.errors",
    "personakit.data.spc",
    "personakit.data.convai2",
    "personakit.data.empathetic",
    "personakit.data.pfg",
    "personakit.data.lamp",
    "personakit.data.reviews",
    "personakit.data.examples",
    "personakit.data.registry",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
