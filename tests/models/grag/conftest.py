"""Fixtures of the GRAG tests; the helpers live in ``grag_testkit`` (importable from the test modules)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grag_testkit import make_examples  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def examples():
    return make_examples()
