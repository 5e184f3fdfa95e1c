"""Every test here keeps the solution cache out of the user's home (fixtures: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(isolated_cache):
    """See :func:`tests.conftest.isolated_cache`."""
