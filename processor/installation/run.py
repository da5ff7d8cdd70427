"""One run over one installation: lock, state, recovery, re-sending, then windows in crash-safe order (§9.2, §10)."""

from __future__ import annotations

import functools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from processor.atomic import TEMP_PREFIX, DeferredEffects
from processor.delivery.failed_results import (
    FAILED_RESULTS_DIR,
    ensure_failed_results_dir,
    resend_failed_results,
    write_failed_result,
)
from processor.delivery.tixapi import build_payload
from processor.errors import ApiError, ApiUnavailable, InstallationBusy, LockLost, NotAnalysable
from processor.installation.lock import DEFAULT_LEASE_S, STALE_PREFIX, LeaseLock
from processor.installation.state import Attempt, Disposal, LastWindow, State, read_state, utc_now_iso, write_state
from processor.observations import Observations
from processor.reports.files import Report, read_report, report_candidates
from processor.reports.tree import is_canonical_id
from processor.reports.windows import Window, load_candidates, select_window

if TYPE_CHECKING:
    from processor.analysis import AnalysisResult
    from processor.config import UsageEstimator
    from processor.delivery.ip_to_as import AsInfo, Resolver
    from processor.delivery.tixapi import ApiClient

logger = logging.getLogger(__name__)

#: Starts of one window without being recorded as done after which it is consumed unanalysed (change S4).
MAX_WINDOW_ATTEMPTS = 3

#: Age after which temporary files and stale lock names left by a crash are removed, in seconds.
LEFTOVER_AGE_S = 3600.0

#: Default run budget, in seconds (``TIX_TASK_BUDGET_SECONDS``, service spec §3.5).
DEFAULT_BUDGET_S = 480.0

INVALID_REPORTS_DIR = "invalid-reports"

RunOutcome = Literal["done", "busy", "invalid", "lock_lost", "io_error", "write_failed", "interrupted"]
WindowOutcome = Literal["posted", "backed_up", "not_analysable", "dry_run"]


# -- injected collaborators ------------------------------------------------------------------------------------

#: ``processor.analysis.analyse``: the pure analysis of a window's observations.
Analyse = Callable[[Observations], "AnalysisResult"]


