"""
Monitoring events of a real worker as a monitor such as Flower receives them (service spec §4).

Task events are off by default, as in Celery; ``TIX_TASK_EVENTS`` or the worker's ``-E`` turns them on. Worker
events (online, heartbeat, offline) come either way.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery.events import EventReceiver

from tests.service.harness import Broker, WorkerProcess, wait_until

pytestmark = pytest.mark.service

TASK_EVENTS = ("task-received", "task-started", "task-succeeded")

#: How long a worker without task events is watched after its tasks ended, seconds.
QUIET_S = 2.0


class _Receiver(EventReceiver):  # type: ignore[misc]
    """Celery's event receiver (what Flower runs), which also says when it consumes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consuming = threading.Event()

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        super().on_consume_ready(*args, **kwargs)
        self.consuming.set()


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
            if event["type"].startswith("task-"):
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


def test_a_worker_sends_no_task_events_by_default_but_its_worker_events(rig):
    """Without the variable or ``-E``, a monitor sees the worker come, beat and go, and none of its tasks."""
    node = "events-default"
    with EventMonitor(rig.broker, node) as monitor:
        worker = rig.start_worker(node)
        wait_until(lambda: monitor.types()["worker-online"], timeout_s=30, what="worker-online")

        task_ids = publish_tasks(rig.broker, rig.base, 10)
        wait_until(lambda: succeeded_in_log(worker, task_ids), timeout_s=60, what="every task succeeded")
        wait_until(lambda: monitor.types()["worker-heartbeat"], timeout_s=30, what="worker-heartbeat")
        time.sleep(QUIET_S)

        assert 0 == worker.stop()
        wait_until(lambda: monitor.types()["worker-offline"], timeout_s=30, what="worker-offline")

    assert {} == monitor.task_events()
    assert 1 == monitor.types()["worker-online"] == monitor.types()["worker-offline"]


@pytest.mark.parametrize(
    ("how", "env", "options"),
    [
        ("TIX_TASK_EVENTS", {"TIX_TASK_EVENTS": "true"}, ()),
        ("-E", {}, ("-E",)),
    ],
)
def test_task_events_on_reach_a_monitor_once_each(rig, how, env, options):
    """Turned on, every task's received, started and succeeded events arrive once each; the state a monitor
    builds from them says SUCCESS; the worker events come as without them."""
    node = "events-on-variable" if options == () else "events-on-flag"
    with EventMonitor(rig.broker, node) as monitor:
        worker = rig.start_worker(node, options=options, **env)
        wait_until(lambda: monitor.types()["worker-online"], timeout_s=30, what="worker-online")

        task_ids = publish_tasks(rig.broker, rig.base, 20)
        wait_until(lambda: not monitor.missing(task_ids), timeout_s=60, what=lambda: f"{monitor.missing(task_ids)}")
        wait_until(lambda: monitor.types()["worker-heartbeat"], timeout_s=30, what="worker-heartbeat")

        assert 0 == worker.stop()
        wait_until(lambda: monitor.types()["worker-offline"], timeout_s=30, what="worker-offline")

    assert {} == monitor.missing(task_ids), how
    assert set(task_ids) == set(monitor.task_events()), how
    state = rig.broker.app.events.State()
    for event in monitor.events:
        state.event(dict(event))
    assert {"SUCCESS"} == {state.tasks[task].state for task in task_ids}
    assert 1 == monitor.types()["worker-online"] == monitor.types()["worker-offline"]


def test_the_enable_events_command_of_a_monitor_turns_task_events_on_in_a_running_worker(rig):
    """What Flower does in the compose profile ``monitoring``: Celery's ``enable_events`` control command turns a
    running worker's task events on, without a restart."""
    node = "events-by-command"
    with EventMonitor(rig.broker, node) as monitor:
        worker = rig.start_worker(node)
        wait_until(lambda: monitor.types()["worker-online"], timeout_s=30, what="worker-online")
        replies = rig.broker.app.control.enable_events(reply=True, timeout=10)
        assert [{"ok": "task events enabled"}] == [reply for answer in replies for reply in answer.values()]

        task_ids = publish_tasks(rig.broker, rig.base, 10)
        wait_until(lambda: not monitor.missing(task_ids), timeout_s=60, what=lambda: f"{monitor.missing(task_ids)}")
        assert 0 == worker.stop()

    assert set(task_ids) == set(monitor.task_events())
