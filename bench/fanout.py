"""
Time to fan out 100 000 installation directories: the publishing side of ``process_users_data`` alone.

Creates ``--users`` × ``--per-user`` empty ``<user>/<installation>`` directories in a temporary directory, imports
:mod:`processor.tasks` in this process with ``TIX_RABBITMQ_VHOST`` set to a vhost of its own, runs the body of the
real fan-out task ``processor.tasks.process_users_data`` in-process against the real broker, counts the messages in
the ``celery`` queue afterwards (passive declare), and prints one JSON line::

    {"installations": 100000, "published": 100000, "queued": 100000, "seconds": ..., "messages_per_s": ...,
     "message_format_equal": true, "consumed_by_worker": ..., "worker_errors": 0, ...}

With ``--verify`` (the default) it also compares one message of the fan-out with one sent by a plain
``process_installation.apply_async`` (headers, properties and body shape; ids and times excepted), then starts a
real ``celery -A processor.tasks worker -c 2`` on the vhost for a few seconds and checks that it consumes the
messages normally (``installation done`` lines, no ``ERROR`` line). The queue is purged and the vhost deleted at the
end; the default vhost ``/`` is never touched. Target: under 30 s for 100 000 installations.

Usage::

    python bench/fanout.py                       # 10 000 users × 10 installations
    python bench/fanout.py --users 1000 --per-user 10 --no-verify
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Vhost, Worker, count_lines, emit, exit_cleanly_on_sigterm, import_tasks, log, processor_env

#: Queue bound to the task events during the fan-out (``--verify``).
EVENT_QUEUE = "bench-task-events"


def make_tree(base: Path, users: int, per_user: int) -> int:
    """Create ``users`` × ``per_user`` empty installation directories; returns their number."""
    installation = 0
    for user in range(1, users + 1):
        user_dir = base / str(user)
        user_dir.mkdir()
        for _ in range(per_user):
            installation += 1
            os.mkdir(user_dir / str(installation))
    return installation


def _get(vhost: Vhost, count: int) -> list[Any]:
    """Take ``count`` messages from the head of the ``celery`` queue."""
    from kombu import Connection

    with Connection(vhost.url) as connection:
        channel = connection.channel()
        messages = [channel.basic_get("celery", no_ack=True) for _ in range(count)]
        channel.close()
        return messages


def _shape(message: Any) -> dict[str, Any]:
    """What must be equal between two task messages: header names and fixed values, properties, body layout."""
    headers = dict(message.headers)
    varying = {"id", "root_id", "expires", "argsrepr", "origin"}
    body = json.loads(message.body)
    return {
        "header_names": sorted(headers),
        "headers": {key: value for key, value in headers.items() if key not in varying},
        "expires_is_iso": isinstance(headers.get("expires"), str),
        "properties": sorted(key for key in message.properties if key not in ("correlation_id", "delivery_tag")),
        "content_type": message.properties.get("content_type"),
        "delivery_mode": message.properties.get("delivery_mode"),
        "body_layout": [type(part).__name__ for part in body],
        "args_types": [type(arg).__name__ for arg in body[0]],
        "routing_key": message.delivery_info.get("routing_key"),
        "exchange": message.delivery_info.get("exchange"),
    }


def copy_differences(first: Any, copy: Any, expiry_s: int) -> list[str]:
    """
    Where a copied message differs from the fan-out's first one (sent by ``apply_async``) beyond the fields that
    ``apply_async`` itself varies; an empty list when the copy is exact.
    """
    from datetime import datetime, timedelta

    from celery.utils.saferepr import saferepr

    problems = []
    a, b = dict(first.headers), dict(copy.headers)
    for key in sorted(set(a) | set(b)):
        if key in ("id", "argsrepr", "expires") or (key == "root_id" and a.get("root_id") == a.get("id")):
            continue
        if a.get(key) != b.get(key):
            problems.append(f"header {key}: {a.get(key)!r} != {b.get(key)!r}")
    if b.get("root_id") == b.get("id") and a.get("root_id") != a.get("id"):
        problems.append("root_id")
    body_a, body_b = json.loads(first.body), json.loads(copy.body)
    if body_a[1:] != body_b[1:] or len(body_b[0]) != 3:
        problems.append(f"body: {body_a!r} / {body_b!r}")
    if b["argsrepr"] != saferepr(tuple(body_b[0]), 1024):
        problems.append(f"argsrepr {b['argsrepr']!r}")
    expires = datetime.fromisoformat(b["expires"])
    if not timedelta(0) < expires - datetime.fromisoformat(a["expires"]) < timedelta(seconds=expiry_s):
        problems.append(f"expires {b['expires']} after {a['expires']}")
    props_a = {k: v for k, v in first.properties.items() if k not in ("correlation_id", "application_headers")}
    props_b = {k: v for k, v in copy.properties.items() if k not in ("correlation_id", "application_headers")}
    if props_a != props_b or copy.properties.get("correlation_id") != b["id"]:
        problems.append(f"properties {props_a!r} != {props_b!r}")
    if first.delivery_info.get("routing_key") != copy.delivery_info.get("routing_key"):
        problems.append("routing key")
    return problems


def bind_event_queue(vhost: Vhost) -> None:
    """A queue that receives every task event of the vhost (as a monitor such as Flower would)."""
    from celery.events import get_exchange
    from kombu import Connection, Queue

    with Connection(vhost.url) as connection:
        exchange = get_exchange(connection, name="celeryev")
        Queue(EVENT_QUEUE, exchange=exchange, routing_key="task.#", durable=False)(connection.channel()).declare()


def count_sent_events(vhost: Vhost) -> int:
    """``task-sent`` events waiting in the event queue, lists of events (``task.multi``) unpacked as Celery does."""
    from kombu import Connection

    count = 0
    with Connection(vhost.url) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(EVENT_QUEUE, no_ack=True)) is not None:
            body = json.loads(message.body)
            events = body if isinstance(body, list) else [body]
            count += sum(1 for event in events if event.get("type") == "task-sent")
        channel.close()
    return count


def reference_message(tasks: Any, vhost: Vhost, base: Path) -> dict[str, Any]:
    """Send one message with plain ``apply_async`` (per-message confirms), take it back, return its shape."""
    tasks.process_installation.apply_async(
        (str(base / "1" / "1"), "1", "1"), expires=tasks.CONFIG.installation_expiry_s
    )
    return _shape(_get(vhost, 1)[0])


def consume_with_worker(env: dict[str, str], work: Path, seconds: float) -> dict[str, int]:
    """Run a real worker on the queue for ``seconds``; count what it did from its log."""
    worker = Worker(env, work / "worker.log", concurrency=2, name="bench-fanout").start()
    try:
        time.sleep(seconds)
    finally:
        worker.stop()
    log_path = work / "worker.log"
    return {
        "consumed_by_worker": count_lines(log_path, "installation done"),
        "worker_errors": count_lines(log_path, "ERROR"),
        "worker_unregistered": count_lines(log_path, "unregistered task"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--worker-seconds", type=float, default=8.0, help="how long the verifying worker consumes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()

    work = Path(tempfile.mkdtemp(prefix="tix-bench-fanout-"))
    base = work / "reports"
    base.mkdir()
    began = time.perf_counter()
    installations = make_tree(base, args.users, args.per_user)
    log(f"created {installations} installation directories in {time.perf_counter() - began:.1f} s under {base}")
    result: dict[str, Any] = {"bench": "fanout", "installations": installations}
    with Vhost.for_bench("fanout") as vhost:
        env = processor_env(reports=base, vhost=vhost, api_port=None)
        tasks = import_tasks(env)
        reference = reference_message(tasks, vhost, base) if args.verify else None
        if args.verify:
            bind_event_queue(vhost)
        cpu_before = time.process_time()
        started = time.perf_counter()
        published = tasks.process_users_data(str(base))
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_before
        queued = vhost.queue_depth()
        log(f"published {published} in {seconds:.2f} s; {queued} in the queue")
        result.update(
            published=published,
            queued=queued,
            seconds=round(seconds, 3),
            messages_per_s=round(published / seconds, 1) if seconds > 0 else None,
            publisher_cpu_s=round(cpu_s, 2),
            target_s=30,
            within_target=seconds < 30,
        )
        if args.verify:
            first, copy = _get(vhost, 2)
            result["message_format_equal"] = _shape(first) == reference
            differences = copy_differences(first, copy, tasks.CONFIG.installation_expiry_s)
            result["copies_equal_first"] = not differences
            result["task_sent_events"] = count_sent_events(vhost)
            for line in differences:
                log(f"copied message differs: {line}")
            result.update(consume_with_worker(env, work, args.worker_seconds))
        vhost.purge()
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
