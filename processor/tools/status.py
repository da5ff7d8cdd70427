"""Read-only status of the reports tree: backlog, next-window readiness, failed results, last delivery and lock.

``python -m processor status`` looks at every installation directory below the reports base path and tells, per
installation, what a run of the service would find there now; it never takes the lock, never writes the state file
and never moves, deletes or creates a file (the window selection it uses is the pure one of windows spec §3–§7).

Design choices (documented for the operator):

* ``--reports`` defaults to ``TIX_REPORTS_BASE_PATH`` (empty or unset: ``/tmp/reports``, as ``Config.from_env``).
  Only that variable is read, so that ``status`` still works while an unrelated variable is invalid — which is
  when an operator most needs it.
* Report files that the next run would remove first (``last_window.dispose`` of the state file still present,
  the recovery of windows spec §9.2) are counted as ``awaiting_disposal`` and left out of the backlog and of the
  window selection.
* A lock whose content cannot be parsed expires, as for the lock itself (windows spec §8), at its mtime plus the
  default lease of 120 s (``TIX_LOCK_LEASE_SECONDS`` is not read). A lock is *stale* when its expiry has passed,
  or when its holder names this host and its process no longer exists.
* The state file only remembers the last window: the last *delivery* is known only while that window's outcome is
  ``posted``. The last window's age is reported for every outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import stat
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from processor.delivery.failed_results import FAILED_RESULTS_DIR, REJECTED_DIR, list_failed_results
from processor.errors import UnusableReport
from processor.installation.lock import DEFAULT_LEASE_S, LOCK_NAME, Holder, pid_alive
from processor.installation.state import STATE_NAME, LastWindow, State, StateFormatError
from processor.reports.files import is_young, read_report, report_candidates
from processor.reports.tree import InstallationDir, installation_dirs
from processor.reports.windows import Candidate, Selection, iter_windows

EXIT_OK = 0  #: The status was printed.
EXIT_USAGE = 2  #: ``--reports`` is not a readable directory; nothing was printed on stdout.

#: Base path when ``TIX_REPORTS_BASE_PATH`` is unset or empty (service.md §1, same rule as ``Config.from_env``).
DEFAULT_REPORTS_BASE = Path("/tmp/reports")

#: Quarantine of unusable report files inside an installation (reports spec §1.2, change D12).
INVALID_REPORTS_DIR = "invalid-reports"

#: Largest number of bytes of a lock file read (a real lock holds about 150).
MAX_LOCK_BYTES = 65536

#: Prefix of every Prometheus metric name.
METRIC_PREFIX = "tix_processor_"

Readiness = Literal["ready", "waiting", "blocked_young", "error"]
READINESS: tuple[Readiness, ...] = ("ready", "waiting", "blocked_young", "error")
StateCondition = Literal["missing", "ok", "corrupt", "unreadable"]


def default_reports_base(env: Mapping[str, str]) -> Path:
    """``TIX_REPORTS_BASE_PATH`` from ``env``, or :data:`DEFAULT_REPORTS_BASE` when unset or empty."""
    return Path(env.get("TIX_REPORTS_BASE_PATH") or DEFAULT_REPORTS_BASE)


# --------------------------------------------------------------------------------------------------------------
# Reading one installation, without side effects
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockInfo:
    """The holder named by an installation's lock file, as read (never taken)."""

    host: str | None  #: None when the content is empty or not a lock (holder died while writing it)
    pid: int | None
    acquired_at: float | None  #: Unix seconds
    expires_at: float  #: Unix seconds; mtime + default lease for an unparseable lock
    stale: bool  #: expired, or its holder is a process of this host that no longer exists
    stale_reason: Literal["expired", "dead_process"] | None

    def as_dict(self, now_s: float) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "expires_in_s": round(self.expires_at - now_s, 3),
            "stale": self.stale,
            "stale_reason": self.stale_reason,
        }


