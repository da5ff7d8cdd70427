"""
Shared helpers of the end-to-end benchmarks (``e2e.py``, ``fanout.py``, ``soak.py``); not a benchmark itself.

Each benchmark works in a RabbitMQ virtual host of its own (:class:`Vhost`), created and deleted with
``rabbitmqctl``, because other users run tests on the same broker: the default vhost ``/`` is never used or
purged. Real processes are started with :class:`Worker` (``celery -A processor.tasks worker``), :class:`Beat` and
:func:`start_api` (the stand-in tix-api of ``tests/fake_api.py``); :class:`RssSampler` follows the peak resident
memory of a process tree. Processes are stopped by their own pid only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fake_api import FakeApiProcess, start_fake_api_process  # noqa: E402
from tests.rabbit import (  # noqa: E402
    broker_url,
    create_vhost,
    declare_passive,
    delete_vhost,
    processor_broker_env,
    rabbitmqctl,
)

#: Credentials of the stand-in tix-api's admin account used by every benchmark.
API_USER = "admin"
API_PASSWORD = "secret"


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that the ``with`` blocks stop the processes and delete the vhost."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def emit(document: Mapping[str, Any]) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps(document, sort_keys=False), flush=True)


def log(message: str) -> None:
    """Progress on stderr (the JSON line alone goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- RabbitMQ ----------------------------------------------------------------------------------------------------


@dataclass
class Vhost:
    """A RabbitMQ virtual host of this benchmark run: created with guest's permissions, deleted on exit."""

    name: str

    @classmethod
    def for_bench(cls, kind: str) -> Vhost:
        return cls(f"tix-bench-{kind}-{os.getpid()}")

    def __enter__(self) -> Vhost:
        create_vhost(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            delete_vhost(self.name)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            log(f"could not delete vhost {self.name}: {error}")

    @property
    def url(self) -> str:
        return broker_url(self.name)

    def queue_depth(self, queue: str = "celery") -> int | None:
        """Ready messages in ``queue`` (passive declare); None when the queue does not exist or the broker is away."""
        try:
            return int(declare_passive(self.name, queue, connect_timeout_s=5).message_count)
        except Exception:
            return None

    def consumers(self, queue: str = "celery") -> int:
        """Consumers of ``queue`` (0 when it does not exist yet or the broker is away)."""
        try:
            return int(declare_passive(self.name, queue, connect_timeout_s=5).consumer_count)
        except Exception:
            return 0

    def list_queues(self) -> dict[str, tuple[int, int]]:
        """``rabbitmqctl list_queues``: queue name → (ready, unacknowledged)."""
        out = rabbitmqctl("list_queues", "-q", "-p", self.name, "name", "messages_ready", "messages_unacknowledged")
        queues: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                queues[parts[0]] = (int(parts[1]), int(parts[2]))
        return queues

    def purge(self, queue: str = "celery") -> None:
        rabbitmqctl("purge_queue", "-p", self.name, queue)


def broker_in_use_by_others() -> list[str]:
    """Command lines of celery or pytest processes not started by this benchmark (before restarting the broker)."""
    me = psutil.Process()
    mine = {me.pid, *(child.pid for child in me.children(recursive=True))}
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] in mine or "bench/" in cmdline:
            continue
        if re.search(r"\bcelery\b|\bpytest\b", cmdline):
            found.append(f"{process.info['pid']} {cmdline[:120]}")
    return found


# -- the processor's environment and processes ---------------------------------------------------------------------


def processor_env(
    *,
    reports: Path,
    vhost: Vhost,
    api_port: int | None,
    period_min: int = 10,
    log_level: str = "INFO",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker or beat of this benchmark (service spec §1), on top of ours."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "PROCESSOR_TYPE": "WORKER",
            "TIX_REPORTS_BASE_PATH": str(reports),
            "TIX_PROCESSING_PERIOD": str(period_min),
            **processor_broker_env(vhost.name),
            "TIX_API_HOST": "127.0.0.1",
            "TIX_API_USER": API_USER,
            "TIX_API_PASSWORD": API_PASSWORD,
            "CELERY_LOG_LEVEL": log_level,
        }
    )
    if api_port is not None:
        env["TIX_API_PORT"] = str(api_port)
    for name in ("TIX_API_SSL",):
        env.pop(name, None)
    env.update(extra or {})
    return env


