"""Fixtures shared by every test module."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The project's shared data lives beside the checkout (CI lays it there); it is read, never copied.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; the test is skipped, with the reason, on a machine that lacks it."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real TiX data not found at {SHARED_DATA} (CI lays ../shared/data beside the checkout)")
    return SHARED_DATA
