"""
End-to-end throughput: simulated installations through a real Celery worker, RabbitMQ and a stand-in tix-api.

Simulates ``--installations`` installations with ``--minutes`` minutes of reports each
(``processor_tools.simulate.simulate_tree``) and holds back the reports of the last ``(cycles − 1) × 10`` minutes. It
starts the stand-in tix-api (``tests/fake_api.py``) on 127.0.0.1 and ``celery -A processor.tasks worker -c
<concurrency>`` in a RabbitMQ vhost of its own. Then, for each processing period ("cycle"): the held reports of
that period arrive, a dry run in this process computes the windows expected, one fan-out is published, and the
benchmark waits until every installation task has ended. The default, 30 minutes in 2 cycles, measures the steady
state in its second period: every installation has its state file, the 10 reports kept by its last window and 10
new ones, one window per task, as every 10 minutes in a running deployment. Measured per period, and for the last
one at the top level:

* windows delivered per second, from the first to the last POST the API received (``windows_per_s``), and overall
  from the publication of the fan-out to the last POST (``overall_windows_per_s``);
* CPU seconds per process role (worker main process, pool children, API, RabbitMQ, this process) and per window;
* correctness: distinct windows posted against the dry run (``lost``, ``duplicated``, ``unexpected``);

and over the whole run the worker's peak resident memory, main process and children, sampled every 0.2 s.

Prints one JSON line. Targets on the 2-core machine: at least 200 windows/s and under 200 MiB per process.

Usage::

    python bench/e2e.py                                          # 400 installations, 2 periods, worker -c 2
    python bench/e2e.py --installations 400 --cycles 1 --minutes 60  # one period, 5 windows per installation
    python bench/e2e.py --log-level WARNING                      # without the INFO line per window
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import (
    Api,
    CpuMeter,
    LogTail,
    RssSampler,
    Vhost,
    Worker,
    broker_pid,
    cleanup_stack,
    count_lines,
    emit,
    exit_cleanly_on_sigterm,
    log,
    processor_env,
    send_fanout,
    start_api,
)


def expected_windows(env: dict[str, str]) -> dict[tuple[str, str, int], str]:
    """Dry run of every installation in this process: (user, installation, result timestamp) → outcome."""
    from processor.config import Config
    from processor.installation.cycle import process_tree
    from processor.installation.summary import RunSummary

    expected: dict[tuple[str, str, int], str] = {}

    def done(summary: RunSummary) -> None:
        for window in summary.windows:
            if window.timestamp is not None:
                expected[(summary.user_id, summary.installation_id, window.timestamp)] = window.outcome

    process_tree(Config.from_env(env), dry_run=True, done=done)
    return expected


class _Profiler:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self.process.wait(timeout=60)


def start_profiler(pid: int, output: Path) -> _Profiler:
    """``py-spy record`` of the worker and its children (``--subprocesses``), raw collapsed stacks."""
    command = [
        "py-spy",
        "record",
        "--subprocesses",
        "--nonblocking",
        "-r",
        "250",
        "-f",
        "raw",
        "-o",
        str(output),
        "-p",
        str(pid),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    return _Profiler(process)


def wait_until_drained(
    vhost: Vhost, api: Api, expected: int, installations: int | None, worker_log: Path, timeout_s: float
) -> bool:
    """
    Wait until every expected window was accepted by the API and (at log level INFO) every installation task
    logged its end (``installations`` None: not logged below INFO); or until the queue is empty and nothing was
    posted for 10 s. True in the first case.
    """
    posts = LogTail(api.log_path, '"accepted": true')
    tasks = LogTail(worker_log, "installation done")
    deadline = time.monotonic() + timeout_s
    last_change, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        accepted = posts.update()['"accepted": true']
        done = tasks.update()["installation done"]
        if accepted >= expected and (installations is None or done >= installations):
            return True
        if accepted != last_count:
            last_change, last_count = time.monotonic(), accepted
        elif time.monotonic() - last_change > 10 and vhost.queue_depth() == 0:
            return False
        time.sleep(0.25)
    return False


#: Minutes between two fan-outs (``TIX_PROCESSING_PERIOD``'s default): the reports one period brings.
PERIOD_MIN = 10


def hold_back(reports: Path, held: Path, *, minutes: float, cycles: int) -> list[list[tuple[Path, Path]]]:
    """
    Move the reports of cycles 2 … ``cycles`` out of the tree into ``held``; return, per later cycle, the moves that
    bring them back (held path, tree path).

    Cycle k (1-based) sees the files whose first record is less than ``minutes − (cycles − k) × PERIOD_MIN``
    minutes after the installation's first record: every later cycle adds one period of reports, as the condenser
    does between two fan-outs.
    """
    arrivals: list[list[tuple[Path, Path]]] = [[] for _ in range(cycles - 1)]
    for directory in sorted(p for p in reports.glob("*/*") if p.is_dir()):
        # tix-report-<ts of the first record>.json, sorted by that time.
        starts = sorted((int(p.stem.removeprefix("tix-report-")), p) for p in directory.glob("tix-report-*.json"))
        for start_s, path in starts:
            offset_min = (start_s - starts[0][0]) / 60
            cycle = min(cycles, max(1, cycles + 1 - math.ceil((minutes - offset_min) / PERIOD_MIN)))  # 1-based
            if cycle > 1:
                target = held / path.relative_to(reports)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(path, target)
                arrivals[cycle - 2].append((target, path))
    return arrivals


def run_cycle(
    number: int,
    vhost: Vhost,
    api: Api,
    env: dict[str, str],
    reports: Path,
    worker: Worker,
    worker_log: Path,
    *,
    installations: int,
    log_level: str,
    timeout_s: float,
    posted_before: int,
) -> dict[str, Any]:
    """One processing period: a dry run for the expected windows, one fan-out, the wait until it is processed."""
    began = time.perf_counter()
    expected = expected_windows(env)
    log(f"cycle {number}: {len(expected)} windows expected (dry run {time.perf_counter() - began:.1f} s)")
    meter = CpuMeter({"worker": worker.pid, "api": api.process.pid, "broker": broker_pid(), "bench": os.getpid()})
    meter.start()
    published_at = time.time()
    send_fanout(vhost, reports)
    task_lines = number * installations if log_level.upper() in ("INFO", "DEBUG") else None
    finished = wait_until_drained(vhost, api, posted_before + len(expected), task_lines, worker_log, timeout_s)
    cpu = meter.stop()
    accepted = [r for r in api.logged_records() if r["accepted"] and r["time"] >= published_at]
    identities = Counter((r["user_id"], r["installation_id"], r["json"]["timestamp"]) for r in accepted)
    times = sorted(record["time"] for record in accepted)
    span_s = times[-1] - times[0] if len(times) > 1 else 0.0
    posted = set(identities)
    return {
        "cycle": number,
        "finished": finished,
        "windows_expected": len(expected),
        "posted": len(posted),
        "duplicated": sum(count - 1 for count in identities.values()),
        "lost": len(set(expected) - posted),
        "unexpected": len(posted - set(expected)),
        "post_span_s": round(span_s, 2),
        "windows_per_s": round((len(times) - 1) / span_s, 1) if span_s > 0 else None,
        "overall_s": round((times[-1] if times else time.time()) - published_at, 2),
        "overall_windows_per_s": round(len(times) / (times[-1] - published_at), 1) if times else None,
        "cpu_s": cpu,
        "cpu_ms_per_window": {key: round(1000 * value / max(1, len(times)), 2) for key, value in cpu.items()},
        "accepted_posts": len(accepted),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installations", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of reports per installation (30)")
    parser.add_argument(
        "--cycles",
        type=int,
        default=2,
        help=f"fan-outs; each after the first brings {PERIOD_MIN} more minutes of reports; the last is measured (2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (celery worker -c)")
    parser.add_argument("--log-level", default="INFO", help="CELERY_LOG_LEVEL of the worker (INFO)")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for each cycle, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (tree, logs)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="sample the worker and its children with py-spy (pip install py-spy) into FILE (raw stacks)",
    )
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.minutes <= (args.cycles - 1) * PERIOD_MIN:
        parser.error(f"--minutes must exceed (cycles - 1) × {PERIOD_MIN}")
    exit_cleanly_on_sigterm()

    from processor_tools.simulate import simulate_tree

    work = Path(tempfile.mkdtemp(prefix="tix-bench-e2e-"))
    reports = work / "reports"
    summary = simulate_tree(reports, installations=args.installations, minutes=args.minutes, seed=args.seed)
    log(f"simulated {summary.installations} installations, {summary.files} files in {summary.seconds:.1f} s")
    arrivals = hold_back(reports, work / "held", minutes=args.minutes, cycles=args.cycles)
    result: dict[str, Any] = {
        "bench": "e2e",
        "installations": args.installations,
        "minutes": args.minutes,
        "cycles": args.cycles,
        "concurrency": args.concurrency,
        "log_level": args.log_level,
        "files": summary.files,
    }
    cycles: list[dict[str, Any]] = []
    with Vhost.for_bench("e2e") as vhost, cleanup_stack() as running:
        api = start_api(work / "api")
        running.append(api)
        env = processor_env(reports=reports, vhost=vhost, api_port=api.port, log_level=args.log_level)
        worker_log = work / "worker.log"
        worker = Worker(env, worker_log, concurrency=args.concurrency, name="bench-e2e").start()
        running.append(worker)
        sampler = RssSampler(worker.pid).start()
        running.append(sampler)
        if args.profile is not None:
            running.append(start_profiler(worker.pid, args.profile))
        posted_before = 0
        for number in range(1, args.cycles + 1):
            if number > 1:
                for held, target in arrivals[number - 2]:
                    os.rename(held, target)
            cycle = run_cycle(
                number,
                vhost,
                api,
                env,
                reports,
                worker,
                worker_log,
                installations=args.installations,
                log_level=args.log_level,
                timeout_s=args.timeout,
                posted_before=posted_before,
            )
            posted_before += cycle.pop("accepted_posts")
            log(f"cycle {number}: {cycle['windows_per_s']} windows/s")
            cycles.append(cycle)
        sampler.stop()
        running.remove(sampler)
    measured = cycles[-1]
    result.update({key: value for key, value in measured.items() if key != "cycle"})
    result.update(
        worker_rss=sampler.summary(),
        first_cycle_windows_per_s=cycles[0]["windows_per_s"],
        lost=sum(cycle["lost"] for cycle in cycles),
        duplicated=sum(cycle["duplicated"] for cycle in cycles),
        finished=all(cycle["finished"] for cycle in cycles),
        task_failures=count_lines(worker_log, "raised unexpected"),
        worker_errors=count_lines(worker_log, "ERROR"),
        target_windows_per_s=200,
        target_rss_mib=200,
        per_cycle=cycles,
    )
    result["within_target"] = bool(
        result["windows_per_s"]
        and result["windows_per_s"] >= 200
        and max(result["worker_rss"]["main_peak_mib"], result["worker_rss"]["child_peak_mib"]) < 200
    )
    if args.keep:
        result["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0 if result["finished"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