def read_lock_holder(directory: Path, *, now_s: float, host: str | None = None) -> LockInfo | None:
    """
    Read the lock file of an installation directory without taking, renewing or removing it.

    Parameters
    ----------
    directory : Path
        The installation directory.
    now_s : float
        Current time, Unix seconds.
    host : str, optional
        This machine's host name (default ``socket.gethostname()``): a holder of this host whose pid no longer
        exists is stale at once, as the lock's own takeover rule says (windows spec §8).

    Returns
    -------
    LockInfo or None
        None when there is no lock file (or it is not a regular file).

    Raises
    ------
    OSError
        An I/O error other than the file being absent.
    """
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", None):  # a symbolic link: not a lock the processor wrote
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        data = handle.read(MAX_LOCK_BYTES)
    holder = Holder.from_json(data)
    if holder is None:
        expires_at = info.st_mtime + DEFAULT_LEASE_S
        expired = now_s > expires_at
        return LockInfo(None, None, None, expires_at, expired, "expired" if expired else None)
    this_host = host if host is not None else socket.gethostname()
    reason: Literal["expired", "dead_process"] | None = None
    if now_s > holder.expires_at:
        reason = "expired"
    elif holder.host == this_host and not pid_alive(holder.pid):
        reason = "dead_process"
    return LockInfo(holder.host, holder.pid, holder.acquired_at, holder.expires_at, reason is not None, reason)