# -- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """What happened to one window of the run."""

    window_id: str
    first: str  #: first report file name
    last: str  #: last report file name
    files: int  #: reports in the window
    observations: int  #: distinct observations handed to the analysis (0 when not analysed)
    ip: str
    outcome: WindowOutcome
    reason: str | None  #: not-analysable reason code
    timestamp: int | None  #: result timestamp, Unix seconds
    asn: int | None
    status: int | None  #: HTTP status of a successful POST
    duration_ms: int
    payload: dict[str, Any] | None = field(default=None, repr=False)  #: the §5.2 payload of an analysed window


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The outcome of :func:`run_installation`; ``outcome`` is ``done`` when the run ended normally."""

    user_id: str
    installation_id: str
    outcome: RunOutcome
    windows: tuple[WindowRecord, ...] = ()
    resent: int = 0
    rejected: int = 0
    invalid_reports: int = 0
    discarded_gap: int = 0
    discarded_ip_change: int = 0
    recovered: int = 0  #: files of an interrupted disposal finished by the recovery
    budget_exhausted: bool = False
    dry_run: bool = False
    detail: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """Windows per outcome, e.g. ``{"posted": 3, "not_analysable": 1}``."""
        return dict(Counter(window.outcome for window in self.windows))


class _Stop(Exception):
    """Ends the run in a controlled way with an outcome; the lock is released by the caller."""

    def __init__(self, outcome: RunOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: RunOutcome = outcome
        self.detail = detail


# -- validation --------------------------------------------------------------------------------------------------


def installation_directory(base: Path, user_id: str, installation_id: str) -> Path | None:
    """
    ``<base>/<user_id>/<installation_id>`` when both ids are canonical decimals and both levels are real
    directories (no symbolic link is followed below ``base``); None otherwise (service spec §3.4 step 1).
    """
    if not (is_canonical_id(user_id) and is_canonical_id(installation_id)):
        return None
    directory = Path(base)
    for name in (user_id, installation_id):
        directory = directory / name
        try:
            mode = os.lstat(directory).st_mode
        except OSError:
            return None
        if not stat.S_ISDIR(mode):
            return None
    return directory


# -- the run -----------------------------------------------------------------------------------------------------


def run_installation(
    base: Path,
    user_id: str,
    installation_id: str,
    *,
    analyse: Analyse,
    api: ApiClient | None,
    resolver: Resolver,
    lease_s: float = DEFAULT_LEASE_S,
    budget_s: float = DEFAULT_BUDGET_S,
    dry_run: bool = False,
    path_hint: str | Path | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    usage_estimator: UsageEstimator = "v2",
) -> RunSummary:
    """
    Process every complete window of one installation (windows spec §10, service spec §3.4); safe to run twice.

    Parameters
    ----------
    base : Path
        ``TIX_REPORTS_BASE_PATH``.
    user_id, installation_id : str
        The directory names; they must be canonical positive decimals (S7).
    analyse : callable
        ``processor.analysis.analyse``: observations -> result with ``timestamp`` and ``as_results_dict()``,
        raising :class:`NotAnalysable`.
    api : ApiClient or None
        The tix-api client; None (or a client without credentials) sends every result to ``failed-results/``.
    resolver : Resolver
        ``processor.delivery.ip_to_as.Resolver``; ``resolve(ip)`` gives the AS and never raises.
    lease_s : float
        Lock lease, seconds (``TIX_LOCK_LEASE_SECONDS``).
    budget_s : float
        No re-send and no window starts once this many seconds have passed since the call (S8).
    dry_run : bool
        Read only: no lock file, no state write, no deletion or move, no POST and no failed-results file. The run
        is simulated in memory (recovery, discards, quarantines and disposals hide the files they would
        remove), so the summary lists the windows a real run would process now; each analysed window has outcome
        ``dry_run`` and carries its payload. Failed results are not re-sent.
    path_hint : str or Path, optional
        The path the message carried; only compared with the computed directory (a WARNING when it differs).
    interrupts : tuple of exception types
        Exceptions that stop the run in a controlled way (the task passes Celery's ``SoftTimeLimitExceeded``):
        the started window's attempt count is restored and the run returns with outcome ``interrupted``.
    clock, monotonic : callable
        Wall clock (Unix seconds: young files, state times) and the budget's clock.
    usage_estimator : {"v2", "queueing"}
        What fills the payload's ``upUsage``/``downUsage`` (``TIX_USAGE_ESTIMATOR``), for new windows and
        re-sent failed results alike; both estimates are always in the payload (usage-queueing spec).

    Returns
    -------
    RunSummary
        ``outcome`` is ``done``, or why the run ended early: ``busy`` (another holder, returned at once),
        ``invalid`` (bad ids or directory), ``lock_lost``, ``io_error``, ``write_failed`` (failed-results or
        state write), ``interrupted``.

    Raises
    ------
    Exception
        Any unexpected exception, logged with its traceback at ERROR after the lock was released; the window's
        attempt count stays raised so that it is consumed after 3 such failures (S4).
    """
    directory = installation_directory(Path(base), user_id, installation_id)
    if directory is None:
        logger.warning(
            "installation skipped, not a valid directory user=%s installation=%s base=%s",
            user_id,
            installation_id,
            base,
        )
        return RunSummary(user_id, installation_id, "invalid", dry_run=dry_run)
    if path_hint is not None and Path(path_hint) != directory:
        logger.warning(
            "installation path differs from the computed one user=%s installation=%s given=%s used=%s",
            user_id,
            installation_id,
            path_hint,
            directory,
        )
    run = _Run(
        directory,
        user_id,
        installation_id,
        analyse=analyse,
        api=api,
        resolver=resolver,
        dry_run=dry_run,
        clock=clock,
        monotonic=monotonic,
        budget_s=budget_s,
        usage_estimator=usage_estimator,
    )
    if dry_run:
        return run.execute(interrupts)
    lock = LeaseLock(directory, lease_s=lease_s, clock=clock, deferred=run.deferred)
    try:
        lock.acquire()
    except InstallationBusy as busy:
        logger.info("installation busy user=%s installation=%s holder=%s", user_id, installation_id, busy.holder)
        return RunSummary(user_id, installation_id, "busy", detail=busy.holder)
    except OSError as exc:
        logger.error("installation lock failed user=%s installation=%s error=%s", user_id, installation_id, exc)
        return RunSummary(user_id, installation_id, "io_error", detail=str(exc))
    try:
        run.lock_fence = lock.fence
        return run.execute(interrupts)
    finally:
        run.abandon_deferred()  # after an exception; a normal end has waited already
        lock.release()


class _Run:
    """The state of one run; every side effect goes through a method that fences it first."""

    def __init__(
        self,
        directory: Path,
        user_id: str,
        installation_id: str,
        *,
        analyse: Analyse,
        api: ApiClient | None,
        resolver: Resolver,
        dry_run: bool,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        budget_s: float,
        usage_estimator: UsageEstimator = "v2",
    ) -> None:
        self.directory = directory
        self.prefix = os.path.join(directory, "")  # of a file name, for the hot paths: no Path object per call
        self.user_id = user_id
        self.installation_id = installation_id
        self.analyse = analyse
        self.api = api
        self.resolver = resolver
        self.dry_run = dry_run
        self.clock = clock
        self.monotonic = monotonic
        self.started = monotonic()
        self.budget_s = budget_s
        self.usage_estimator: UsageEstimator = usage_estimator
        self.lock_fence: Callable[[], None] = _no_fence
        self.deferred = DeferredEffects()  # fsyncs still running; the fence waits for them
        self.state = State()
        self.written = State()
        self.hidden: set[str] = set()  # names removed (dry run: that would be) or being deleted in the background
        self.failed_results_seen = True  # see _remove_leftovers: False when failed-results/ was found empty
        self.reports: dict[str, tuple[tuple[int, int, int, int], Report]] = {}  # see _read_report
        self.api_usable = api is not None and api.has_credentials
        self.windows: list[WindowRecord] = []
        self.counts: Counter[str] = Counter()
        self.budget_exhausted = False
        # The attempt before this run's increment, while a started window is not recorded yet.
        self.pending_restore: tuple[Attempt | None] | None = None

    # -- driver ------------------------------------------------------------------------------------------------

    def execute(self, interrupts: tuple[type[BaseException], ...]) -> RunSummary:
        outcome: RunOutcome = "done"
        detail = ""
        try:
            try:
                self._run()
            except interrupts as exc:  # e.g. the soft time limit: stop now, the state stays consistent (D9)
                outcome, detail = "interrupted", type(exc).__name__
                self._restore_attempt()
                logger.warning(
                    "installation run interrupted user=%s installation=%s by=%s",
                    self.user_id,
                    self.installation_id,
                    detail,
                )
        except _Stop as stop:
            outcome, detail = stop.outcome, stop.detail
            if stop.outcome == "write_failed":
                self._restore_attempt()
        except LockLost as lost:
            outcome, detail = "lock_lost", lost.detail
            logger.error(
                "installation run stopped, lock lost user=%s installation=%s detail=%s",
                self.user_id,
                self.installation_id,
                lost.detail,
            )
        except Exception:
            logger.exception("installation run failed user=%s installation=%s", self.user_id, self.installation_id)
            raise
        return RunSummary(
            self.user_id,
            self.installation_id,
            outcome,
            windows=tuple(self.windows),
            resent=self.counts["resent"],
            rejected=self.counts["rejected"],
            invalid_reports=self.counts["invalid_reports"],
            discarded_gap=self.counts["discarded_gap"],
            discarded_ip_change=self.counts["discarded_ip_change"],
            recovered=self.counts["recovered"],
            budget_exhausted=self.budget_exhausted,
            dry_run=self.dry_run,
            detail=detail,
        )

    def _run(self) -> None:
        try:
            self.state = read_state(
                self.directory, before_effect=self.fence, now_s=self.clock, set_aside=not self.dry_run
            )
        except OSError as exc:
            raise self._io_error("reading the state file", exc) from None
        self.written = self.state
        self._recover()
        self._remove_leftovers()
        self._ensure_failed_results_dir()
        self._resend()
        while True:
            if self._budget_used():
                break
            window = self._select()
            if window is None:
                break
            self._process(window)
        if self.state != self.written:  # counters of discards, moves and re-sends since the last write
            self._write_state(self.state)
        self._wait_deferred()  # the last disposal and fsyncs end before the lock is released

    def _budget_used(self) -> bool:
        if self.monotonic() - self.started >= self.budget_s:
            if not self.budget_exhausted:
                logger.info(
                    "installation budget used user=%s installation=%s budget_s=%s",
                    self.user_id,
                    self.installation_id,
                    self.budget_s,
                )
            self.budget_exhausted = True
            return True
        return False

    # -- effects -------------------------------------------------------------------------------------------------

    def _io_error(self, what: str, exc: OSError) -> _Stop:
        logger.error(
            "installation run stopped, I/O error user=%s installation=%s while=%s error=%s",
            self.user_id,
            self.installation_id,
            what.replace(" ", "_"),
            exc,
        )
        return _Stop("io_error", f"{what}: {exc}")

    def fence(self) -> None:
        """
        Call immediately before every side effect: the effects started in the background have ended
        (:class:`DeferredEffects`: fsyncs, a disposal) and the lock is still ours (windows spec §8).
        """
        self._wait_deferred()
        self.lock_fence()

    def _wait_deferred(self) -> None:
        """Wait for the background effects; their I/O error ends the run (``io_error``), LockLost propagates."""
        try:
            self.deferred.wait()
        except OSError as exc:
            raise self._io_error("finishing background effects", exc) from None

    def abandon_deferred(self) -> None:
        """Wait for the background effects of a run that ended with an exception, logging their own failure."""
        try:
            self.deferred.wait()
        except (OSError, LockLost) as exc:
            logger.warning(
                "background effect failed user=%s installation=%s error=%s", self.user_id, self.installation_id, exc
            )

    def _write_state(self, state: State, *, defer_sync: bool = False) -> None:
        """
        Write ``state`` and make it the run's state; on failure the run's state stays as it was. With
        ``defer_sync`` the directory's fsync runs while the run goes on, until the next fence.
        """
        if not self.dry_run:
            self.fence()
            try:
                write_state(self.directory, state, deferred=self.deferred if defer_sync else None)
            except OSError as exc:
                logger.error(
                    "state write failed user=%s installation=%s error=%s", self.user_id, self.installation_id, exc
                )
                raise _Stop("write_failed", f"state write: {exc}") from None
        self.state = self.written = state

    def _restore_attempt(self) -> None:
        """Best effort: a controlled stop must not count towards the S4 cap (windows spec §9.2)."""
        if self.pending_restore is None or self.dry_run:
            return
        (previous,) = self.pending_restore
        self.pending_restore = None
        self.state = replace(self.state, attempt=previous)
        try:
            self.fence()
            write_state(self.directory, self.state)
        except (OSError, LockLost, _Stop):
            return
        self.written = self.state

    def _delete(self, name: str) -> None:
        if self.dry_run:
            self.hidden.add(name)
            return
        self.fence()
        self._unlink(name)

    def _unlink(self, name: str) -> None:
        """Delete a report (fenced by the caller); an entry that is not a file is moved aside, never rmtree'd."""
        try:
            os.unlink(self.prefix + name)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            self._move_to_invalid(name)

    def _quarantine(self, name: str) -> str | None:
        """Move ``name`` into ``invalid-reports/`` (``.1``, ``.2`` … when taken); the new name, None if gone."""
        if self.dry_run:
            self.hidden.add(name)
            return name
        self.fence()
        return self._move_to_invalid(name)

    def _move_to_invalid(self, name: str) -> str | None:
        """:meth:`_quarantine` without the fence (the caller's)."""
        target_dir = self.directory / INVALID_REPORTS_DIR
        try:
            os.mkdir(target_dir, 0o750)
            os.chmod(target_dir, 0o750)
        except FileExistsError:
            pass
        target = target_dir / name
        suffix = 0
        while os.path.lexists(target):
            suffix += 1
            target = target_dir / f"{name}.{suffix}"
        try:
            os.rename(self.directory / name, target)
        except FileNotFoundError:
            return None
        return target.name

    # -- steps 2-4 -----------------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish the disposal of the last recorded window if a crash interrupted it (windows spec §9.2)."""
        last = self.state.last_window
        if last is None:
            return
        try:
            listed = set(os.listdir(self.directory))  # one listing instead of one lstat per name
        except OSError as exc:
            raise self._io_error("finishing a disposal", exc) from None
        present = [name for name in last.dispose if name in listed]
        if not present:
            return
        logger.info(
            "finishing interrupted disposal user=%s installation=%s window=%s files=%d",
            self.user_id,
            self.installation_id,
            last.id[:12],
            len(present),
        )
        try:
            self._dispose(present, last.disposal)
        except OSError as exc:
            raise self._io_error("finishing a disposal", exc) from None
        self.counts["recovered"] += len(present)

    def _remove_leftovers(self) -> None:
        """Remove ``.tix-tmp-*`` and ``.tix-processor.lock.stale-*`` files older than one hour (crash leftovers)."""
        if self.dry_run:
            return
        now = self.clock()
        for directory in (self.directory, self.directory / FAILED_RESULTS_DIR):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                entries = []
            except OSError as exc:
                raise self._io_error("listing leftovers", exc) from None
            if directory is not self.directory:
                # Only this lock's holder writes there: an empty listing spares the re-send pass its own listing.
                self.failed_results_seen = any(not entry.name.startswith(TEMP_PREFIX) for entry in entries)
            for entry in entries:
                if not entry.name.startswith((TEMP_PREFIX, STALE_PREFIX)):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode) or now - info.st_mtime < LEFTOVER_AGE_S:
                        continue
                    self.fence()
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._io_error("removing leftovers", exc) from None
                logger.info(
                    "crash leftover removed user=%s installation=%s name=%s",
                    self.user_id,
                    self.installation_id,
                    entry.name,
                )

    def _ensure_failed_results_dir(self) -> None:
        """Create ``failed-results/`` (0750) if missing [Original: on every run]."""
        if self.dry_run or os.path.isdir(self.directory / FAILED_RESULTS_DIR):
            return
        self.fence()
        try:
            ensure_failed_results_dir(self.directory)
        except OSError as exc:
            raise self._io_error("creating failed-results", exc) from None

    def _resend(self) -> None:
        """Re-send the failed results, oldest first, while the budget allows (service spec §6.2, D10)."""
        if self.dry_run or not self.api_usable or not self.failed_results_seen:
            return
        assert self.api is not None
        try:
            outcome = resend_failed_results(
                self.directory / FAILED_RESULTS_DIR,
                user_id=self.user_id,
                installation_id=self.installation_id,
                client=self.api,
                resolver=self.resolver,
                fence=self.fence,
                should_continue=lambda: not self._budget_used(),
                usage_estimator=self.usage_estimator,
            )
        except OSError as exc:
            raise self._io_error("re-sending failed results", exc) from None
        self.counts["resent"] += outcome.resent
        self.counts["rejected"] += outcome.rejected
        if outcome.resent or outcome.rejected:
            self.state = self.state.counted(resent=outcome.resent, rejected=outcome.rejected)
        if outcome.api_unusable:
            self.api_usable = False

    # -- step 5: windows -------------------------------------------------------------------------------------------

    def _candidates(self) -> Iterator[Any]:
        names = [name for name in report_candidates(self.directory) if name not in self.hidden]
        return load_candidates(names, self._read_report)

    def _read_report(self, name: str) -> Report:
        """
        :func:`read_report`, reusing this run's parse of the same file while its inode, size, mtime and ctime
        are unchanged: the next selection reads the newer half of a window again (hot path, same result).
        """
        info = os.lstat(self.prefix + name)
        key = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cached = self.reports.get(name)
        if cached is not None and cached[0] == key and stat.S_ISREG(info.st_mode):
            return cached[1]
        report = read_report(self.directory / name, info)
        self.reports[name] = (key, report)
        return report

    def _select(self) -> Window | None:
        """Select the next window and apply the removals of the gap and IP rules and the moves of bad files."""
        try:
            selection = select_window(self._candidates(), now_s=self.clock())
        except OSError as exc:
            raise self._io_error("reading reports", exc) from None
        try:
            for discard in selection.discards:
                for name in discard.names:
                    self._delete(name)
                counter = f"discarded_{discard.reason}"
                self.counts[counter] += len(discard.names)
                self.state = self.state.counted(**{counter: len(discard.names)})
                logger.info(
                    ("dry run, reports would be discarded" if self.dry_run else "reports discarded")
                    + " user=%s installation=%s reason=%s files=%d names=%s",
                    self.user_id,
                    self.installation_id,
                    discard.reason,
                    len(discard.names),
                    ",".join(discard.names),
                )
            for item in selection.invalid:
                moved = self._quarantine(item.name)
                if moved is None:
                    continue
                self.counts["invalid_reports"] += 1
                self.state = self.state.counted(invalid_reports=1)
                logger.warning(
                    ("dry run, unusable report would be moved" if self.dry_run else "unusable report moved")
                    + " user=%s installation=%s name=%s reason=%s moved_to=%s",
                    self.user_id,
                    self.installation_id,
                    item.name,
                    item.reason,
                    f"{INVALID_REPORTS_DIR}/{moved}",
                )
        except OSError as exc:
            raise self._io_error("removing reports", exc) from None
        if selection.young is not None:
            logger.debug(
                "window scan stopped at a young unusable report user=%s installation=%s name=%s reason=%s",
                self.user_id,
                self.installation_id,
                selection.young.name,
                selection.young.reason,
            )
        return selection.window

    def _process(self, window: Window) -> None:
        """Windows spec §9.2 steps 2-6 for one window."""
        started = self.monotonic()
        window_id = window.id
        result: AnalysisResult | None = None
        payload: dict[str, Any] | None = None
        reason: str | None = None
        status: int | None = None
        asn: int | None = None
        disposal: Disposal = "delete"
        observation_count = 0
        if self.state.attempts(window_id) >= MAX_WINDOW_ATTEMPTS:
            # S4: a window that keeps killing its worker is consumed without a fourth analysis, data kept.
            outcome: WindowOutcome = "not_analysable"
            reason, disposal = "repeated_failure", "quarantine"
        else:
            if not self.dry_run:
                previous = self.state.attempt
                # The analysis runs during the directory's fsync; the fence before the POST, the failed-results
                # write or the recording waits for it, so nothing leaves this process before it is durable.
                self._write_state(self.state.started(window_id), defer_sync=True)
                self.pending_restore = (previous,)
            observations = window.observations()
            observation_count = int(observations.size)
            try:
                result = self.analyse(observations)
            except NotAnalysable as exc:
                outcome, reason = "not_analysable", exc.reason
        if reason is not None:
            logger.warning(
                "window not analysable user=%s installation=%s reason=%s first=%s last=%s",
                self.user_id,
                self.installation_id,
                reason,
                window.first.name,
                window.last.name,
            )
        if result is not None:
            results = result.as_results_dict()
            as_info = self.resolver.resolve(window.ip)
            asn = as_info.asn
            payload = build_payload(
                results,
                ip=window.ip,
                asn=as_info.asn,
                as_owner=as_info.owner,
                usage_estimator=self.usage_estimator,
            )
            if self.dry_run:
                outcome = "dry_run"
            else:
                outcome, status = self._deliver(payload, results, window.ip, as_info)
        # Step 5, directly after the API's answer: record the window as done before any other I/O.
        timestamp = int(result.timestamp) if result is not None else None
        last = LastWindow(
            id=window_id,
            files=window.names,
            dispose=window.dispose,
            disposal=disposal,
            outcome="posted" if outcome == "dry_run" else outcome,
            reason=reason,
            timestamp=timestamp,
            finished_at=utc_now_iso(self.clock()),
        )
        # The directory's fsync and then the disposal run in the background (in that order), while the next
        # selection reads; the next side effect, or the end of the run, waits for them.
        self._write_state(self.state.recorded(last), defer_sync=True)
        self.pending_restore = None
        try:
            self._dispose(window.dispose, disposal)
        except OSError as exc:
            raise self._io_error("disposing of a window", exc) from None
        record = WindowRecord(
            window_id=window_id,
            first=window.first.name,
            last=window.last.name,
            files=len(window.reports),
            observations=observation_count,
            ip=window.ip,
            outcome=outcome,
            reason=reason,
            timestamp=timestamp,
            asn=asn,
            status=status,
            duration_ms=round((self.monotonic() - started) * 1000),
            payload=payload,
        )
        self.windows.append(record)
        logger.info(
            "window done user=%s installation=%s timestamp=%s outcome=%s reason=%s ms=%s "
            "first=%s last=%s files=%s observations=%s ip=%s asn=%s status=%s",
            self.user_id,
            self.installation_id,
            timestamp,
            outcome,
            reason,
            record.duration_ms,
            record.first,
            record.last,
            record.files,
            observation_count,
            window.ip,
            asn,
            status,
        )

    def _deliver(
        self, payload: dict[str, Any], results: dict[str, Any], ip: str, as_info: AsInfo
    ) -> tuple[WindowOutcome, int | None]:
        """POST the payload, or back the result up in ``failed-results/`` (windows spec §9.2 step 4)."""
        if self.api_usable:
            assert self.api is not None
            try:
                answer = self.api.post(self.user_id, self.installation_id, payload, fence=self.fence)
            except ApiError as exc:
                if isinstance(exc, ApiUnavailable):
                    self.api_usable = False  # S6: further windows of this run go straight to failed-results
            else:
                return "posted", getattr(answer, "status", None)
        try:
            write_failed_result(
                self.directory / FAILED_RESULTS_DIR,
                results,
                ip=ip,
                asn=as_info.asn,
                as_owner=as_info.owner,
                fence=self.fence,
            )
        except OSError as exc:
            logger.error(
                "failed result not written user=%s installation=%s timestamp=%s error=%s",
                self.user_id,
                self.installation_id,
                results.get("timestamp"),
                exc,
            )
            raise _Stop("write_failed", f"failed-results write: {exc}") from None
        return "backed_up", None

    def _dispose(self, names: tuple[str, ...] | list[str], disposal: Disposal) -> None:
        """
        Remove a recorded window's ``dispose`` files (windows spec §9.2 step 6). Deletions run in the background,
        after the effects started before them (the recording's fsync): the names are hidden from the next
        selection meanwhile, and the next side effect waits for them. Quarantines (rare) are done here.
        """
        if disposal == "quarantine":
            for name in names:
                self._quarantine(name)
            return
        self.hidden.update(names)  # a dry run only hides them
        if not self.dry_run:
            self.deferred.call(functools.partial(self._delete_in_background, tuple(names)))

    def _delete_in_background(self, names: tuple[str, ...]) -> None:
        for name in names:
            self.lock_fence()  # not self.fence(): that would wait for this very job
            self._unlink(name)


def _no_fence() -> None:
    """The fence of a dry run: nothing to protect, since nothing is changed."""
