"""
Fixtures of the end-to-end service tests: a RabbitMQ vhost per session, the fake tix-api as a process, workers.

The broker is the real RabbitMQ on 127.0.0.1:5672 (guest/guest). Other people use the same broker, so the session
works in its own virtual host, created with ``rabbitmqctl`` and deleted at the end; the default vhost ``/`` is
never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from processor.config import Config
from tests.fake_api import FakeApiProcess, start_fake_api_process
from tests.rabbit import BROKER_HOST, BROKER_PORT, create_vhost, delete_vhost
from tests.service.harness import (
    API_PASSWORD,
    API_USER,
    Broker,
    InstallationExpectation,
    Tally,
    TaskActivity,
    WorkerProcess,
    dry_run_expectations,
    start_worker,
    tally,
    task_activity,
    tree_snapshot,
    wait_until,
    worker_environment,
)


def _broker_reachable() -> bool:
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """A fresh RabbitMQ virtual host for this test session, with full rights for guest; deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not found: the service tests need the RabbitMQ server on 127.0.0.1:5672")
    if not _broker_reachable():
        pytest.skip(f"RabbitMQ not reachable on {BROKER_HOST}:{BROKER_PORT}")
    name = f"tix-service-tests-{os.getpid()}-{secrets.token_hex(4)}"
    create_vhost(name)
    try:
        yield name
    finally:
        delete_vhost(name)


@pytest.fixture
def broker(vhost: str) -> Iterator[Broker]:
    """The session vhost, with the default queue purged before and after the test."""
    broker = Broker(vhost)
    broker.purge()
    yield broker
    broker.purge()
    broker.app.close()


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[FakeApiProcess]:
    """``python tests/fake_api.py`` as its own process on 127.0.0.1, acting like tix-api (mode ``ok``)."""
    directory = tmp_path / "api"
    directory.mkdir()
    api = start_fake_api_process(directory, admin_user=API_USER, admin_password=API_PASSWORD)
    yield api
    api.stop()


@dataclass
class Rig:
    """One test's set-up: reports tree, broker vhost, fake tix-api and the worker processes it started."""

    work: Path
    broker: Broker
    api: FakeApiProcess
    base: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    #: Variables every worker of the test gets (and the dry run's configuration reads), e.g. the usage estimator.
    settings: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        return worker_environment(self.broker.vhost, self.base, self.api.port, **{**self.settings, **overrides})

    def config(self, **overrides: str) -> Config:
        """The configuration the workers read (for the dry run's resolver)."""
        return Config.from_env(self.env(**overrides))

    def start_worker(
        self,
        node: str = "w1",
        *,
        concurrency: int = 2,
        ready: bool = True,
        options: tuple[str, ...] = (),
        loglevel: str | None = "INFO",
        **env: str,
    ) -> WorkerProcess:
        """
        Start ``celery -A processor.tasks worker -c <concurrency> -n <node>@%h --loglevel=<loglevel> <options>``
        (no ``--loglevel`` for None); wait until ready.
        """
        worker = start_worker(
            node, self.env(**env), self.work, concurrency=concurrency, options=options, loglevel=loglevel
        )
        self.workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def expectations(self) -> dict[str, InstallationExpectation]:
        return dry_run_expectations(self.base, self.config(), scratch=self.work)

    def activity(self) -> TaskActivity:
        return task_activity(self.workers)

    def idle(self) -> bool:
        """No ready message in the queue and no task received but not finished in any worker log."""
        return not self.activity().in_flight and 0 == self.broker.queue_depth()

    def drain(self, *, timeout_s: float = 120.0, quiet_s: float = 2.0) -> None:
        """
        Wait until the workers are idle and neither the tree nor the fake's records changed for ``quiet_s``.

        The test publishes every fan-out itself (no beat), so once idle and quiet nothing more can happen.
        """
        last: list[Any] = [None, 0.0]

        def quiet() -> bool:
            if not self.idle():
                last[0] = None
                return False
            seen = (tree_snapshot(self.base), len(self.api.records()))
            now = time.monotonic()
            if seen != last[0]:
                last[0], last[1] = seen, now
                return False
            return now - last[1] >= quiet_s

        wait_until(
            quiet,
            timeout_s=timeout_s,
            interval_s=0.5,
            what=lambda: f"drain: in flight {self.activity().in_flight}, queue {self.broker.queue_depth()}",
        )

    def tally(self, expectations: dict[str, InstallationExpectation]) -> Tally:
        return tally(expectations, self.api.accepted(), self.base, activity=self.activity())

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed service test shows the last lines of every worker log it started, and where the logs are."""
    report = yield
    rig = getattr(item, "funcargs", {}).get("rig")
    if report.when == "call" and report.failed and isinstance(rig, Rig):
        for worker in rig.workers:
            tail = "\n".join(worker.log().splitlines()[-60:])
            report.sections.append((f"worker {worker.node} ({worker.log_path})", tail))
        report.sections.append(("fake tix-api log", str(rig.api.log_path)))
    return report


@pytest.fixture
def rig(tmp_path: Path, broker: Broker, fake_api: FakeApiProcess) -> Iterator[Rig]:
    """A fresh reports tree under ``tmp_path/reports`` with the broker and fake API; workers stopped at the end."""
    base = tmp_path / "reports"
    base.mkdir(mode=0o750)
    rig = Rig(tmp_path, broker, fake_api, base)
    try:
        yield rig
    finally:
        rig.stop_workers()
