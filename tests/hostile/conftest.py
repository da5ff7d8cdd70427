"""Fixtures of the hostile-tree tests: the simulated tree once per session, a fresh copy and a fake tix-api per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_api import FakeApi
from tests.hostile.rig import Rig, simulate_tree


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile-template") / "reports"
    simulate_tree(base)
    return base


@pytest.fixture
def rig(tmp_path: Path, template: Path) -> Rig:
    return Rig(tmp_path, template)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(admin_user="admin", admin_password="secret") as server:
        yield server
