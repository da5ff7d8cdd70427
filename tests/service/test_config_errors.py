"""End to end: a worker with a bad configuration stops before consuming anything (reliability.md F21, D14)."""

from __future__ import annotations

import subprocess

import pytest

from tests.service.harness import REPO, celery_worker_command

pytestmark = pytest.mark.service

#: Longest a worker with a bad configuration may take to exit, seconds (it normally needs about one).
EXIT_TIMEOUT_S = 60


def run_worker(rig, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        celery_worker_command("bad"),
        cwd=REPO,
        env=rig.env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
    )


def test_non_numeric_broker_port_exits_with_status_2_and_names_the_variable(rig):
    finished = run_worker(rig, TIX_RABBITMQ_PORT="abc")

    assert 2 == finished.returncode
    assert "configuration error: TIX_RABBITMQ_PORT: not an integer: 'abc'" in finished.stderr.splitlines()


def test_missing_reports_directory_stops_the_worker_before_it_consumes_a_message(rig):
    """A message waiting in the queue is still there after the worker refused to start."""
    rig.broker.installation(rig.base, "1", "1")
    missing = rig.work / "no-such-reports"

    finished = run_worker(rig, TIX_REPORTS_BASE_PATH=str(missing))

    assert 0 != finished.returncode
    assert f"configuration error: TIX_REPORTS_BASE_PATH: not an existing directory: '{missing}'" in (
        finished.stderr.splitlines()
    )
    assert "ready." not in finished.stdout + finished.stderr
    assert 1 == rig.broker.queue_depth()
