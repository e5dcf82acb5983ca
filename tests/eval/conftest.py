"""Fixtures for the evaluation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """Run the tiny models on one intra-op thread.

    On a shared, busy CPU, torch's default thread pool oversubscribes the cores and a
    16-d model's forward pass goes from milliseconds to hundreds of milliseconds.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
