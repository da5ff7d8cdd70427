"""
Real parts for the end-to-end service tests: broker vhost, worker processes, trees, dry-run expectations, tallies.

Everything here drives separate processes (``celery -A processor.tasks worker``, the fake tix-api of
``tests/fake_api.py``) over a real RabbitMQ, as reliability.md §3 asks; the fixtures of ``conftest.py`` wire it up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import celery
import kombu

from processor.analysis import analyse
from processor.config import Config
from processor.delivery.failed_results import FAILED_NAME_RE
from processor.delivery.ip_to_as import resolver_from_config
from processor.delivery.payload import build_payload
from processor.errors import NotAnalysable, UnusableReport
from processor.installation.dry_run import dry_run_installation
from processor.reports.files import read_report, report_candidates
from processor.reports.tree import installation_dirs
from processor.reports.windows import iter_windows
from tests.rabbit import broker_url, declare_passive, processor_broker_env

REPO = Path(__file__).resolve().parents[2]

API_USER = "admin"
API_PASSWORD = "Svc-Pa55-7f3e"  # distinctive, so that a test can prove it never reaches a log

#: Parity tolerances of analysis.md §11.1 (usage and quality; Hurst values).
VALUE_TOL = 1e-9
HURST_TOL = 1e-6

#: Seconds a worker gets to finish its tasks after SIGTERM before its process group is killed.
STOP_GRACE_S = 30.0

T = TypeVar("T")


# -- waiting -----------------------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    interval_s: float = 0.2,
) -> T:
    """
    Poll ``predicate`` until it returns a true value and return that value.

    Raises ``AssertionError`` naming ``what`` (a text or a callable giving the current situation) after
    ``timeout_s`` seconds; the bound keeps a broken system from hanging the suite.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for: {detail}")
        time.sleep(interval_s)


# -- broker ------------------------------------------------------------------------------------------------------


@dataclass
class Broker:
    """One RabbitMQ virtual host of the test session, and a Celery app object that publishes into it."""

    vhost: str
    app: celery.Celery = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.app = celery.Celery("tix-service-tests", broker=self.url)
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_transport_options={"confirm_publish": True},
            broker_connection_retry_on_startup=False,
            task_default_queue="celery",
        )

    @property
    def url(self) -> str:
        return broker_url(self.vhost)

    def fan_out(self, base: Path) -> None:
        """Publish the beat's message: ``process_users_data(<base>)``."""
        self.app.send_task("processor.tasks.process_users_data", args=[str(base)])

    def installation(self, base: Path, user_id: str, installation_id: str) -> None:
        """Publish ``process_installation(<base>/<user>/<installation>, user, installation)``."""
        path = str(base / user_id / installation_id)
        self.app.send_task("processor.tasks.process_installation", args=[path, user_id, installation_id])

    def queue_depth(self, queue: str = "celery") -> int:
        """Ready messages in ``queue`` (0 when it does not exist yet); unacknowledged ones are not counted."""
        try:
            return int(declare_passive(self.vhost, queue, connect_timeout_s=10).message_count)
        except Exception as exc:  # the broker answers 404 NOT_FOUND for a queue never declared
            if "NOT_FOUND" in str(exc) or "404" in str(exc):
                return 0
            raise

    def purge(self) -> None:
        """Drop every ready message of the default queue, so that no test sees another's leftovers."""
        with kombu.Connection(self.url, connect_timeout=10) as connection:
            channel = connection.channel()
            try:
                channel.queue_purge("celery")
            except Exception as exc:
                if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                    raise


# -- environment and processes -----------------------------------------------------------------------------------


