"""Shared test fixtures.

Unit tests build tiny random models locally. Real-model tests (marker ``real_model``)
use the embedded registry packages through session-scoped fixtures; real-data tests
(marker ``real_data``) read ``../shared/data`` and skip with a clear reason when it is
absent.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

# Never reach for a model hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _shared import REPO_ROOT, SHARED_DATA, shared_data_path  # noqa: E402,F401


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder (skips when absent)."""
    return shared_data_path()


def _require_embedded(name: str) -> None:
    from personakit import backbones

    try:
        backbones.embedded_path(name, install=False)
    except backbones.EmbeddedModelNotInstalled as err:  # pragma: no cover - depends on the machine
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def _smollm2_session():
    _require_embedded("smollm2-135m-instruct")
    from personakit.backbones import load_embedded

    model, tokenizer = load_embedded("smollm2-135m-instruct")
    model.eval()
    return model, tokenizer


@pytest.fixture()
def smollm2(_smollm2_session):
    """The embedded SmolLM2-135M-Instruct (model, tokenizer), loaded once per session.

    The model is shared (read-only use: eval mode, no weight changes); the tokenizer
    is deep-copied so tests may change padding settings.
    """
    model, tokenizer = _smollm2_session
    return model, copy.deepcopy(tokenizer)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Local folder of the embedded all-MiniLM-L6-v2."""
    _require_embedded("all-minilm-l6-v2")
    from personakit.backbones import embedded_path

    return embedded_path("all-minilm-l6-v2")