def _wait_for_line(path: Path, pattern: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and regex.search(path.read_text(errors="replace")):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}; see {path}")
        time.sleep(0.1)
    raise RuntimeError(f"{pattern!r} did not appear in {path} within {timeout_s} s")


def stop_process(process: subprocess.Popen[Any], *, grace_s: float = 20.0) -> None:
    """SIGTERM ``process`` (by its pid), SIGKILL it after ``grace_s``; then its leftover children by pid."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        with suppress(psutil.NoSuchProcess):
            child.kill()


@dataclass
class Worker:
    """``celery -A processor.tasks worker -c N`` as a separate process, its output in ``log_path``."""

    env: dict[str, str]
    log_path: Path
    concurrency: int = 2
    name: str = "bench"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, *, timeout_s: float = 60.0) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "processor.tasks",
            "worker",
            "-c",
            str(self.concurrency),
            "-n",
            f"{self.name}-{os.getpid()}@%h",
            "--loglevel",
            self.env.get("CELERY_LOG_LEVEL", "INFO"),
            "--without-gossip",
            "--without-mingle",
        ]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self.wait_consuming(timeout_s=timeout_s)
        except BaseException:
            self.stop(grace_s=5.0)
            raise
        return self

    def wait_consuming(self, *, timeout_s: float = 60.0) -> None:
        """Wait until the ``celery`` queue of the worker's vhost has a consumer (works at any log level)."""
        vhost = Vhost(self.env["TIX_RABBITMQ_VHOST"])
        deadline = time.monotonic() + timeout_s
        while vhost.consumers() < 1:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start consuming within {timeout_s} s; see {self.log_path}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []

    def stop(self, *, grace_s: float = 30.0) -> None:
        if self.process is not None:
            stop_process(self.process, grace_s=grace_s)


@dataclass
class Beat:
    """``celery -A processor.tasks beat`` as a separate process (schedule file in ``schedule_dir``)."""

    env: dict[str, str]
    log_path: Path
    schedule_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, *, timeout_s: float = 60.0) -> Beat:
        env = dict(self.env, PROCESSOR_TYPE="BEAT", CELERY_BEAT_SCHEDULE_DIR=str(self.schedule_dir))
        self.schedule_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "celery", "-A", "processor.tasks", "beat", "--loglevel", "INFO", "--pidfile="]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for_line(self.log_path, r"beat: Starting", self.process, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace_s=10.0)


#: The stand-in tix-api process handle (``records()`` over HTTP, ``logged_records()`` from its log file).
Api = FakeApiProcess


def start_api(directory: Path, *, mode: str = "ok") -> Api:
    """Start ``tests/fake_api.py`` on a free port of 127.0.0.1 with the benchmark's admin credentials."""
    directory.mkdir(parents=True, exist_ok=True)
    return start_fake_api_process(directory, admin_user=API_USER, admin_password=API_PASSWORD, mode=mode)


# -- the Celery tasks in this process ------------------------------------------------------------------------------


def import_tasks(env: Mapping[str, str]) -> Any:
    """Import :mod:`processor.tasks` in this process with ``env`` (its configuration is read once, at import)."""
    for name in list(os.environ):
        if name.startswith("TIX_") or name in ("PROCESSOR_TYPE", "CELERY_LOG_LEVEL"):
            del os.environ[name]
    os.environ.update({key: value for key, value in env.items() if key.startswith(("TIX_", "PROCESSOR_", "CELERY_"))})
    if "processor.tasks" in sys.modules:
        raise RuntimeError("processor.tasks is already imported with another configuration")
    import processor.tasks as tasks

    return tasks


def send_fanout(vhost: Vhost, reports: Path, *, expires_s: int = 540) -> None:
    """Publish one ``processor.tasks.process_users_data(<reports>)`` message, as the beat does."""
    from celery import Celery

    app = Celery("bench-publisher", broker=vhost.url)
    app.conf.update(task_serializer="json", broker_transport_options={"confirm_publish": True})
    try:
        app.send_task("processor.tasks.process_users_data", args=(str(reports),), expires=expires_s)
    finally:
        app.close()


# -- memory --------------------------------------------------------------------------------------------------------


