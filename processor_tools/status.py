"""Read-only status of the reports tree: backlog, next-window readiness, failed results, last delivery and lock.

``python -m processor status`` looks at every installation directory below the reports base path and tells, per
installation, what a run of the service would find there now; it never takes the lock, never writes the state file
and never moves, deletes or creates a file (the window selection it uses is the pure one of windows spec §3–§7).
It reads the lock and the state file through the worker's own readers, :func:`processor.installation.lock.
lock_state` and :func:`processor.installation.state.load_state`, so both judge a lock stale by the same rule.

Design choices (documented for the operator):

* ``--reports`` defaults to ``TIX_REPORTS_BASE_PATH`` (empty or unset: ``/tmp/reports``), read by the service's
  own :func:`processor.config.reports_base_path`. Only that variable is read, so that ``status`` still works while
  an unrelated variable is invalid — which is when an operator most needs it.
* Report files that the next run would remove first (``last_window.dispose`` of the state file still present,
  the recovery of windows spec §9.2) are counted as ``awaiting_disposal`` and left out of the backlog and of the
  window selection.
* A lock is *stale* when a worker may take it over now (windows spec §8): its holder names this host and its
  process no longer exists, or its expiry is more than the 30 s of allowed clock skew past. A lock whose content
  cannot be parsed expires at its mtime plus the default lease of 120 s (``TIX_LOCK_LEASE_SECONDS`` is not read).
* The last *delivery* is the last result tix-api accepted, a posted window or a re-sent failed result, as the
  run records it in the state file (``last_delivery``). For a state file written before that key existed it is
  the last window while its outcome is ``posted``. The last window's age is reported for every outcome.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from processor.config import reports_base_path
from processor.delivery.failed_results import FAILED_RESULTS_DIR, REJECTED_DIR, list_failed_results
from processor.errors import UnusableReport
from processor.installation.lock import LockState, lock_state
from processor.installation.state import LastDelivery, LastWindow, State, StateFormatError, load_state
from processor.installation.window import INVALID_REPORTS_DIR
from processor.reports.files import is_young, read_report, report_candidates
from processor.reports.tree import InstallationDir, installation_dirs
from processor.reports.windows import Candidate, iter_windows, load_candidates
from processor_tools import status_output
from processor_tools.status_output import lock_json, render_json, render_prometheus, render_table, write_textfile

EXIT_OK = 0  #: The status was printed (or written to ``--textfile``).
EXIT_FAILED = 1  #: The ``--textfile`` could not be written; one line on stderr says why.
EXIT_USAGE = 2  #: ``--reports`` is not a readable directory; nothing was printed on stdout.

Readiness = Literal["ready", "waiting", "blocked_young", "error"]
READINESS: tuple[Readiness, ...] = ("ready", "waiting", "blocked_young", "error")
StateCondition = Literal["missing", "ok", "corrupt", "unreadable"]


# --------------------------------------------------------------------------------------------------------------
# Reading one installation, without side effects
# --------------------------------------------------------------------------------------------------------------


def peek_state(directory: Path) -> tuple[StateCondition, State | None]:
    """
    The state file of an installation directory with its condition, read-only.

    A corrupt file is left where it is (the next run sets it aside) and comes back as ``("corrupt", None)``; a
    missing file is ``("missing", None)``, an unreadable one ``("unreadable", None)``.
    """
    try:
        state = load_state(directory)
    except StateFormatError:
        return "corrupt", None
    except OSError:
        return "unreadable", None
    return ("missing", None) if state is None else ("ok", state)


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

    The first are the files the re-send pass would list (service.md §6.2); the second every entry of
    ``failed-results/rejected/``.
    """
    failed_dir = directory / FAILED_RESULTS_DIR
    failed = len(list_failed_results(failed_dir)) if _entries(failed_dir) else 0  # empty for a link: not followed
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
        return asdict(self)


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
    last_delivery: LastDelivery | None  #: the last result tix-api accepted: a posted window or a re-send
    attempt_count: int | None  #: count of the state's current attempt, if any
    counters: dict[str, Any] | None
    lock: LockState | None  #: None when there is no lock file
    error: str | None  #: an I/O error that stopped the look at this installation

    @property
    def last_window_at_s(self) -> float | None:
        """Unix seconds of ``last_window.finished_at``, None when absent or unparseable."""
        return None if self.last_window is None else parse_iso_s(self.last_window.finished_at)

    @property
    def last_delivery_at_s(self) -> float | None:
        """Unix seconds of the last delivery, None when none is known or its time does not parse."""
        return None if self.last_delivery is None else parse_iso_s(self.last_delivery.delivered_at)

    def as_dict(self, now_s: float) -> dict[str, Any]:
        """The JSON object of this installation."""
        last_window = None
        if self.last_window is not None:
            last_window = {
                "outcome": self.last_window.outcome,
                "reason": self.last_window.reason,
                "timestamp": self.last_window.timestamp,
                "finished_at": self.last_window.finished_at,
                "age_s": _age(now_s, self.last_window_at_s),
                "files": len(self.last_window.files),
            }
        last_delivery = None
        if self.last_delivery is not None:
            last_delivery = {
                "finished_at": self.last_delivery.delivered_at,
                "timestamp": self.last_delivery.timestamp,
                "age_s": _age(now_s, self.last_delivery_at_s),
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
            "lock": None if self.lock is None else lock_json(self.lock, now_s),
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


def _io_error(exc: OSError) -> str:
    """``<file name>: <reason>`` of an I/O error (the reason alone when no file is named)."""
    reason = exc.strerror or str(exc)
    return f"{Path(exc.filename).name}: {reason}" if exc.filename else reason


def last_delivery(state: State | None) -> LastDelivery | None:
    """The state's last delivery; for a state file written before it was kept, the last window if it was posted."""
    if state is None:
        return None
    if state.last_delivery is not None:
        return state.last_delivery
    last = state.last_window
    if last is None or last.outcome != "posted" or last.timestamp is None:
        return None
    return LastDelivery(last.timestamp, last.finished_at)


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
        try:  # one by one, so that what was read before an I/O error still counts
            for candidate in load_candidates(
                (name for name in names if name not in leftover), lambda name: read_report(directory / name)
            ):
                candidates.append(candidate)
        except OSError as exc:
            error = _io_error(exc)

    pending_observations = sum(c.count for c in candidates if not isinstance(c, UnusableReport))
    unusable = [c for c in candidates if isinstance(c, UnusableReport)]
    young = sum(1 for c in unusable if is_young(c, now_s))

    readiness: Readiness = "error"
    next_window: NextWindow | None = None
    windows_ready = would_quarantine = would_discard = 0
    young_file: str | None = None
    if error is None:
        selections = list(iter_windows(candidates, now_s=now_s))
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
    lock: LockState | None = None
    try:
        lock = lock_state(directory, now_s, host=host)
    except OSError as exc:  # also a lock path that is a link or not a file: the worker fails on it too
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
        last_delivery=last_delivery(state),
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
        """The installation whose last delivery is the most recent, None when no delivery is known."""
        known = [item for item in self.installations if item.last_delivery_at_s is not None]
        return max(known, key=lambda item: item.last_delivery_at_s or 0.0) if known else None

    def summary(self) -> dict[str, Any]:
        """The ``summary`` object of the JSON document."""
        latest = self.latest_delivery()
        last_delivery = None
        if latest is not None and latest.last_delivery is not None:
            last_delivery = {
                "user": latest.user,
                "installation": latest.installation,
                "finished_at": latest.last_delivery.delivered_at,
                "timestamp": latest.last_delivery.timestamp,
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
            "Exit status: 0 printed (or written), 1 --textfile could not be written,\n"
            "2 --reports is not a readable directory."
        )
    if parser.epilog is None:
        parser.epilog = (
            f"{status_output.columns_help()}\n\nexamples:\n"
            "  python -m processor status\n"
            "  python -m processor status --reports /srv/tix/reports --json | jq .summary\n"
            "  python -m processor status --textfile /var/lib/node_exporter/textfile/tix.prom"
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
    output.add_argument(
        "--textfile",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the Prometheus text format to PATH atomically (a temporary file beside it, then a rename), "
        "for node-exporter's textfile collector (name it *.prom); nothing is printed",
    )


def run(args: argparse.Namespace) -> int:
    """Print the status of the tree ``args.reports`` in the chosen format; return the exit status."""
    base: Path = args.reports if args.reports is not None else reports_base_path(os.environ)
    if not base.is_dir():
        print(f"status: --reports {base} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = tree_status(base)
    except OSError as exc:
        print(f"status: cannot read --reports {base}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    textfile: Path | None = getattr(args, "textfile", None)
    if textfile is not None:
        try:
            write_textfile(status, textfile)
        except OSError as exc:
            print(f"status: cannot write --textfile {textfile}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if getattr(args, "json", False):
        sys.stdout.write(render_json(status))
    elif getattr(args, "prometheus", False):
        sys.stdout.write(render_prometheus(status))
    else:
        tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(render_table(status, tty=tty))
    sys.stdout.flush()
    return EXIT_OK
