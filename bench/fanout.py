"""
Time to fan out 100 000 installation directories: the publishing side of ``process_users_data`` alone.

Creates ``--users`` × ``--per-user`` empty ``<user>/<installation>`` directories in a temporary directory, imports
:mod:`processor.tasks` in this process with ``TIX_RABBITMQ_VHOST`` set to a vhost of its own, runs the body of the
real fan-out task ``processor.tasks.process_users_data`` in-process against the real broker, counts the messages in
the ``celery`` queue afterwards (passive declare), and prints one JSON line::

    {"installations": 100000, "published": 100000, "queued": 100000, "seconds": ..., "messages_per_s": ...,
     "consumed_by_worker": ..., "worker_errors": 0, ...}

With ``--verify`` (the default) it then starts a real ``celery -A processor.tasks worker -c 2`` on the vhost for a
few seconds and checks that it consumes the messages normally (``installation done`` lines, no ``ERROR`` line). The
queue is purged and the vhost deleted at the end; the default vhost ``/`` is never touched. Target: at most 60 s
for 100 000 installations.

Usage::

    python bench/fanout.py                       # 10 000 users × 10 installations
    python bench/fanout.py --users 1000 --per-user 10 --no-verify
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Vhost, Worker, count_lines, emit, exit_cleanly_on_sigterm, import_tasks, log, processor_env

#: Longest acceptable fan-out of 100 000 installations, seconds (issue 12).
TARGET_S = 60


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


def settled_depth(vhost: Vhost, expected: int, *, timeout_s: float = 30.0) -> int | None:
    """The queue's depth once it reaches ``expected`` or stops growing for a second (without confirms, the last
    messages may still be on their way into the queue when the fan-out returns)."""
    deadline = time.monotonic() + timeout_s
    last, last_change = vhost.queue_depth(), time.monotonic()
    while (last or 0) < expected and time.monotonic() < deadline and time.monotonic() - last_change < 1.0:
        time.sleep(0.1)
        depth = vhost.queue_depth()
        if depth != last:
            last, last_change = depth, time.monotonic()
    return last


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
        cpu_before = time.process_time()
        started = time.perf_counter()
        published = tasks.process_users_data(str(base))
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_before
        queued = settled_depth(vhost, published)
        log(f"published {published} in {seconds:.2f} s; {queued} in the queue")
        result.update(
            published=published,
            queued=queued,
            seconds=round(seconds, 3),
            messages_per_s=round(published / seconds, 1) if seconds > 0 else None,
            publisher_cpu_s=round(cpu_s, 2),
            target_s=TARGET_S,
            within_target=seconds <= TARGET_S,
        )
        if args.verify:
            result.update(consume_with_worker(env, work, args.worker_seconds))
        vhost.purge()
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
