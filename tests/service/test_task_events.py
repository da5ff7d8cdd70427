"""
Monitoring events of a real worker as a monitor such as Flower receives them (issue 5: ``worker_send_task_events``).

The worker publishes its task events in batches (``EventsWithoutConfirmsConsumer`` in ``processor/celery_ext.py``):
every task's ``task-received``, ``task-started`` and ``task-succeeded`` must still arrive, once each, while the worker
runs and after a normal stop, and the worker events (online, heartbeat, offline) as before.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery.events import EventReceiver

from processor.celery_ext import EVENT_BUFFER_LIMIT
from tests.service.harness import REPO, Broker, WorkerProcess, celery_worker_command, wait_until

pytestmark = pytest.mark.service

#: ``python -c`` replacing ``python -m celery``: the real worker, with no flush by time (only by count or at a stop).
WITHOUT_TIMED_FLUSH = (
    "import sys\n"
    "import processor.celery_ext\n"
    "processor.celery_ext.EVENT_FLUSH_INTERVAL_S = 3600.0\n"
    "from celery.__main__ import main\n"
    "sys.argv[0] = 'celery'\n"
    "main()\n"
)

TASK_EVENTS = ("task-received", "task-started", "task-succeeded")


class _Receiver(EventReceiver):  # type: ignore[misc]
    """Celery's event receiver (what Flower runs), which also counts the messages and says when it consumes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consuming = threading.Event()
        self.task_messages = 0

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        super().on_consume_ready(*args, **kwargs)
        self.consuming.set()

    def _receive(self, body: Any, message: Any) -> None:
        if isinstance(body, list) or str(body.get("type", "")).startswith("task-"):
            self.task_messages += 1
        super()._receive(body, message)


class EventMonitor:
    """A real event receiver on the test vhost, in a thread; keeps the events of one worker node."""

    def __init__(self, broker: Broker, node: str) -> None:
        self.node = node
        self.events: list[dict[str, Any]] = []
        self.connection = broker.app.connection_for_read()
        self.receiver = _Receiver(self.connection, handlers={"*": self._on_event}, app=broker.app)
        self.thread = threading.Thread(target=self.receiver.capture, kwargs={"wakeup": False}, daemon=True)

    def __enter__(self) -> EventMonitor:
        self.thread.start()
        assert self.receiver.consuming.wait(30), "the event receiver did not start consuming"
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.connection.release()

    def _on_event(self, event: dict[str, Any]) -> None:
        if str(event.get("hostname", "")).startswith(f"{self.node}@"):
            self.events.append(event)

    def types(self) -> Counter[str]:
        return Counter(event["type"] for event in list(self.events))

    def task_events(self) -> dict[str, list[str]]:
        """Task id → the types of its task events, in arrival order."""
        found: dict[str, list[str]] = {}
        for event in list(self.events):
            if event["type"] in TASK_EVENTS:
                found.setdefault(event["uuid"], []).append(event["type"])
        return found

    def missing(self, task_ids: list[str]) -> dict[str, list[str]]:
        """Tasks whose events are not exactly one of each of :data:`TASK_EVENTS` (so far)."""
        found = self.task_events()
        return {task: found.get(task, []) for task in task_ids if sorted(found.get(task, [])) != sorted(TASK_EVENTS)}


def publish_tasks(broker: Broker, base: Path, count: int) -> list[str]:
    """``count`` installation tasks for directories that do not exist (each ends at once, outcome ``invalid``)."""
    return [
        broker.app.send_task("processor.tasks.process_installation", args=[str(base / "9" / str(i)), "9", str(i)]).id
        for i in range(count)
    ]


def succeeded_in_log(worker: WorkerProcess, task_ids: list[str]) -> bool:
    log = worker.log()
    return all(f"[{task}] succeeded" in log for task in task_ids)


def start_process(command: list[str], env: dict[str, str], log: Any) -> Any:
    """Start ``command`` as the harness starts a worker: in the repository, its own process group, output to ``log``."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_task_events_arrive_while_the_worker_runs_and_worker_events_are_unchanged(rig):
    """Every task's three events reach a receiver within the flush interval, batched; the state a monitor builds
    says SUCCESS; online, heartbeats and offline come as before."""
    node = "events-timed"
    with EventMonitor(rig.broker, node) as monitor:
        worker = rig.start_worker(node)
        wait_until(lambda: monitor.types()["worker-online"], timeout_s=30, what="worker-online")

        task_ids = publish_tasks(rig.broker, rig.base, 30)
        wait_until(lambda: not monitor.missing(task_ids), timeout_s=60, what=lambda: f"{monitor.missing(task_ids)}")
        wait_until(lambda: monitor.types()["worker-heartbeat"], timeout_s=30, what="worker-heartbeat")
        batched = monitor.receiver.task_messages

        assert 0 == worker.stop()
        wait_until(lambda: monitor.types()["worker-offline"], timeout_s=30, what="worker-offline")

    assert {} == monitor.missing(task_ids)
    assert batched < len(task_ids), f"{batched} messages for {len(task_ids)} tasks: events not batched"
    state = rig.broker.app.events.State()
    for event in monitor.events:
        state.event(dict(event))
    assert {"SUCCESS"} == {state.tasks[task].state for task in task_ids}
    assert 1 == monitor.types()["worker-online"] == monitor.types()["worker-offline"]


def test_task_events_buffered_at_a_normal_stop_are_all_published(rig):
    """With no flush by time, a full buffer is published at once and the rest at the worker's warm shutdown."""
    node = "events-untimed"
    command = celery_worker_command(node)
    assert [sys.executable, "-m", "celery"] == command[:3]
    with EventMonitor(rig.broker, node) as monitor:
        log_path = rig.work / f"worker-{node}.log"
        with log_path.open("ab") as handle:
            process = start_process([sys.executable, "-c", WITHOUT_TIMED_FLUSH, *command[3:]], rig.env(), handle)
        worker = WorkerProcess(node, process, log_path)
        rig.workers.append(worker)
        worker.wait_ready()

        count = EVENT_BUFFER_LIMIT // len(TASK_EVENTS) + 10  # one buffer's worth, and some left over
        task_ids = publish_tasks(rig.broker, rig.base, count)
        wait_until(lambda: succeeded_in_log(worker, task_ids), timeout_s=60, what="every task succeeded")
        wait_until(lambda: monitor.task_events(), timeout_s=10, what="the full buffer's events")
        time.sleep(1.0)  # the main process has handled every result; the rest stays in the buffer
        before_stop = sum(len(types) for types in monitor.task_events().values())
        messages_before_stop = monitor.receiver.task_messages

        assert 0 == worker.stop()
        wait_until(lambda: monitor.types()["worker-offline"], timeout_s=30, what="worker-offline")
        wait_until(lambda: not monitor.missing(task_ids), timeout_s=10, what=lambda: f"{monitor.missing(task_ids)}")

    assert (EVENT_BUFFER_LIMIT, 1) == (before_stop, messages_before_stop)
    assert {} == monitor.missing(task_ids)