class RssSampler:
    """
    Samples the resident set size of a process and its children every ``interval_s`` in a thread (the list of
    children is refreshed once a second, to keep the sampler's own CPU use small).

    ``peaks`` maps pid → (role, peak RSS in bytes); the role is ``main`` for the root and ``child`` otherwise.
    """

    def __init__(self, root_pid: int, *, interval_s: float = 0.2) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peaks: dict[int, tuple[str, int]] = {}
        self.samples = 0
        self._processes: list[tuple[str, psutil.Process]] = []
        self._listed_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        now = time.monotonic()
        if now - self._listed_at >= 1.0 or not self._processes:
            try:
                root = psutil.Process(self.root_pid)
                self._processes = [("main", root)] + [("child", child) for child in root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            self._listed_at = now
        for role, process in self._processes:
            try:
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            old = self.peaks.get(process.pid, (role, 0))[1]
            self.peaks[process.pid] = (role, max(old, rss))
        self.samples += 1

    def summary(self) -> dict[str, Any]:
        """Peak RSS in MiB: of the main process, the largest of any child, and the number of processes seen."""
        main = [rss for role, rss in self.peaks.values() if role == "main"]
        children = [rss for role, rss in self.peaks.values() if role == "child"]
        return {
            "main_peak_mib": round(max(main, default=0) / 2**20, 1),
            "child_peak_mib": round(max(children, default=0) / 2**20, 1),
            "processes_seen": len(self.peaks),
            "samples": self.samples,
        }


# -- CPU -----------------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> dict[str, float]:
    """
    CPU seconds (user + system) used so far by process ``pid`` itself and by its children, live or reaped.

    Children that ended count once reaped by ``pid`` (a Celery pool replaces its processes now and then).
    """
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        children = times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            children += child_times.user + child_times.system
        return {"self": times.user + times.system, "children": children}
    except psutil.NoSuchProcess:
        return {"self": 0.0, "children": 0.0}


def broker_pid() -> int | None:
    """The pid of the local RabbitMQ node (``beam.smp``), to read its CPU time; None if not found."""
    for process in psutil.process_iter(["pid", "name"]):
        if process.info["name"] == "beam.smp":
            return int(process.info["pid"])
    return None


class CpuMeter:
    """
    CPU seconds used by a set of named processes between :meth:`start` and :meth:`stop`.

    A name starting with ``worker`` is split into ``<name>_main`` and ``<name>_children``; ``bench`` (this
    process) counts itself only; the others count themselves and their children.
    """

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.before: dict[str, dict[str, float]] = {}
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wall = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        for name, pid in self.pids.items():
            now, then = cpu_seconds(pid), self.before[name]
            if name.startswith("worker"):
                self.used[f"{name}_main"] = round(now["self"] - then["self"], 2)
                self.used[f"{name}_children"] = round(now["children"] - then["children"], 2)
            elif name == "bench":  # its children are the processes measured under their own names
                self.used[name] = round(now["self"] - then["self"], 2)
            else:
                self.used[name] = round(now["self"] + now["children"] - then["self"] - then["children"], 2)
        self.used["wall"] = round(time.monotonic() - self._wall, 2)
        return self.used


# -- worker logs ---------------------------------------------------------------------------------------------------


def count_lines(path: Path, needle: str) -> int:
    """How many lines of ``path`` contain ``needle`` (0 if the file is missing)."""
    try:
        with path.open("rb") as handle:
            raw = needle.encode()
            return sum(1 for line in handle if raw in line)
    except FileNotFoundError:
        return 0


class LogTail:
    """Counts lines containing given needles in a growing log file, reading only what was appended since."""

    def __init__(self, path: Path, *needles: str) -> None:
        self.path = path
        self.needles = [needle.encode() for needle in needles]
        self.counts = dict.fromkeys(needles, 0)
        self._offset = 0
        self._partial = b""

    def update(self) -> dict[str, int]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.counts
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for needle, name in zip(self.needles, self.counts, strict=True):
            self.counts[name] += sum(1 for line in lines if needle in line)
        return self.counts


@contextmanager
def cleanup_stack() -> Iterator[list[Any]]:
    """A list of objects with ``stop()``; stopped in reverse order on exit, errors logged, never raised."""
    items: list[Any] = []
    try:
        yield items
    finally:
        for item in reversed(items):
            try:
                item.stop()
            except Exception as error:
                log(f"cleanup of {item!r} failed: {error}")