def peek_state(directory: Path) -> tuple[StateCondition, State | None]:
    """
    Parse the state file of an installation directory, read-only.

    Unlike :func:`processor.installation.state.read_state`, a corrupt file is left where it is (the next run sets it
    aside); it comes back as ``("corrupt", None)``. A missing file is ``("missing", None)``, an unreadable one
    ``("unreadable", None)``.
    """
    try:
        fd = os.open(directory / STATE_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return "missing", None
    except OSError:
        return "unreadable", None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
    except OSError:
        return "unreadable", None
    try:
        return "ok", State.from_json(data)
    except StateFormatError:
        return "corrupt", None


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """Entries of ``directory``; empty when it is missing or not a real directory (a link is not followed)."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return []
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def count_failed_results(directory: Path) -> tuple[int, int]:
    """
    Failed results of an installation directory: ``(waiting to be re-sent, rejected)``.

    The first are the regular files of ``failed-results/`` named ``failed-report-<ts>[-<n>].json`` (service.md
    §6.2; temporary files and other names are ignored); the second every entry of ``failed-results/rejected/``.
    """
    failed_dir = directory / FAILED_RESULTS_DIR
    try:
        real_dir = stat.S_ISDIR(os.lstat(failed_dir).st_mode)
    except FileNotFoundError:
        real_dir = False
    # The same listing the re-send pass uses (service.md §6.2), only for a real directory: no link is followed.
    failed = len(list_failed_results(failed_dir)) if real_dir else 0
    return failed, len(_entries(failed_dir / REJECTED_DIR))


def count_invalid_reports(directory: Path) -> int:
    """Entries of ``invalid-reports/``: unusable report files and quarantined windows kept for inspection."""
    return len(_entries(directory / INVALID_REPORTS_DIR))


@dataclass(frozen=True, slots=True)
class NextWindow:
    """The window the next run would process first."""

    files: int
    observations: int  #: Q(P), duplicates included
    first: str
    last: str
    id: str
    attempts: int  #: times this window was started without being recorded (3 → consumed as repeated_failure)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "observations": self.observations,
            "first": self.first,
            "last": self.last,
            "id": self.id,
            "attempts": self.attempts,
        }


@dataclass(frozen=True, slots=True)
class InstallationStatus:
    """What a run of the service would find in one installation directory now."""

    user: int
    installation: int
    path: Path
    readiness: Readiness
    pending_files: int  #: report candidates, those awaiting disposal left out
    pending_observations: int  #: records of the usable ones (decoded message length / 45)
    unusable_young: int  #: unusable candidates modified less than 60 s ago (may still be being written)
    unusable_old: int  #: unusable candidates 60 s old or more
    next_window: NextWindow | None
    windows_ready: int  #: complete windows one run would process in a row (time budget ignored)
    would_quarantine: int  #: old unusable files those selections would move to invalid-reports/
    would_discard: int  #: report files those selections would delete by the gap and IP rules (windows spec §3)
    young_file: str | None  #: the young unusable file that ends the scan (readiness blocked_young)
    awaiting_disposal: int  #: files of the last window still to be removed by the next run's recovery
    failed_results: int
    rejected_results: int
    invalid_reports: int
    state: StateCondition
    last_window: LastWindow | None
    attempt_count: int | None  #: count of the state's current attempt, if any
    counters: dict[str, Any] | None
    lock: LockInfo | None
    error: str | None  #: an I/O error that stopped the look at this installation

    @property
    def last_window_at_s(self) -> float | None:
        """Unix seconds of ``last_window.finished_at``, None when absent or unparseable."""
        return None if self.last_window is None else parse_iso_s(self.last_window.finished_at)

    @property
    def last_delivery_at_s(self) -> float | None:
        """Unix seconds of the last posted window, known only while the last window was posted."""
        if self.last_window is None or self.last_window.outcome != "posted":
            return None
        return self.last_window_at_s

    def as_dict(self, now_s: float) -> dict[str, Any]:
        """The JSON object of this installation."""
        last_window = None
        if self.last_window is not None:
            at_s = self.last_window_at_s
            last_window = {
                "outcome": self.last_window.outcome,
                "reason": self.last_window.reason,
                "timestamp": self.last_window.timestamp,
                "finished_at": self.last_window.finished_at,
                "age_s": _age(now_s, at_s),
                "files": len(self.last_window.files),
            }
        delivery_s = self.last_delivery_at_s
        last_delivery = None
        if delivery_s is not None and self.last_window is not None:
            last_delivery = {
                "finished_at": self.last_window.finished_at,
                "timestamp": self.last_window.timestamp,
                "age_s": _age(now_s, delivery_s),
            }
        return {
            "user": self.user,
            "installation": self.installation,
            "path": str(self.path),
            "readiness": self.readiness,
            "pending_report_files": self.pending_files,
            "pending_observations": self.pending_observations,
            "unusable_reports": {"young": self.unusable_young, "old": self.unusable_old},
            "next_window": None if self.next_window is None else self.next_window.as_dict(),
            "windows_ready": self.windows_ready,
            "would_quarantine": self.would_quarantine,
            "would_discard": self.would_discard,
            "young_file": self.young_file,
            "awaiting_disposal": self.awaiting_disposal,
            "failed_results": self.failed_results,
            "rejected_results": self.rejected_results,
            "invalid_reports": self.invalid_reports,
            "state": self.state,
            "last_window": last_window,
            "last_delivery": last_delivery,
            "attempt_count": self.attempt_count,
            "counters": self.counters,
            "lock": None if self.lock is None else self.lock.as_dict(now_s),
            "error": self.error,
        }


def parse_iso_s(text: str) -> float | None:
    """Unix seconds of an ISO-8601 time (naive times count as UTC), or None when it does not parse."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _age(now_s: float, at_s: float | None) -> float | None:
    return None if at_s is None else round(now_s - at_s, 3)


def _load(directory: Path, names: Iterable[str]) -> tuple[list[Candidate], str | None]:
    """Read the candidates in name order (a vanished one is skipped); stop at the first I/O error."""
    loaded: list[Candidate] = []
    for name in names:
        try:
            loaded.append(read_report(directory / name))
        except UnusableReport as error:
            loaded.append(error)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return loaded, f"{name}: {exc.strerror or exc}"
    return loaded, None


def installation_status(installation: InstallationDir, *, now_s: float, host: str | None = None) -> InstallationStatus:
    """
    Look at one installation directory as the next run would, without any side effect.

    Every candidate is read once with :func:`processor.reports.files.read_report` (JSON parse and base64 decode;
    the records are a zero-copy view, so the count is the decoded length / 45). The pure selection of
    :func:`processor.reports.windows.iter_windows` with ``now_s`` then tells the readiness of the next window,
    how many windows one run would process in a row, and which old unusable files it would quarantine.

    Parameters
    ----------
    installation : InstallationDir
        The directory, as :func:`processor.reports.tree.installation_dirs` lists it.
    now_s : float
        Current time, Unix seconds: the young/old rule of unusable files (60 s), ages and lock expiry.
    host : str, optional
        This machine's host name, for the dead-holder rule of the lock (default ``socket.gethostname()``).
    """
    directory = installation.path
    condition, state = peek_state(directory)
    leftover: set[str] = set()
    error: str | None = None
    names: list[str] = []
    try:
        names = report_candidates(directory)
    except OSError as exc:
        error = f"listing: {exc.strerror or exc}"
    if state is not None and state.last_window is not None:
        leftover = set(state.last_window.dispose) & set(names)
    candidates: list[Candidate] = []
    if error is None:
        candidates, error = _load(directory, (name for name in names if name not in leftover))

    pending_observations = sum(c.count for c in candidates if not isinstance(c, UnusableReport))
    unusable = [c for c in candidates if isinstance(c, UnusableReport)]
    young = sum(1 for c in unusable if is_young(c, now_s))

    readiness: Readiness = "error"
    next_window: NextWindow | None = None
    windows_ready = 0
    would_quarantine = 0
    would_discard = 0
    young_file: str | None = None
    if error is None:
        selections: list[Selection] = list(iter_windows(candidates, now_s=now_s))
        first = selections[0]
        windows_ready = sum(1 for selection in selections if selection.window is not None)
        would_quarantine = sum(len(selection.invalid) for selection in selections)
        would_discard = sum(len(selection.discarded_names) for selection in selections)
        if first.window is not None:
            readiness = "ready"
            window = first.window
            next_window = NextWindow(
                files=len(window.reports),
                observations=window.count,
                first=window.first.name,
                last=window.last.name,
                id=window.id,
                attempts=state.attempts(window.id) if state is not None else 0,
            )
        elif first.young is not None:
            readiness = "blocked_young"
            young_file = first.young.name
        else:
            readiness = "waiting"

    failed, rejected = count_failed_results(directory)
    try:
        lock = read_lock_holder(directory, now_s=now_s, host=host)
    except OSError as exc:
        lock = None
        error = error or f"lock: {exc.strerror or exc}"
    return InstallationStatus(
        user=installation.user,
        installation=installation.installation,
        path=directory,
        readiness=readiness,
        pending_files=len(names) - len(leftover),
        pending_observations=pending_observations,
        unusable_young=young,
        unusable_old=len(unusable) - young,
        next_window=next_window,
        windows_ready=windows_ready,
        would_quarantine=would_quarantine,
        would_discard=would_discard,
        young_file=young_file,
        awaiting_disposal=len(leftover),
        failed_results=failed,
        rejected_results=rejected,
        invalid_reports=count_invalid_reports(directory),
        state=condition,
        last_window=state.last_window if state is not None else None,
        attempt_count=state.attempt.count if state is not None and state.attempt is not None else None,
        counters=state.counters.as_dict() if state is not None else None,
        lock=lock,
        error=error,
    )


# --------------------------------------------------------------------------------------------------------------
# The whole tree
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeStatus:
    """The status of every installation below a base path, taken at ``now_s``."""

    base: Path
    now_s: float  #: Unix seconds the look was taken at
    installations: tuple[InstallationStatus, ...]
    duration_s: float  #: wall-clock time the look took, seconds

    def readiness_counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(READINESS, 0)
        for item in self.installations:
            counts[item.readiness] += 1
        return counts

    def total(self, attribute: str) -> int:
        """Sum of one integer attribute of :class:`InstallationStatus` over the installations."""
        return sum(getattr(item, attribute) for item in self.installations)

    def latest_delivery(self) -> InstallationStatus | None:
        """The installation whose last posted window is the most recent, None when no delivery is known."""
        known = [item for item in self.installations if item.last_delivery_at_s is not None]
        return max(known, key=lambda item: item.last_delivery_at_s or 0.0) if known else None

    def summary(self) -> dict[str, Any]:
        """The ``summary`` object of the JSON document."""
        latest = self.latest_delivery()
        last_delivery = None
        if latest is not None and latest.last_window is not None:
            last_delivery = {
                "user": latest.user,
                "installation": latest.installation,
                "finished_at": latest.last_window.finished_at,
                "timestamp": latest.last_window.timestamp,
                "age_s": _age(self.now_s, latest.last_delivery_at_s),
            }
        return {
            "reports": str(self.base),
            "generated_at": datetime.fromtimestamp(self.now_s, tz=UTC).isoformat(),
            "installations": len(self.installations),
            "readiness": self.readiness_counts(),
            "pending_report_files": self.total("pending_files"),
            "pending_observations": self.total("pending_observations"),
            "windows_ready": self.total("windows_ready"),
            "would_quarantine": self.total("would_quarantine"),
            "would_discard": self.total("would_discard"),
            "awaiting_disposal": self.total("awaiting_disposal"),
            "failed_results": self.total("failed_results"),
            "rejected_results": self.total("rejected_results"),
            "invalid_reports": self.total("invalid_reports"),
            "corrupt_states": sum(1 for item in self.installations if item.state == "corrupt"),
            "locks": sum(1 for item in self.installations if item.lock is not None),
            "stale_locks": sum(1 for item in self.installations if item.lock is not None and item.lock.stale),
            "last_delivery": last_delivery,
            "duration_s": round(self.duration_s, 3),
        }

    def as_dict(self) -> dict[str, Any]:
        """The JSON document ``{"installations": [...], "summary": {...}}``."""
        return {
            "installations": [item.as_dict(self.now_s) for item in self.installations],
            "summary": self.summary(),
        }


def tree_status(base: Path, *, now_s: float | None = None, host: str | None = None) -> TreeStatus:
    """
    Look at every installation below ``base`` (in numeric user, installation order), read-only.

    Raises ``OSError`` when ``base`` itself cannot be listed; an unreadable installation is reported with
    readiness ``error`` instead.
    """
    began = time.perf_counter()
    now = time.time() if now_s is None else now_s
    items = tuple(installation_status(item, now_s=now, host=host) for item in installation_dirs(base))
    return TreeStatus(base=base, now_s=now, installations=items, duration_s=time.perf_counter() - began)


# --------------------------------------------------------------------------------------------------------------
# Output: table, JSON, Prometheus text format
# --------------------------------------------------------------------------------------------------------------


def age_text(age_s: float | None) -> str:
    """A short human age: ``42s``, ``3m12s``, ``2h05m``, ``3d04h``; ``-`` when unknown."""
    if age_s is None or not math.isfinite(age_s):
        return "-"
    seconds = max(0, int(age_s))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _last_window_cell(item: InstallationStatus, now_s: float) -> str:
    if item.state == "corrupt":
        return "state corrupt"
    if item.state == "unreadable":
        return "state unreadable"
    if item.last_window is None:
        return "-"
    outcome: str = item.last_window.outcome
    if item.last_window.reason:
        outcome += f"({item.last_window.reason})"
    at_s = item.last_window_at_s
    return f"{outcome} {age_text(None if at_s is None else now_s - at_s)} ago"


def _lock_cell(lock: LockInfo | None) -> str:
    if lock is None:
        return "-"
    who = "unknown" if lock.host is None else f"{lock.host}:{lock.pid}"
    return f"{who} stale" if lock.stale else who


def _readiness_cell(item: InstallationStatus) -> str:
    if item.readiness == "ready" and item.next_window is not None and item.next_window.attempts:
        return f"ready(attempt {item.next_window.attempts})"
    return item.readiness


TABLE_HEADER = ("USER", "INST", "NEXT", "FILES", "OBS", "WIN", "QUAR", "FAILED", "INVALID", "LAST WINDOW", "LOCK")
#: Columns aligned to the right (numbers).
_RIGHT = frozenset({"USER", "INST", "FILES", "OBS", "WIN", "QUAR", "FAILED", "INVALID"})


def summary_line(status: TreeStatus) -> str:
    """One line with the totals, e.g. for the end of the table or a log."""
    counts = status.readiness_counts()
    summary = status.summary()
    latest = status.latest_delivery()
    if latest is None:
        delivery = "no delivery known"
    else:
        delivery = (
            f"last delivery {age_text(summary['last_delivery']['age_s'])} ago "
            f"(user {latest.user} installation {latest.installation})"
        )
    return (
        f"{len(status.installations)} installations: {counts['ready']} ready, {counts['waiting']} waiting, "
        f"{counts['blocked_young']} blocked_young, {counts['error']} error; "
        f"{summary['pending_report_files']} pending files, {summary['pending_observations']} observations, "
        f"{summary['windows_ready']} windows ready; {summary['failed_results']} failed results, "
        f"{summary['invalid_reports']} invalid reports, {summary['would_quarantine']} to quarantine, "
        f"{summary['would_discard']} to discard; "
        f"{summary['locks']} locks ({summary['stale_locks']} stale); {delivery}"
    )


def render_table(status: TreeStatus, *, tty: bool = False) -> str:
    """
    A plain-text table, one row per installation, then the summary line; ``tty`` makes the header bold.

    Columns: NEXT is the readiness of the next window, WIN the windows one run would process, QUAR the old
    unusable files it would quarantine, FAILED the failed results waiting to be re-sent, INVALID the entries of
    ``invalid-reports/``, LAST WINDOW the outcome and age of the last recorded window, LOCK the holder.
    """
    rows = [
        (
            str(item.user),
            str(item.installation),
            _readiness_cell(item) + (f" [{item.error}]" if item.error else ""),
            str(item.pending_files),
            str(item.pending_observations),
            str(item.windows_ready),
            str(item.would_quarantine),
            str(item.failed_results),
            str(item.invalid_reports),
            _last_window_cell(item, status.now_s),
            _lock_cell(item.lock),
        )
        for item in status.installations
    ]
    widths = [max([len(title)] + [len(row[i]) for row in rows]) for i, title in enumerate(TABLE_HEADER)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if title in _RIGHT else cell.ljust(width)
            for cell, width, title in zip(cells, widths, TABLE_HEADER, strict=True)
        ]
        return "  ".join(parts).rstrip()

    header = line(TABLE_HEADER)
    if tty:
        header = f"\x1b[1m{header}\x1b[0m"
    return "\n".join([header, *(line(row) for row in rows), summary_line(status)]) + "\n"


def render_json(status: TreeStatus) -> str:
    """One JSON document ``{"installations": [...], "summary": {...}}``, newline-terminated."""
    return json.dumps(status.as_dict(), indent=1) + "\n"


def _metric_value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(round(value, 3))


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Families:
    """Metric families in the Prometheus text exposition format 0.0.4, in the order they were declared."""

    def __init__(self) -> None:
        self._order: list[str] = []
        self._meta: dict[str, tuple[str, str]] = {}
        self._samples: dict[str, list[str]] = {}

    def declare(self, name: str, kind: str, help_text: str) -> None:
        name = METRIC_PREFIX + name
        self._order.append(name)
        self._meta[name] = (kind, help_text)
        self._samples[name] = []

    def add(self, name: str, value: float | int | bool, **labels: str) -> None:
        name = METRIC_PREFIX + name
        text = ",".join(f'{key}="{_label_value(label)}"' for key, label in labels.items())
        self._samples[name].append(
            f"{name}{{{text}}} {_metric_value(value)}" if labels else f"{name} {_metric_value(value)}"
        )

    def render(self) -> str:
        lines: list[str] = []
        for name in self._order:
            kind, help_text = self._meta[name]
            lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2)}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(self._samples[name])
        return "\n".join(lines) + "\n"


