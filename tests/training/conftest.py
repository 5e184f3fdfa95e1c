"""Settings of the training tests (the tiny models are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(isolated_cache):
    """Keep the solution cache out of the user's home (:func:`tests.conftest.isolated_cache`)."""


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for training tests: on a busy 2-core machine, two threads that
    oversubscribe the cores make tiny-model steps tens of times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
