"""
The Celery wiring of ``processor.tasks`` on a real worker and the real RabbitMQ: the fan-out's messages (service
spec §3.2, §4) and the per-process delivery resources (style guide §5).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import kombu
import pytest

from processor.config import MISSING_CREDENTIALS_WARNING
from tests.service.harness import Broker, log_lines, wait_until

pytestmark = pytest.mark.service

#: A queue of its own for the fan-out message, so that the worker leaves the installation messages in ``celery``.
FANOUT_QUEUE = "fanout-only"

#: Installation message expiry with the test period of 1 minute (service spec §3.2: P·60 seconds).
EXPIRY_S = 60

_OPENED = re.compile(r"delivery opened pid=(\d+)")


def make_tree(base: Path) -> list[tuple[str, str]]:
    """Users 1, 2 and 10 with installations in an order that only a numeric sort gets right, among entries the
    fan-out must skip; returns the (user, installation) pairs in the order of service spec §3.2."""
    installations = {"10": ["3", "1"], "2": ["20", "9", "100"], "1": [str(i) for i in range(12, 0, -1)]}
    for user, ids in installations.items():
        for installation in ids:
            (base / user / installation).mkdir(parents=True)
        (base / user / "007").mkdir()  # not canonical
        (base / user / "notes.txt").write_text("not a directory")
    (base / "abc" / "1").mkdir(parents=True)
    (base / "3").symlink_to(base / "2")
    return sorted(
        ((user, installation) for user, ids in installations.items() for installation in ids),
        key=lambda pair: (int(pair[0]), int(pair[1])),
    )


def take_all(broker: Broker, queue: str = "celery") -> list[Any]:
    """Every ready message of ``queue``, taken off it in order."""
    messages = []
    with kombu.Connection(broker.url, connect_timeout=10) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
    return messages


def delete_queue(broker: Broker, queue: str = "celery") -> None:
    with kombu.Connection(broker.url, connect_timeout=10) as connection:
        connection.channel().queue_delete(queue)


def test_the_fan_out_publishes_every_installation_once_in_order_with_its_expiry(rig):
    """A real worker runs ``process_users_data`` from the beat's message: the ``celery`` queue, which the fan-out
    declares itself, then holds one ``process_installation`` message per installation directory, in numeric order,
    each with the arguments of the wire contract, its own id and an expiry P·60 s after its publication; the log
    says how many."""
    expected = make_tree(rig.base)
    worker = rig.start_worker("fanout", options=("-Q", FANOUT_QUEUE))
    delete_queue(rig.broker)

    before = time.time()
    rig.broker.app.send_task("processor.tasks.process_users_data", args=[str(rig.base)], queue=FANOUT_QUEUE)
    done = wait_until(lambda: log_lines([worker], "fan-out done"), timeout_s=60, what="fan-out done")
    after = time.time()
    wait_until(lambda: rig.broker.queue_depth() >= len(expected), timeout_s=10, what="every message queued")
    messages = take_all(rig.broker)

    assert [f"installations={len(expected)}"] == [line.split("fan-out done ")[1] for line in done]
    assert len(expected) == len(messages)
    bodies = [json.loads(message.body) for message in messages]
    published = [tuple(args) for args, _kwargs, _embed in bodies]
    assert [(str(rig.base / user / installation), user, installation) for user, installation in expected] == published
    assert {"processor.tasks.process_installation"} == {message.headers["task"] for message in messages}
    assert len(messages) == len({message.headers["id"] for message in messages})
    for message in messages:
        expires = datetime.fromisoformat(message.headers["expires"]).timestamp()
        assert before + EXPIRY_S - 1 <= expires <= after + EXPIRY_S + 1, message.headers["expires"]
    assert 0 == rig.broker.queue_depth()


def test_the_fan_out_messages_are_consumed_as_installation_tasks(rig):
    """What the fan-out publishes, a worker runs: one ``installation done`` per installation, none failing."""
    expected = make_tree(rig.base)
    worker = rig.start_worker("fanout-and-run")

    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: len(log_lines([worker], "installation done user=")) >= len(expected),
        timeout_s=90,
        what=lambda: f"{len(log_lines([worker], 'installation done user='))} of {len(expected)} done",
    )
    rig.drain()

    runs = sorted(
        (int(m[1]), int(m[2]))
        for line in log_lines([worker], "installation done user=")
        if (m := re.search(r"user=(\d+) installation=(\d+) outcome=done windows=0 ", line))
    )
    assert [(int(user), int(installation)) for user, installation in expected] == runs
    assert 0 == rig.activity().failures


def opened_pids(worker: Any) -> list[int]:
    return [int(match[1]) for line in log_lines([worker], "delivery opened") if (match := _OPENED.search(line))]


def test_each_pool_child_opens_its_own_delivery_after_the_fork(rig):
    """Every pool child, the one that replaces a killed child too, makes its delivery resources itself, after the
    fork (the main process makes none); the missing-credentials warning comes once per worker start."""
    worker = rig.start_worker("children", concurrency=2, TIX_API_USER="", TIX_API_PASSWORD="")
    wait_until(lambda: len(opened_pids(worker)) >= 2, timeout_s=30, what="two children opened their delivery")
    children = sorted(worker.children())

    assert children == sorted(opened_pids(worker))
    assert worker.pid not in opened_pids(worker)

    os.kill(children[0], signal.SIGKILL)
    wait_until(lambda: len(opened_pids(worker)) >= 3, timeout_s=30, what="the replacement opened its delivery")
    replacement = opened_pids(worker)[2]

    assert replacement not in children
    assert replacement in worker.children()

    for installation in range(1, 7):  # tasks in both children, for directories that do not exist
        rig.broker.installation(rig.base, "5", str(installation))
    wait_until(lambda: len(log_lines([worker], "installation done user=5")) >= 6, timeout_s=60, what="six tasks")
    assert 1 == len(log_lines([worker], MISSING_CREDENTIALS_WARNING))