def worker_environment(vhost: str, base: Path, api_port: int, **overrides: str) -> dict[str, str]:
    """
    The environment of a worker process: this process's environment without any processor variable, plus the
    test broker vhost, the reports tree, the fake tix-api, a 30 s lock lease and a 1-minute period.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TIX_", "CELERY_")) and key not in ("PROCESSOR_TYPE", "PYTHONPATH")
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "PROCESSOR_TYPE": "WORKER",
            "CELERY_LOG_LEVEL": "INFO",
            **processor_broker_env(vhost),
            "TIX_REPORTS_BASE_PATH": str(base),
            "TIX_PROCESSING_PERIOD": "1",
            "TIX_LOCK_LEASE_SECONDS": "30",
            "TIX_API_HOST": "127.0.0.1",
            "TIX_API_PORT": str(api_port),
            "TIX_API_USER": API_USER,
            "TIX_API_PASSWORD": API_PASSWORD,
            "TIX_API_TIMEOUT": "10",
            "TIX_IPTOAS_BACKEND": "none",
        }
    )
    env.update(overrides)
    return env


def celery_worker_command(
    node: str, *, concurrency: int = 2, options: Iterable[str] = (), loglevel: str | None = "INFO"
) -> list[str]:
    """
    ``celery -A processor.tasks worker`` with a prefork pool, a node name, ``--loglevel`` and ``options``;
    ``loglevel=None`` leaves ``--loglevel`` out, as the README's bare command does.
    """
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "processor.tasks",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--hostname={node}@%h",
        *([f"--loglevel={loglevel}"] if loglevel else []),
        "--without-mingle",
        "--without-gossip",
        *options,
    ]


_TASK_EVENT = re.compile(
    r"Task (?P<name>processor\.tasks\.\w+)\[(?P<id>[0-9a-f-]+)\] "
    r"(?P<event>received|succeeded|raised unexpected|retry|ignored|rejected|INTERNAL ERROR)"
)
_WORKER_LOST = re.compile(r"WorkerLostError|Worker exited prematurely")
_DISCARDED = re.compile(r"(?:Discarding revoked task|expired): (?P<name>processor\.tasks\.\w+)\[(?P<id>[0-9a-f-]+)\]")


@dataclass
class WorkerProcess:
    """A ``celery worker`` main process started by the test, its log file and its node name."""

    node: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for Celery's ``ready.`` line; fails at once if the process exits."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker {self.node} exited with {self.process.returncode} before ready:\n{self.log()[-4000:]}"
                )
            return " ready." in self.log()

        wait_until(ready, timeout_s=timeout_s, what=lambda: f"worker {self.node} ready:\n{self.log()[-2000:]}")

    def children(self) -> list[int]:
        """PIDs of the pool's child processes."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)], capture_output=True, text=True)
        return [int(line) for line in out.stdout.split()]

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (warm shutdown) and wait; the whole process group is killed when the grace runs out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def start_worker(
    node: str,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    concurrency: int = 2,
    options: Iterable[str] = (),
    loglevel: str | None = "INFO",
) -> WorkerProcess:
    """Start a worker in its own process group (so that a kill on timeout reaches its children too)."""
    log_path = log_dir / f"worker-{node}.log"
    handle = log_path.open("ab")
    try:
        process = subprocess.Popen(
            celery_worker_command(node, concurrency=concurrency, options=options, loglevel=loglevel),
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        handle.close()
    return WorkerProcess(node, process, log_path)


@dataclass(frozen=True)
class TaskActivity:
    """What the worker logs say about the tasks: per task id its events in order."""

    events: Mapping[str, tuple[str, ...]]
    names: Mapping[str, str]
    worker_lost: int

    @property
    def in_flight(self) -> list[str]:
        """Tasks whose last event is ``received``: running, reserved, or requeued after a lost child."""
        return [task for task, events in self.events.items() if events[-1] == "received"]

    @property
    def failures(self) -> int:
        """Tasks that raised (Celery records a failure)."""
        return sum(events.count("raised unexpected") for events in self.events.values())

    @property
    def redeliveries(self) -> int:
        """Extra deliveries of the same message (a requeue after a lost worker child, a broker redelivery)."""
        return sum(max(0, events.count("received") - 1) for events in self.events.values())

    def count(self, name: str, event: str) -> int:
        return sum(
            events.count(event) for task, events in self.events.items() if self.names[task] == f"processor.tasks.{name}"
        )


def task_activity(workers: Iterable[WorkerProcess]) -> TaskActivity:
    """Parse the task events of every worker log."""
    events: dict[str, list[str]] = defaultdict(list)
    names: dict[str, str] = {}
    lost = 0
    for worker in workers:
        for line in worker.log().splitlines():
            if match := _TASK_EVENT.search(line):
                events[match["id"]].append(match["event"])
                names[match["id"]] = match["name"]
            elif match := _DISCARDED.search(line):
                events[match["id"]].append("discarded")
                names[match["id"]] = match["name"]
            if _WORKER_LOST.search(line) and "Task handler raised error" in line:
                lost += 1
    return TaskActivity({k: tuple(v) for k, v in events.items()}, names, lost)


def log_lines(workers: Iterable[WorkerProcess], phrase: str) -> list[str]:
    """Every line of the worker logs that contains ``phrase``."""
    return [line for worker in workers for line in worker.log().splitlines() if phrase in line]


# -- fake tix-api --------------------------------------------------------------------------------------------------


# -- trees ---------------------------------------------------------------------------------------------------------


def copy_tree(source: Path, target: Path) -> Path:
    """
    Copy a reports tree keeping modification times (old files stay old) and links as links.

    Directories become 0750 and files 0640 (the shared data is read-only; the condenser's tree is not).
    """
    shutil.copytree(source, target, symlinks=True, copy_function=shutil.copy2, dirs_exist_ok=True)
    for directory, _subdirectories, files in os.walk(target):
        os.chmod(directory, 0o750)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink() and path.is_file():
                stat_before = path.stat()
                os.chmod(path, 0o640)
                os.utime(path, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))
    return target


