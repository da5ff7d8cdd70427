"""
Soak under faults: a long run over simulated installations while workers are killed, the API misbehaves, files
arrive half-written or corrupt, and (opt-in) RabbitMQ restarts; then a drain and the counts of reliability.md §5.

Set-up. ``simulate_tree`` writes every report of ``--installations`` installations (``--data-minutes`` each, with
IP changes and gaps) into a *staging* directory. The expected outcome is a clean run on a copy of staging: the
service's own ``run_installation`` without API credentials, so every window lands in ``failed-results/``; it
gives the windows (and their payloads), the not-analysable counts and the leftover files. The live tree starts
with the first third of each installation's files; a *condenser* thread then moves the rest in, in name order,
spread over the fault phase, each with a non-atomic write (open, write half, write the rest); ``--half-written``
of them wait 20 s between the halves. Corrupt old files of every kind of reports.md §5.1 are dropped into the
tree at the start and during the run.

Processes: the stand-in tix-api (``tests/fake_api.py``), ``celery -A processor.tasks worker -c 2`` and
``celery -A processor.tasks beat`` with ``TIX_PROCESSING_PERIOD=1``, ``TIX_LOCK_LEASE_SECONDS=30`` and
``TIX_API_TIMEOUT=2``, in a RabbitMQ vhost of their own; the bench also publishes a fan-out every
``--fanout-every`` seconds (a second beat, which the design makes harmless).

Faults during ``--minutes``: a worker child SIGKILLed every 8-20 s (shortly after a fan-out, so that it is
likely busy; the pool replaces it); the API cycling through ok / 503 / slow (1 s, half the timeout) / hanging
every ~20 s; half-written and corrupt files as above; with ``--restart-broker``, ``rabbitmqctl stop_app``, a pause
of ``--broker-down`` seconds and ``rabbitmqctl start_app`` once in the middle.

**--restart-broker stops the whole local RabbitMQ node, for every user of it.** It is off by default and refused
while other celery or pytest processes run (``--force`` overrides); use it only on a broker you own.

Drain: every fault removed (API ok, no kills, all files delivered); fan-outs go on until two consecutive checks
``--fanout-every`` seconds apart see no new POST, no file change, an empty queue and no failed result left.

Counts (reliability.md §5): windows expected (analysable / not analysable by reason), posted (distinct window
identities accepted), backed_up, rejected, not_analysable (from the state files), duplicated (ambiguous: the first
acceptance was followed within 2 s by a kill or a broker restart; unexplained: the others), unexpected, lost,
payload mismatches, invalid reports by reason against the injected ones, half-written files that ended in
invalid-reports, leftover mismatch. Prints a table on stderr and one JSON line on stdout. Acceptance: lost 0,
unexpected 0, unexplained duplicates 0, duplicates at most one per killed process, every half-written file used
once complete, every corrupt file quarantined with its reason, leftovers and not-analysable as the clean run.

Usage::

    python bench/soak.py                            # 4 minutes of faults, no broker restart
    python bench/soak.py --minutes 1 --installations 20
    python bench/soak.py --minutes 5 --restart-broker --broker-down 30   # only on a broker you own
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    Beat,
    Vhost,
    Worker,
    broker_in_use_by_others,
    cleanup_stack,
    count_lines,
    emit,
    exit_cleanly_on_sigterm,
    log,
    processor_env,
    rabbitmqctl,
    send_fanout,
    start_api,
)

#: Seconds between the two halves of a half-written file (below the 60 s young-file limit).
HALF_WRITE_PAUSE_S = 20.0

#: API behaviours cycled through during the fault phase (``tests/fake_api.py`` modes).
API_MODES = ("ok", "status:503", "delay:1", "hang")

#: A duplicate whose first acceptance was followed by a kill or a broker stop within this many seconds is ambiguous.
AMBIGUOUS_WINDOW_S = 2.0

Identity = tuple[str, str, int]


# -- expected outcome ------------------------------------------------------------------------------------------------


@dataclass
class Expected:
    """The clean run on a copy of staging."""

    payloads: dict[Identity, dict[str, Any]] = field(default_factory=dict)
    not_analysable: Counter[str] = field(default_factory=Counter)
    leftovers: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def clean_run(staging: Path, copy: Path, env: dict[str, str]) -> Expected:
    """Run the service's ``run_installation`` without API credentials on a copy of ``staging``."""
    import dataclasses

    from processor.config import Config
    from processor.delivery import open_delivery
    from processor.delivery.failed_results import FAILED_RESULTS_DIR, list_failed_results, load_failed_result
    from processor.delivery.payload import build_payload
    from processor.installation.run import run_installation
    from processor.installation.state import read_state
    from processor.reports.files import report_candidates
    from processor.reports.tree import installation_dirs

    shutil.copytree(staging, copy, symlinks=True)
    config = dataclasses.replace(
        Config.from_env(env), reports_base_path=copy, api_user=None, api_password=None, task_budget_s=1500
    )
    expected = Expected()
    delivery = open_delivery(config)
    for installation in installation_dirs(copy):
        user, inst = installation.user_id, installation.installation_id
        while run_installation(config, user, inst, delivery).windows:  # one run consumes every window
            pass
        for item in list_failed_results(installation.path / FAILED_RESULTS_DIR):
            stored = load_failed_result(item.path)
            payload = build_payload(
                stored.results,
                ip=stored.ip,
                asn=stored.asn,
                as_owner=stored.as_owner,
                usage_estimator=config.usage_estimator,
            )
            expected.payloads[(user, inst, item.timestamp)] = payload
        expected.not_analysable.update(read_state(installation.path).counters.not_analysable)
        expected.leftovers[(user, inst)] = set(report_candidates(installation.path))
    return expected