def render_prometheus(status: TreeStatus) -> str:
    """
    The status in the Prometheus text format, for a node-exporter textfile collector.

    Per-installation families carry the labels ``user`` and ``installation``; tree totals are separate families
    named ``tix_processor_tree_*`` (and ``tix_processor_installations`` by readiness), so that no family mixes
    label sets. Ages are seconds at the time of the look; an age that is not known has no sample.
    """
    families = _Families()
    per_installation = (
        ("pending_report_files", "gauge", "Report files waiting in the installation directory."),
        ("pending_observations", "gauge", "Observation records in the usable pending report files."),
        ("window_ready", "gauge", "1 when a complete window can be processed now, else 0."),
        ("window_blocked_young", "gauge", "1 when a young unusable report file ends the window scan, else 0."),
        ("ready_windows", "gauge", "Complete windows one run would process in a row."),
        ("unusable_report_files", "gauge", "Pending report files that cannot be used (young or old)."),
        ("would_quarantine", "gauge", "Old unusable report files the next run would move to invalid-reports."),
        ("would_discard", "gauge", "Report files the next run would delete by the gap and IP-change rules."),
        ("failed_results", "gauge", "Failed results waiting to be re-sent."),
        ("rejected_results", "gauge", "Failed results the API rejected (failed-results/rejected)."),
        ("invalid_reports", "gauge", "Entries of invalid-reports (unusable or quarantined report files)."),
        ("last_delivery_age_seconds", "gauge", "Seconds since the last window was posted (absent if unknown)."),
        ("last_delivery_result_timestamp_seconds", "gauge", "Result timestamp of the last posted window, Unix s."),
        ("last_window_age_seconds", "gauge", "Seconds since the last window was recorded, whatever its outcome."),
        ("state_corrupt", "gauge", "1 when the state file cannot be parsed (the next run sets it aside)."),
        ("lock_held", "gauge", "1 when a lock file names a holder that is not stale, else 0."),
        ("lock_stale", "gauge", "1 when the lock file is expired or its holder process is gone, else 0."),
        ("windows_total", "counter", "Windows recorded as done since the state file was created, by outcome."),
    )
    for name, kind, help_text in per_installation:
        families.declare(name, kind, help_text)
    for item in status.installations:
        labels = {"user": str(item.user), "installation": str(item.installation)}
        families.add("pending_report_files", item.pending_files, **labels)
        families.add("pending_observations", item.pending_observations, **labels)
        families.add("window_ready", item.readiness == "ready", **labels)
        families.add("window_blocked_young", item.readiness == "blocked_young", **labels)
        families.add("ready_windows", item.windows_ready, **labels)
        families.add("unusable_report_files", item.unusable_young + item.unusable_old, **labels)
        families.add("would_quarantine", item.would_quarantine, **labels)
        families.add("would_discard", item.would_discard, **labels)
        families.add("failed_results", item.failed_results, **labels)
        families.add("rejected_results", item.rejected_results, **labels)
        families.add("invalid_reports", item.invalid_reports, **labels)
        delivery_s = item.last_delivery_at_s
        if delivery_s is not None:
            families.add("last_delivery_age_seconds", status.now_s - delivery_s, **labels)
            if item.last_window is not None and item.last_window.timestamp is not None:
                families.add("last_delivery_result_timestamp_seconds", item.last_window.timestamp, **labels)
        window_s = item.last_window_at_s
        if window_s is not None:
            families.add("last_window_age_seconds", status.now_s - window_s, **labels)
        families.add("state_corrupt", item.state == "corrupt", **labels)
        families.add("lock_held", item.lock is not None and not item.lock.stale, **labels)
        families.add("lock_stale", item.lock is not None and item.lock.stale, **labels)
        if item.counters is not None:
            not_analysable = sum(item.counters["not_analysable"].values())
            for outcome, count in (
                ("posted", item.counters["posted"]),
                ("backed_up", item.counters["backed_up"]),
                ("not_analysable", not_analysable),
            ):
                families.add("windows_total", count, outcome=outcome, **labels)

    summary = status.summary()
    families.declare("installations", "gauge", "Installation directories, by readiness of the next window.")
    for readiness, count in summary["readiness"].items():
        families.add("installations", count, readiness=readiness)
    totals = (
        ("pending_report_files", "Report files waiting, all installations."),
        ("pending_observations", "Observation records in usable pending report files, all installations."),
        ("windows_ready", "Complete windows ready, all installations."),
        ("would_quarantine", "Old unusable report files the next runs would quarantine, all installations."),
        ("would_discard", "Report files the next runs would delete by the gap and IP rules, all installations."),
        ("failed_results", "Failed results waiting to be re-sent, all installations."),
        ("rejected_results", "Failed results the API rejected, all installations."),
        ("invalid_reports", "Entries of invalid-reports, all installations."),
        ("stale_locks", "Stale lock files, all installations."),
    )
    for key, help_text in totals:
        families.declare(f"tree_{key}", "gauge", help_text)
        families.add(f"tree_{key}", summary[key])
    families.declare(
        "tree_last_delivery_age_seconds", "gauge", "Seconds since the most recent posted window of any installation."
    )
    if summary["last_delivery"] is not None:
        families.add("tree_last_delivery_age_seconds", summary["last_delivery"]["age_s"])
    families.declare("status_duration_seconds", "gauge", "Wall-clock time the status look took.")
    families.add("status_duration_seconds", status.duration_s)
    return families.render()


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m processor status``."""
    if parser.description is None:
        parser.description = (
            "Show, per installation, what the next run would find: pending report files and observations, the\n"
            "readiness of the next window (ready / waiting / blocked_young / error), failed results, invalid\n"
            "reports, the last recorded window (state file) and the lock holder, then a summary line.\n"
            "Read-only: never takes the lock, never writes the state, never moves a file.\n"
            "Exit status: 0 printed, 2 --reports is not a readable directory."
        )
    if parser.epilog is None:
        parser.epilog = (
            "examples:\n"
            "  python -m processor status\n"
            "  python -m processor status --reports /srv/tix/reports --json | jq .summary\n"
            "  python -m processor status --prometheus > /var/lib/node_exporter/textfile/tix.prom.$$ &&\n"
            "    mv /var/lib/node_exporter/textfile/tix.prom.$$ /var/lib/node_exporter/textfile/tix.prom"
        )
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--reports",
        type=Path,
        default=None,
        metavar="DIR",
        help="reports base directory (default: $TIX_REPORTS_BASE_PATH, else /tmp/reports)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help='print one JSON document {"installations", "summary"}')
    output.add_argument("--prometheus", action="store_true", help="print the Prometheus text format")


def run(args: argparse.Namespace) -> int:
    """Print the status of the tree ``args.reports`` in the chosen format; return the exit status."""
    base: Path = args.reports if args.reports is not None else default_reports_base(os.environ)
    if not base.is_dir():
        print(f"status: --reports {base} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = tree_status(base)
    except OSError as exc:
        print(f"status: cannot read --reports {base}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        sys.stdout.write(render_json(status))
    elif getattr(args, "prometheus", False):
        sys.stdout.write(render_prometheus(status))
    else:
        tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(render_table(status, tty=tty))
    sys.stdout.flush()
    return EXIT_OK