def report_names(directory: Path) -> frozenset[str]:
    """Report candidates left in an installation directory (names ending in ``.json``, not starting with ``.``)."""
    return frozenset(report_candidates(directory)) if directory.is_dir() else frozenset()


def failed_result_files(directory: Path) -> list[Path]:
    """``failed-results/failed-report-*.json`` of an installation, oldest first."""
    folder = directory / "failed-results"
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if FAILED_NAME_RE.match(path.name) and path.is_file()]
    return sorted(found, key=lambda path: tuple(int(part or 0) for part in FAILED_NAME_RE.match(path.name).group(1, 3)))


def rejected_files(directory: Path) -> list[Path]:
    folder = directory / "failed-results" / "rejected"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def invalid_report_names(directory: Path) -> list[str]:
    folder = directory / "invalid-reports"
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


def read_state_file(directory: Path) -> dict[str, Any]:
    path = directory / ".tix-processor-state"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def tree_snapshot(base: Path) -> dict[str, Any]:
    """Names and mtimes of every entry below ``base``, the lock file excluded (it is renewed while idle-free)."""
    snapshot: dict[str, Any] = {}
    for directory, _subdirectories, files in os.walk(base):
        for name in files:
            if name == ".tix-processor.lock":
                continue
            path = Path(directory) / name
            try:
                snapshot[str(path.relative_to(base))] = path.lstat().st_mtime_ns
            except FileNotFoundError:
                continue
    return snapshot


