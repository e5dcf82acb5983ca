"""Helpers shared by test modules (importable as ``_shared``: ``tests/`` is on the pytest pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PERSONAKIT_DATA", REPO_ROOT.parent / "shared" / "data"))
# the shipped recipe configs read ${PERSONAKIT_DATA}/...: point it at the shared data for every test
os.environ.setdefault("PERSONAKIT_DATA", str(SHARED_DATA))


def shared_data_path(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set PERSONAKIT_DATA to the shared data folder)")
    return path