# -- the condenser and the bad files -----------------------------------------------------------------------------------


def corrupt_variants(sample: bytes) -> dict[str, bytes | None]:
    """Bytes of an unusable file for each reason code of reports.md §5.1 (None: a symbolic link)."""
    document = json.loads(sample)
    no_from = {key: value for key, value in document.items() if key != "from"}
    return {
        "empty": b"",
        "not_json": sample[: len(sample) // 2],
        "schema": json.dumps(no_from).encode(),
        "bad_address": json.dumps(dict(document, **{"from": "999.1.2.3:4501"})).encode(),
        "bad_base64": json.dumps(dict(document, message="@@not base64@@")).encode(),
        "bad_record_length": json.dumps(dict(document, message=base64.b64encode(b"x" * 44).decode())).encode(),
        "no_records": json.dumps(dict(document, message="")).encode(),
        "too_large": b"{" + b" " * (1 << 20) + b"}",
        "symlink": None,
    }


class Condenser:
    """Moves staged reports into the live tree over time, like the condenser, and drops bad files into it."""

    def __init__(self, staging: Path, live: Path, rng: random.Random, *, half_written: int) -> None:
        self.live = live
        self.rng = rng
        self.queue: list[tuple[Path, Path]] = []  # (staged file, live path), delivered in this order
        self.half_written: list[tuple[str, str, str]] = []
        self.corrupt: list[tuple[str, str, str]] = []  # (user, installation, name) with the injected reason
        self.corrupt_reasons: dict[tuple[str, str, str], str] = {}
        self._half_left = half_written
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._sample = next(staging.glob("*/*/tix-report-*.json")).read_bytes()
        per_installation = []
        for directory in sorted(staging.glob("*/*")):
            files = sorted(directory.glob("tix-report-*.json"))
            target = live / directory.parent.name / directory.name
            target.mkdir(parents=True, exist_ok=True, mode=0o750)
            initial = len(files) // 3
            for path in files[:initial]:
                shutil.copy2(path, target / path.name)  # the backlog, with its old modification times
            per_installation.append([(path, target / path.name) for path in files[initial:]])
        # Interleave the installations so that every one keeps receiving files during the whole phase.
        while any(per_installation):
            for files in per_installation:
                if files:
                    self.queue.append(files.pop(0))
        self.total = len(self.queue)
        self.half_every = max(1, self.total // max(1, half_written)) if half_written else 0

    def deliver(self, count: int) -> None:
        """Write the next ``count`` staged files into the live tree (non-atomically)."""
        for _ in range(min(count, len(self.queue))):
            staged, target = self.queue.pop(0)
            data = staged.read_bytes()
            index = self.total - len(self.queue)
            with target.open("wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                if self._half_left and self.half_every and index % self.half_every == 0:
                    self._half_left -= 1
                    ids = (target.parent.parent.name, target.parent.name, target.name)
                    self.half_written.append(ids)
                    timer = threading.Timer(HALF_WRITE_PAUSE_S, self._complete, (target, data))
                    self._timers.append(timer)
                    timer.start()
                    continue
                handle.write(data[len(data) // 2 :])

    def _complete(self, target: Path, data: bytes) -> None:
        with target.open("ab") as handle:
            handle.write(data[len(data) // 2 :])

    def drop_corrupt(self, kinds: list[str] | None = None) -> None:
        """Drop one old unusable file of each kind (default: every kind) into random installations."""
        variants = corrupt_variants(self._sample)
        directories = sorted(self.live.glob("*/*"))
        old = time.time() - 7200
        for reason in kinds or list(variants):
            directory = self.rng.choice(directories)
            names = sorted(p.name for p in directory.glob("tix-report-*.json"))
            base_ts = int(names[len(names) // 2][11:-5]) if names else int(time.time())
            name = f"tix-report-{base_ts}.json"
            while (directory / name).exists() or os.path.lexists(directory / name):
                base_ts += 1
                name = f"tix-report-{base_ts}.json"
            path = directory / name
            data = variants[reason]
            if data is None:
                os.symlink("/dev/null", path)
                os.utime(path, (old, old), follow_symlinks=False)
            else:
                path.write_bytes(data)
                os.utime(path, (old, old))
            key = (directory.parent.name, directory.name, name)
            self.corrupt.append(key)
            self.corrupt_reasons[key] = reason

    def finish(self) -> None:
        self.deliver(len(self.queue))
        for timer in self._timers:
            timer.join()


# -- faults ------------------------------------------------------------------------------------------------------------


@dataclass
class FaultLog:
    kills: list[tuple[float, int]] = field(default_factory=list)  # (time, pid)
    broker_stops: list[tuple[float, float]] = field(default_factory=list)  # (stopped at, started at)
    api_modes: list[tuple[float, str]] = field(default_factory=list)
    fanouts: int = 0
    fanout_errors: int = 0


def kill_a_child(worker: Worker, faults: FaultLog, rng: random.Random) -> None:
    """SIGKILL one pool process of the worker, by its pid (the pool starts a new one)."""
    children = worker.children()
    if not children:
        return
    victim = rng.choice(children)
    try:
        os.kill(victim.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    faults.kills.append((time.time(), victim.pid))
    log(f"killed worker child {victim.pid}")


def restart_broker(down_s: float, faults: FaultLog) -> None:
    stopped = time.time()
    log(f"rabbitmqctl stop_app (for {down_s:.0f} s)")
    rabbitmqctl("stop_app")
    time.sleep(down_s)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    faults.broker_stops.append((stopped, time.time()))
    log("rabbitmqctl start_app done")


def publish_fanout(vhost: Vhost, live: Path, faults: FaultLog) -> None:
    try:
        send_fanout(vhost, live, expires_s=30)
        faults.fanouts += 1
    except Exception as error:  # the broker may be down: the next one will do
        faults.fanout_errors += 1
        log(f"fan-out not published: {type(error).__name__}: {error}")


# -- the end state ---------------------------------------------------------------------------------------------------


def tree_snapshot(live: Path) -> frozenset[tuple[str, int, int]]:
    """Every file under the live tree with its size and mtime (for the 'nothing changes any more' check)."""
    entries = []
    for root, _, files in os.walk(live):
        for name in files:
            path = os.path.join(root, name)
            if name.startswith(".tix-processor.lock"):
                continue
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            entries.append((path, info.st_size, info.st_mtime_ns))
    return frozenset(entries)


def failed_results_left(live: Path) -> int:
    return sum(1 for _ in live.glob("*/*/failed-results/failed-report-*.json"))


def quarantine_reasons(worker_log: Path) -> dict[tuple[str, str, str], str]:
    """(user, installation, name) → reason of every 'unusable report moved' line of the worker log."""
    pattern = re.compile(r"unusable report moved user=(\S+) installation=(\S+) name=(\S+) reason=(\S+)")
    found = {}
    with worker_log.open(errors="replace") as handle:
        for line in handle:
            if match := pattern.search(line):
                found[(match[1], match[2], match[3])] = match[4]
    return found


def account(
    expected: Expected,
    live: Path,
    records: list[dict[str, Any]],
    condenser: Condenser,
    faults: FaultLog,
    worker_log: Path,
) -> dict[str, Any]:
    """The counts of reliability.md §5 after the drain."""
    from processor.delivery.failed_results import FAILED_RESULTS_DIR
    from processor.installation.state import read_state
    from processor.reports.files import report_candidates

    accepted = [record for record in records if record["accepted"]]
    by_identity: dict[Identity, list[dict[str, Any]]] = defaultdict(list)
    for record in accepted:
        by_identity[(record["user_id"], record["installation_id"], record["json"]["timestamp"])].append(record)
    posted = set(by_identity)
    expected_ids = set(expected.payloads)
    events = [t for t, _ in faults.kills] + [t for t, _ in faults.broker_stops]
    ambiguous = unexplained = 0
    for identity, copies in by_identity.items():
        for first, _again in itertools.pairwise(copies):
            explained = first["outcome"] == "dropped" or any(
                0 <= t - first["time"] <= AMBIGUOUS_WINDOW_S for t in events
            )
            if explained:
                ambiguous += 1
            else:
                unexplained += 1
                log(f"unexplained duplicate {identity}")
    mismatches = sum(
        1 for identity in posted & expected_ids if by_identity[identity][0]["json"] != expected.payloads[identity]
    )
    backed_up: set[Identity] = set()
    rejected = 0
    not_analysable: Counter[str] = Counter()
    leftover_mismatch = 0
    invalid: Counter[str] = Counter()
    invalid_names: set[tuple[str, str, str]] = set()
    for directory in sorted(live.glob("*/*")):
        user, inst = directory.parent.name, directory.name
        for path in (directory / FAILED_RESULTS_DIR).glob("failed-report-*.json"):
            backed_up.add((user, inst, int(path.name.split("-")[2].split(".")[0])))
        rejected += sum(1 for _ in (directory / FAILED_RESULTS_DIR / "rejected").glob("*"))
        not_analysable.update(read_state(directory).counters.not_analysable)
        leftovers = set(report_candidates(directory))
        leftover_mismatch += len(leftovers ^ expected.leftovers.get((user, inst), set()))
        for path in (directory / "invalid-reports").glob("*"):
            invalid_names.add((user, inst, re.sub(r"\.json\.\d+$", ".json", path.name)))
    moved = quarantine_reasons(worker_log)
    for key in invalid_names:
        invalid[moved.get(key, "unknown")] += 1
    corrupt_ok = sum(
        1 for key in condenser.corrupt if key in invalid_names and moved.get(key) == condenser.corrupt_reasons[key]
    )
    half_quarantined = sum(1 for key in condenser.half_written if key in invalid_names)
    lost = expected_ids - posted - backed_up
    kills = len(faults.kills)
    windows_expected = len(expected.payloads) + sum(expected.not_analysable.values())
    return {
        "windows_expected": windows_expected,
        "analysable": len(expected.payloads),
        "not_analysable_expected": dict(expected.not_analysable),
        "posted": len(posted),
        "backed_up": len(backed_up),
        "rejected": rejected,
        "not_analysable": dict(not_analysable),
        "not_analysable_equal": not_analysable == expected.not_analysable,
        "duplicated": {"ambiguous": ambiguous, "unexplained": unexplained},
        "unexpected": len(posted - expected_ids),
        "lost": len(lost),
        "payload_mismatches": mismatches,
        "invalid_reports": dict(invalid),
        "invalid_injected": len(condenser.corrupt),
        "invalid_injected_quarantined_with_reason": corrupt_ok,
        "half_written": len(condenser.half_written),
        "half_written_quarantined": half_quarantined,
        "leftover_mismatch": leftover_mismatch,
        "killed_children": kills,
        "broker_restarts": len(faults.broker_stops),
        "fanouts_published": faults.fanouts,
        "fanout_publish_errors": faults.fanout_errors,
        "kills_mid_task": count_lines(worker_log, "raised error: WorkerLostError("),
        "lock_takeovers": count_lines(worker_log, "lock taken over"),
        "task_failures": count_lines(worker_log, "raised unexpected"),
        "api_posts": len(records),
    }


def acceptance(counts: dict[str, Any]) -> dict[str, bool]:
    return {
        "no_loss": counts["lost"] == 0,
        "no_unexpected": counts["unexpected"] == 0,
        "no_unexplained_duplicate": counts["duplicated"]["unexplained"] == 0,
        "duplicates_at_most_one_per_kill": counts["duplicated"]["ambiguous"]
        <= counts["killed_children"] + counts["broker_restarts"],
        "half_written_used_once_complete": counts["half_written_quarantined"] == 0,
        "corrupt_quarantined": counts["invalid_injected_quarantined_with_reason"] == counts["invalid_injected"],
        "leftovers_as_clean_run": counts["leftover_mismatch"] == 0,
        "not_analysable_as_clean_run": counts["not_analysable_equal"],
        "payloads_as_clean_run": counts["payload_mismatches"] == 0,
        "nothing_backed_up": counts["backed_up"] == 0,
    }


def print_table(counts: dict[str, Any], checks: dict[str, bool]) -> None:
    rows = [
        ("windows expected", counts["windows_expected"]),
        ("  analysable", counts["analysable"]),
        ("  not analysable", counts["not_analysable_expected"]),
        ("posted (distinct)", counts["posted"]),
        ("backed up at the end", counts["backed_up"]),
        ("rejected", counts["rejected"]),
        ("not analysable (state files)", counts["not_analysable"]),
        ("duplicated ambiguous", counts["duplicated"]["ambiguous"]),
        ("duplicated unexplained", counts["duplicated"]["unexplained"]),
        ("unexpected", counts["unexpected"]),
        ("lost", counts["lost"]),
        ("payload mismatches", counts["payload_mismatches"]),
        ("invalid reports (by reason)", counts["invalid_reports"]),
        (
            "  injected / quarantined with reason",
            f"{counts['invalid_injected']} / {counts['invalid_injected_quarantined_with_reason']}",
        ),
        ("half-written / of them quarantined", f"{counts['half_written']} / {counts['half_written_quarantined']}"),
        ("leftover mismatch", counts["leftover_mismatch"]),
        ("worker children killed / of them mid-task", f"{counts['killed_children']} / {counts['kills_mid_task']}"),
        ("lock takeovers", counts["lock_takeovers"]),
        ("broker restarts", counts["broker_restarts"]),
        ("task failures", counts["task_failures"]),
    ]
    width = max([len(name) for name, _ in rows] + [len(name) + 6 for name in checks])
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += [f"{'check ' + name:<{width}}  {'ok' if ok else 'FAILED'}" for name, ok in checks.items()]
    log("soak summary\n" + "\n".join(lines))


# -- main --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the fault phase (4)")
    parser.add_argument("--installations", type=int, default=60)
    parser.add_argument("--data-minutes", type=float, default=90.0, help="simulated minutes per installation (90)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half-written", type=int, default=12, help="files written in two halves 20 s apart (12)")
    parser.add_argument("--fanout-every", type=float, default=20.0, help="seconds between the bench's fan-outs")
    parser.add_argument("--restart-broker", action="store_true", help="stop and start the local RabbitMQ once")
    parser.add_argument("--broker-down", type=float, default=30.0, help="seconds the broker stays stopped (30)")
    parser.add_argument("--force", action="store_true", help="restart the broker even if others seem to use it")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    if args.restart_broker and not args.force and (others := broker_in_use_by_others()):
        log("refusing --restart-broker: other processes use the broker:\n  " + "\n  ".join(others))
        return 2

    from processor_tools.simulate import simulate_tree

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="tix-bench-soak-"))
    staging, live = work / "staging", work / "live"
    summary = simulate_tree(
        staging,
        installations=args.installations,
        minutes=args.data_minutes,
        seed=args.seed,
        ip_change_share=0.1,
        gap_share=0.1,
    )
    log(f"staged {summary.files} files of {summary.installations} installations")
    with Vhost.for_bench("soak") as vhost, cleanup_stack() as running:
        base_env = processor_env(
            reports=live,
            vhost=vhost,
            api_port=None,
            period_min=1,
            extra={"TIX_LOCK_LEASE_SECONDS": "30", "TIX_API_TIMEOUT": "2", "TIX_TASK_BUDGET_SECONDS": "60"},
        )
        expected = clean_run(staging, work / "clean", base_env)
        log(f"clean run: {len(expected.payloads)} analysable windows, not analysable {dict(expected.not_analysable)}")
        condenser = Condenser(staging, live, rng, half_written=args.half_written)
        condenser.drop_corrupt()
        api = start_api(work / "api")
        running.append(api)
        env = dict(base_env, TIX_API_PORT=str(api.port))
        worker_log = work / "worker.log"
        worker = Worker(env, worker_log, concurrency=2, name="bench-soak").start()
        running.append(worker)
        beat = Beat(env, work / "beat.log", work / "beat-schedule").start()
        running.append(beat)
        faults = FaultLog()
        began = time.monotonic()
        fault_end = began + args.minutes * 60
        per_second = condenser.total / max(1.0, args.minutes * 60 - HALF_WRITE_PAUSE_S - 10)
        next_fanout = began
        next_kill = began + rng.uniform(8, 20)
        next_mode = began + 20
        mode_index = 0
        restart_at = began + args.minutes * 60 * 0.4 if args.restart_broker else None
        corrupt_at = [began + args.minutes * 60 * share for share in (0.3, 0.7)]
        delivered_credit = 0.0
        last_tick = began
        broker_thread: threading.Thread | None = None
        log(f"fault phase: {args.minutes} min, {condenser.total} files to deliver")
        while (now := time.monotonic()) < fault_end:
            delivered_credit += (now - last_tick) * per_second
            last_tick = now
            if delivered_credit >= 1:
                condenser.deliver(int(delivered_credit))
                delivered_credit -= int(delivered_credit)
            broker_down = broker_thread is not None and broker_thread.is_alive()
            if now >= next_fanout and not broker_down:
                publish_fanout(vhost, live, faults)
                next_fanout = now + args.fanout_every
                next_kill = min(next_kill, now + rng.uniform(0.3, 2.0)) if rng.random() < 0.5 else next_kill
            if now >= next_kill:
                kill_a_child(worker, faults, rng)
                next_kill = now + rng.uniform(8, 20)
            if now >= next_mode:
                mode_index = (mode_index + 1) % len(API_MODES)
                api.control.set_behaviour(_behaviour(API_MODES[mode_index]))
                faults.api_modes.append((time.time(), API_MODES[mode_index]))
                log(f"API mode {API_MODES[mode_index]}")
                next_mode = now + 20
            if corrupt_at and now >= corrupt_at[0]:
                corrupt_at.pop(0)
                condenser.drop_corrupt(rng.sample(["not_json", "schema", "bad_base64", "empty", "symlink"], 3))
            if restart_at is not None and now >= restart_at:
                restart_at = None
                broker_thread = threading.Thread(target=restart_broker, args=(args.broker_down, faults))
                broker_thread.start()
            time.sleep(0.05)
        log("fault phase over: removing every fault, draining")
        if broker_thread is not None:
            broker_thread.join()
        api.control.set_behaviour(None)
        faults.api_modes.append((time.time(), "ok"))
        condenser.finish()
        drained = drain(vhost, live, api, faults, args.fanout_every, args.drain_timeout)
        records = api.logged_records()
        counts = account(expected, live, records, condenser, faults, worker_log)
    counts["drained"] = drained
    counts["fault_minutes"] = args.minutes
    checks = acceptance(counts)
    print_table(counts, checks)
    result = {"bench": "soak", **counts, "acceptance": checks, "accepted": all(checks.values()) and drained}
    if args.keep:
        result["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    emit(result)
    return 0 if result["accepted"] else 1


def _behaviour(mode: str) -> Any:
    from tests.fake_api import Behaviour

    return Behaviour.parse(mode)


def drain(vhost: Vhost, live: Path, api: Any, faults: FaultLog, every_s: float, timeout_s: float) -> bool:
    """Fan out every ``every_s`` until two consecutive checks see no change; False on timeout."""
    deadline = time.monotonic() + timeout_s
    previous: tuple[Any, ...] | None = None
    quiet = 0
    while time.monotonic() < deadline:
        publish_fanout(vhost, live, faults)
        time.sleep(every_s)
        state = (len(api.logged_records()), tree_snapshot(live))
        idle = vhost.queue_depth() == 0 and failed_results_left(live) == 0
        quiet = quiet + 1 if (state == previous and idle) else 0
        previous = state
        if quiet >= 2:
            return True
    return False


if __name__ == "__main__":
    raise SystemExit(main())