# -- dry-run expectations ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedWindow:
    """One window of the dry run, in processing order."""

    files: tuple[str, ...]
    dispose: tuple[str, ...]
    timestamp: int | None  #: result timestamp; None when not analysable
    reason: str | None  #: not-analysable reason code
    results: dict[str, Any] | None = field(default=None, repr=False)  #: analysis.md §7.7, usage unclamped
    payload: dict[str, Any] | None = field(default=None, repr=False)  #: service.md §5.2, usage clamped

    @property
    def analysable(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class InstallationExpectation:
    """The dry run of one installation: its windows, the report files left over, the unusable files met."""

    user_id: str
    installation_id: str
    windows: tuple[ExpectedWindow, ...]
    leftovers: frozenset[str]
    invalid: tuple[tuple[str, str], ...]  #: (name, reason) of the unusable candidates moved away
    discarded: Mapping[str, int]

    @property
    def key(self) -> str:
        return f"{self.user_id}/{self.installation_id}"

    @property
    def analysable(self) -> list[ExpectedWindow]:
        return [window for window in self.windows if window.analysable]

    def by_timestamp(self) -> dict[int, ExpectedWindow]:
        return {window.timestamp: window for window in self.windows if window.timestamp is not None}


def dry_run_expectations(tree: Path, config: Config, *, scratch: Path) -> dict[str, InstallationExpectation]:
    """
    The expected outcome of processing ``tree`` until no window is left (reliability.md §3), per installation.

    The project's own pure selection (:func:`iter_windows`: successive runs in memory) and analysis run on a
    copy of the tree in ``scratch``, without Celery; the AS resolver and the usage estimator are those of the
    workers' configuration. The service's own dry run (:func:`dry_run_installation`) runs on
    the same copy and must list the same windows — two views of one expectation.
    """
    copy = copy_tree(tree, scratch / "dry-run-tree")
    resolver = resolver_from_config(config)
    expectations: dict[str, InstallationExpectation] = {}
    for installation in installation_dirs(copy):
        directory = installation.path
        candidates = []
        for name in report_candidates(directory):
            try:
                candidates.append(read_report(directory / name))
            except UnusableReport as error:
                candidates.append(error)
        windows: list[ExpectedWindow] = []
        removed: set[str] = set()
        invalid: list[tuple[str, str]] = []
        discarded: Counter[str] = Counter()
        for selection in iter_windows(candidates, now_s=time.time()):
            assert selection.young is None, f"young unusable file in the dry-run tree: {selection.young}"
            removed.update(selection.removed_names)
            invalid.extend((item.name, item.reason) for item in selection.invalid)
            for discard in selection.discards:
                discarded[discard.reason] += len(discard.names)
            window = selection.window
            if window is None:
                continue
            removed.update(window.dispose)
            try:
                result = analyse(window.observations())
            except NotAnalysable as exc:
                windows.append(ExpectedWindow(window.names, window.dispose, None, exc.reason))
                continue
            results = result.as_results_dict()
            info = resolver.resolve(window.ip)
            payload = build_payload(
                results, ip=window.ip, asn=info.asn, as_owner=info.owner, usage_estimator=config.usage_estimator
            )
            windows.append(ExpectedWindow(window.names, window.dispose, int(result.timestamp), None, results, payload))
        expectation = InstallationExpectation(
            installation.user_id,
            installation.installation_id,
            tuple(windows),
            frozenset(report_candidates(directory)) - removed,
            tuple(invalid),
            dict(discarded),
        )
        summary = dry_run_installation(
            dataclasses.replace(config, reports_base_path=copy, task_budget_s=3600),
            installation.user_id,
            installation.installation_id,
            resolver,
        )
        assert "done" == summary.outcome, summary
        service_view = [(w.first, w.last, w.timestamp, w.reason) for w in summary.windows]
        pure_view = [(w.files[0], w.files[-1], w.timestamp, w.reason) for w in windows]
        assert pure_view == service_view, f"dry run and pure selection differ for {expectation.key}"
        expectations[expectation.key] = expectation
    return expectations


# -- comparing payloads --------------------------------------------------------------------------------------------


def payload_differences(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Fields of a posted payload that differ from the expected one beyond the parity tolerances."""
    problems = []
    for key, value in expected.items():
        got = actual.get(key)
        if isinstance(value, float):  # usage, quality and Hurst values: the parity tolerances
            tolerance = HURST_TOL if key.startswith("hurst") else VALUE_TOL
            ok = isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=0, abs_tol=tolerance)
        else:
            ok = got == value and type(got) is type(value)
        if not ok:
            problems.append(f"{key}: posted {got!r}, expected {value!r}")
    if list(actual) != list(expected):
        problems.append(f"key order {list(actual)} != {list(expected)}")
    return problems


def results_differences(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Fields of a results dict (analysis.md §7.7, unclamped usage) that differ beyond the parity tolerances."""
    problems = []
    if actual.get("timestamp") != expected["timestamp"]:
        problems.append(f"timestamp {actual.get('timestamp')!r} != {expected['timestamp']!r}")
    for direction in ("upstream", "downstream"):
        got, want = actual.get(direction) or {}, expected[direction]
        for key in ("usage", "quality"):
            if not math.isclose(got.get(key, math.nan), want[key], rel_tol=0, abs_tol=VALUE_TOL):
                problems.append(f"{direction}.{key}: {got.get(key)!r} != {want[key]!r}")
        for key in ("rs", "wavelet"):
            value = (got.get("hurst") or {}).get(key, math.nan)
            if not math.isclose(value, want["hurst"][key], rel_tol=0, abs_tol=HURST_TOL):
                problems.append(f"{direction}.hurst.{key}: {value!r} != {want['hurst'][key]!r}")
    return problems


# -- the counts of reliability.md §5 -------------------------------------------------------------------------------


@dataclass
class Tally:
    """The §5 counts per installation and in total, plus the problems that break the acceptance."""

    per_installation: dict[str, dict[str, Any]]
    total: dict[str, Any]
    value_mismatches: list[str]

    def as_json(self) -> str:
        return json.dumps({"total": self.total, "installations": self.per_installation}, sort_keys=True)

    def table(self) -> str:
        columns = (
            "expected",
            "analysable",
            "posted",
            "backed_up",
            "rejected",
            "not_analysable",
            "duplicated",
            "unexpected",
            "lost",
            "invalid_reports",
            "leftover_mismatch",
        )
        rows = [("installation", *columns)]
        for key, counts in [*self.per_installation.items(), ("total", self.total)]:
            rows.append((key, *(str(_scalar(counts[column])) for column in columns)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def _scalar(value: Any) -> Any:
    return sum(value.values()) if isinstance(value, Mapping) else value


def tally(
    expectations: Mapping[str, InstallationExpectation],
    accepted: Iterable[Mapping[str, Any]],
    base: Path,
    *,
    activity: TaskActivity | None = None,
) -> Tally:
    """
    Count, per installation, what reached the fake tix-api and what is left in the tree (reliability.md §5).

    A window is identified by (user, installation, result timestamp); ``accepted`` are the fake's stored POSTs.
    Values of every accepted POST are compared with the dry run's payload (``value_mismatches``).
    """
    posts: dict[str, Counter[int]] = defaultdict(Counter)
    payloads: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for record in accepted:
        key = f"{record['user_id']}/{record['installation_id']}"
        timestamp = (record.get("json") or {}).get("timestamp")
        posts[key][timestamp] += 1
        payloads[key, timestamp].append(record["json"])
    per: dict[str, dict[str, Any]] = {}
    mismatches: list[str] = []
    for key in sorted(set(expectations) | set(posts), key=lambda k: tuple(int(p) for p in k.split("/"))):
        expectation = expectations.get(key)
        directory = base / key
        expected_ts = set(expectation.by_timestamp()) if expectation else set()
        na_expected = Counter(w.reason for w in expectation.windows if not w.analysable) if expectation else Counter()
        backed_up = {int(FAILED_NAME_RE.match(p.name)[1]) for p in failed_result_files(directory)}
        rejected = set()
        for path in rejected_files(directory):
            match = FAILED_NAME_RE.match(path.name)
            if match:
                rejected.add(int(match[1]))
        posted = set(posts[key])
        state = read_state_file(directory)
        not_analysable = dict((state.get("counters") or {}).get("not_analysable") or {})
        leftovers = report_names(directory)
        expected_leftovers = expectation.leftovers if expectation else frozenset()
        per[key] = {
            "expected": len(expectation.windows) if expectation else 0,
            "analysable": len(expected_ts),
            "not_analysable_expected": dict(na_expected),
            "posted": len(posted & expected_ts),
            "backed_up": len(backed_up),
            "rejected": len(rejected),
            "not_analysable": not_analysable,
            "duplicated": sum(count - 1 for count in posts[key].values()),
            "unexpected": len(posted - expected_ts),
            "lost": len(expected_ts - posted - backed_up - rejected),
            "invalid_reports": len(invalid_report_names(directory)),
            "leftover_mismatch": len(leftovers ^ expected_leftovers),
            "leftover_extra": sorted(leftovers - expected_leftovers),
            "leftover_missing": sorted(expected_leftovers - leftovers),
        }
        if expectation:
            windows = expectation.by_timestamp()
            for timestamp in sorted(posted & expected_ts):
                for payload in payloads[key, timestamp]:
                    problems = payload_differences(payload, windows[timestamp].payload)
                    if problems:
                        mismatches.append(f"{key} {timestamp}: {'; '.join(problems)}")
    total: dict[str, Any] = {}
    for counts in per.values():
        for name, value in counts.items():
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value
            elif isinstance(value, dict):
                merged = total.setdefault(name, {})
                for reason, count in value.items():
                    merged[reason] = merged.get(reason, 0) + count
    if activity is not None:
        total["task_failures"] = activity.failures
        total["redeliveries"] = activity.redeliveries
    return Tally(per, total, mismatches)


def report(result: Tally, title: str) -> None:
    """Print the summary of reliability.md §5: a table and the same as JSON (shown by ``pytest -s`` or on failure)."""
    print(f"\n== {title} ==\n{result.table()}\n{result.as_json()}")


def assert_accepted(
    result: Tally,
    *,
    duplicates_allowed: int = 0,
    backed_up_allowed: bool = False,
    invalid_reports: int = 0,
    rejected: int = 0,
) -> None:
    """The acceptance of reliability.md §5 after the drain."""
    problems = []
    for key, counts in result.per_installation.items():
        if counts["lost"]:
            problems.append(f"{key}: lost {counts['lost']}")
        if counts["unexpected"]:
            problems.append(f"{key}: unexpected {counts['unexpected']}")
        if counts["leftover_mismatch"]:
            problems.append(
                f"{key}: leftovers differ: extra {counts['leftover_extra']} missing {counts['leftover_missing']}"
            )
        if counts["not_analysable"] != counts["not_analysable_expected"]:
            problems.append(f"{key}: not analysable {counts['not_analysable']} != {counts['not_analysable_expected']}")
        if counts["backed_up"] and not backed_up_allowed:
            problems.append(f"{key}: backed up {counts['backed_up']}")
    if result.total.get("duplicated", 0) > duplicates_allowed:
        problems.append(f"duplicated {result.total['duplicated']} > allowed {duplicates_allowed}")
    if result.total.get("rejected", 0) != rejected:
        problems.append(f"rejected {result.total.get('rejected', 0)} != {rejected}")
    if result.total.get("invalid_reports", 0) != invalid_reports:
        problems.append(f"invalid reports {result.total.get('invalid_reports', 0)} != {invalid_reports}")
    if result.total.get("task_failures", 0):
        problems.append(f"task failures {result.total['task_failures']}")
    problems.extend(result.value_mismatches)
    assert not problems, "\n".join(problems)
