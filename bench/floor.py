"""
The floor under ``bench/e2e.py``: how many installation tasks per second the worker runs when they have nothing to do.

Starts ``celery -A processor.tasks worker -c <concurrency>`` in a RabbitMQ vhost of its own and publishes
``--installations`` installation messages per pass with the real fan-out (the body of
``processor.tasks.process_users_data``, in this process). Two kinds of tasks, each with a worker of its own:

* ``no_directory``: the worker's ``TIX_REPORTS_BASE_PATH`` is empty, so every task finds its directory missing
  and returns after checking it. What remains is the platform: Celery's prefork worker with the service's settings
  (late acknowledgement, prefetch 1, task events off), RabbitMQ, the task's log lines.
* ``no_window``: the installation directories exist and hold no report. Every task also takes and releases the
  lease lock, reads the state and lists the directory (windows spec §10): what every task of a running
  deployment does before its first window.

Each kind has one pass to warm up (the first run creates ``failed-results/``), then ``--passes`` measured ones.
Measured per pass: tasks per second from the first to the last ``installation done`` line of the worker's log, and
CPU milliseconds per task of the worker's main process, its pool children, RabbitMQ and this process. A window
costs all of this plus its own work, so the ``no_directory`` rate bounds what ``bench/e2e.py`` can reach.

Prints one JSON line.

Usage::

    python bench/floor.py                      # 1000 installations, worker -c 2, 2 measured passes per kind
    python bench/floor.py --installations 2000 --passes 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common import (
    CpuMeter,
    LogTail,
    Vhost,
    Worker,
    broker_pid,
    cleanup_stack,
    count_lines,
    emit,
    exit_cleanly_on_sigterm,
    import_tasks,
    log,
    processor_env,
)
from fanout import make_tree

DONE = "installation done"

#: The time stamp Celery's worker log puts at the start of a task's log line.
_DONE_LINE = re.compile(rf"^\[(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}}): [^\]]*\] .*{DONE}", re.MULTILINE)


def done_times(worker_log: Path) -> list[float]:
    """Unix times of the worker log's ``installation done`` lines, in the log's order."""
    stamps = _DONE_LINE.findall(worker_log.read_text(errors="replace"))
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in stamps]


def run_pass(tasks: Any, tree: Path, worker: Worker, worker_log: Path, count: int, timeout_s: float) -> dict[str, Any]:
    """Publish one fan-out over ``tree`` and wait until the worker logged ``count`` more ended tasks."""
    tail = LogTail(worker_log, DONE)
    before = tail.update()[DONE]
    meter = CpuMeter({"worker": worker.pid, "broker": broker_pid(), "bench": os.getpid()}).start()
    published = tasks.process_users_data(str(tree))
    deadline = time.monotonic() + timeout_s
    while tail.update()[DONE] < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{before + count - tail.counts[DONE]} tasks not done within {timeout_s} s")
        time.sleep(0.1)
    cpu = meter.stop()
    times = done_times(worker_log)[before : before + count]
    span_s = times[-1] - times[0]
    return {
        "published": published,
        "tasks_per_s": round((len(times) - 1) / span_s, 1) if span_s > 0 else None,
        "cpu_ms_per_task": {key: round(1000 * value / count, 2) for key, value in cpu.items() if key != "wall"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--installations",
        type=int,
        default=1000,
        help="installation messages per pass, rounded up to whole users of 10 (1000)",
    )
    parser.add_argument("--passes", type=int, default=2, help="measured passes per kind of task (2)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (celery worker -c)")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for each pass, seconds")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()

    work = Path(tempfile.mkdtemp(prefix="tix-bench-floor-"))
    tree, empty = work / "reports", work / "empty"
    tree.mkdir()
    empty.mkdir()
    users = -(-args.installations // 10)
    installations = make_tree(tree, users, 10)
    result: dict[str, Any] = {"bench": "floor", "installations": installations, "concurrency": args.concurrency}
    try:
        with Vhost.for_bench("floor") as vhost:
            # This process publishes the fan-out over the tree; each worker looks for the directories in its own base.
            tasks = import_tasks(processor_env(reports=tree, vhost=vhost, api_port=None))
            for kind, worker_base in (("no_directory", empty), ("no_window", tree)):
                worker_log = work / f"worker-{kind}.log"
                with cleanup_stack() as running:
                    env = processor_env(reports=worker_base, vhost=vhost, api_port=None)
                    worker = Worker(env, worker_log, concurrency=args.concurrency, name="bench-floor").start()
                    running.append(worker)
                    passes = [
                        run_pass(tasks, tree, worker, worker_log, installations, args.timeout)
                        for _ in range(1 + args.passes)
                    ][1:]
                for number, measured in enumerate(passes, 1):
                    log(f"{kind} pass {number}: {measured['tasks_per_s']} tasks/s")
                result[kind] = {"passes": passes, "worker_errors": count_lines(worker_log, "ERROR")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
