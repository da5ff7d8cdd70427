"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; the test is skipped, with the reason, on a machine that lacks it."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real TiX data not found at {SHARED_DATA} (CI lays ../shared/data beside the checkout)")
    return SHARED_DATA
