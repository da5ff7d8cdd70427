"""
One run over one installation (windows spec §10): the lease lock, the state file, the recovery, the re-sending of
failed results, then the windows, each in the crash-safe order of §9.2.

Every effect is synchronous and comes right after the lock's fence: what another process or a crash can observe
happens in the order of the lines below, and :func:`run_installation` reads as the steps of §10.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from processor.config import Config, UsageEstimator
from processor.delivery import Delivery
from processor.delivery.failed_results import (
    FAILED_RESULTS_DIR,
    REJECTED_DIR,
    ensure_failed_results_dir,
    refused_by_server,
    resend_failed_results,
    write_failed_result,
)
from processor.delivery.strikes import strike_refused
from processor.errors import ApiError, ApiUnavailable, InstallationBusy, LockLost
from processor.installation.budget import Budget
from processor.installation.entries import remove_leftovers, usable_entry
from processor.installation.lock import LeaseLock
from processor.installation.state import (
    STATE_NAME,
    Attempt,
    Disposal,
    State,
    load_state,
    read_state,
    write_state,
)
from processor.installation.summary import RunOutcome, RunSummary
from processor.installation.window import (
    INVALID_REPORTS_DIR,
    MAX_WINDOW_ATTEMPTS,
    Analysis,
    WindowOutcome,
    WindowRecord,
    analyse_window,
    delete_report,
    move_to_invalid,
    next_selection,
    present,
    window_done,
)
from processor.logs import EventLogger, event_logger
from processor.reports.tree import checked_directory
from processor.reports.windows import Window

log = event_logger(__name__)


class _Stop(Exception):
    """Ends the run in a controlled way with an outcome; the lock is released by the caller."""

    def __init__(self, outcome: RunOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: RunOutcome = outcome
        self.detail = detail


# -- the run ------------------------------------------------------------------------------------------------------


def run_installation(
    config: Config,
    user_id: str,
    installation_id: str,
    delivery: Delivery,
    *,
    path_hint: str | Path | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
    stop_requested: Callable[[], bool] | None = None,
) -> RunSummary:
    """
    Process every complete window of one installation (windows spec §10, service spec §3.4); safe to run twice.

    ``config`` gives the reports base path, the lock lease, the run budget (no re-send and no window starts once
    it is used, S8) and the usage estimator; ``delivery`` is the process's tix-api client and AS resolver (a
    client without credentials backs every result up). ``user_id`` and ``installation_id`` must be canonical
    positive decimals (S7); ``path_hint``, the path the message carried, is only compared with the directory.
    ``interrupts`` stop the run in a controlled way (the task passes Celery's ``SoftTimeLimitExceeded``): the
    started window's attempt count is restored and the outcome is ``interrupted``. ``stop_requested`` (the task
    passes its worker's shutdown) is asked where the budget is: once true, no further re-send or window starts.

    The summary's ``outcome`` is ``done``, or why the run ended early: ``busy`` (another holder, returned at
    once), ``invalid`` (bad ids or directory), ``lock_lost``, ``io_error``, ``write_failed`` (failed-results or
    state write), ``interrupted``. Any other exception is logged with its traceback and raised after the lock was
    released; the window's attempt count stays raised, so that it is consumed after 3 such failures (S4).
    """
    run_log = log.bind(user=user_id, installation=installation_id)
    directory = checked_directory(config.reports_base_path, user_id, installation_id, path_hint, run_log)
    if directory is None:
        return RunSummary(user_id, installation_id, "invalid")
    lock = LeaseLock(directory, lease_s=config.lock_lease_s)
    try:
        lock.acquire()
    except InstallationBusy as busy:
        run_log.info("installation busy", holder=busy.holder)
        return RunSummary(user_id, installation_id, "busy", detail=busy.holder)
    except OSError as exc:
        run_log.error("installation lock failed", error=exc)
        return RunSummary(user_id, installation_id, "io_error", detail=str(exc))
    run = _Run(directory, lock, delivery, config, user_id, run_log, stop_requested)
    outcome: RunOutcome = "done"
    detail = ""
    try:
        run.check_entries()
        run.read_state()
        run.recover()
        run.remove_leftovers()
        run.ensure_failed_results_dir()
        run.resend()
        while not run.budget.used():
            window = run.select()
            if window is None:
                break
            run.process(window)
        run.strike_refused()
        run.write_counters()
    except interrupts as exc:  # e.g. the soft time limit: stop now, the state stays consistent (D9)
        outcome, detail = "interrupted", type(exc).__name__
        run_log.warning("installation run interrupted", by=detail)
        run.restore_attempt()
    except _Stop as stop:
        outcome, detail = stop.outcome, stop.detail
        if stop.outcome == "write_failed":
            run.restore_attempt()
    except LockLost as lost:
        outcome, detail = "lock_lost", lost.detail
        run_log.error("installation run stopped, lock lost", detail=lost.detail)
    except Exception:
        run_log.exception("installation run failed")
        raise
    finally:
        lock.release()
    return RunSummary.of(
        user_id, installation_id, outcome, run.windows, run.counts, run.budget, detail=detail,
        api_failed=(delivery.api.has_credentials and not run.api_usable) or bool(run.refused),
    )  # fmt: skip


class _Run:
    """What one run knows between its steps; every effect on the installation comes right after the lock's fence."""

    def __init__(
        self, directory: Path, lock: LeaseLock, delivery: Delivery, config: Config, user_id: str, run_log: EventLogger,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:  # fmt: skip
        self.directory = directory
        self.fence = lock.fence
        self.api = delivery.api
        self.resolver = delivery.resolver
        self.usage_estimator: UsageEstimator = config.usage_estimator
        self.user_id, self.installation_id = user_id, directory.name
        self.log = run_log
        self.budget = Budget(config.task_budget_s, run_log, stop_requested)
        self.api_usable = delivery.api.has_credentials
        self.period_s = config.processing_period_s
        self.state = self.written = State()
        #: The attempt before and after this run started the current window, until the window is recorded.
        self.increment: tuple[Attempt | None, Attempt | None] | None = None
        self.windows: list[WindowRecord] = []
        self.counts: Counter[str] = Counter()
        self.refused: tuple[Path, ...] = ()  #: failed results refused with a 5xx of their own (H9)
        self.delivered = False  #: tix-api accepted a POST of this run

    # -- §10 steps 2-4 ---------------------------------------------------------------------------------------------

    def check_entries(self) -> None:
        """H1: every bookkeeping entry that is not a real directory or regular file is set aside, a fresh one used."""
        self.fence()
        try:
            usable_entry(self.directory / STATE_NAME, "file", self.log)
            usable_entry(self.directory / INVALID_REPORTS_DIR, "directory", self.log)
            if usable_entry(self.directory / FAILED_RESULTS_DIR, "directory", self.log):
                usable_entry(self.directory / FAILED_RESULTS_DIR / REJECTED_DIR, "directory", self.log)
        except OSError as exc:
            raise io_error(self.log, "checking bookkeeping entries", exc) from None

    def read_state(self) -> None:
        """The state file; a corrupt one is set aside (after the fence) and a fresh state used (§9.1)."""
        try:
            self.state = self.written = read_state(self.directory, before_effect=self.fence)
        except OSError as exc:
            raise io_error(self.log, "reading the state file", exc) from None

    def recover(self) -> None:
        """Finish the disposal of the last recorded window if a crash interrupted it (windows spec §9.2)."""
        last = self.state.last_window
        if last is None:
            return
        try:
            remaining = present(self.directory, last.dispose)
            if remaining:
                self.log.info("finishing interrupted disposal", window=last.id[:12], files=len(remaining))
                self.dispose(remaining, last.disposal)
        except OSError as exc:
            raise io_error(self.log, "finishing a disposal", exc) from None
        self.counts["recovered"] += len(remaining)

    def remove_leftovers(self) -> None:
        """Remove the temporary files and stale lock names a crash left over an hour ago."""
        try:
            remove_leftovers((self.directory, self.directory / FAILED_RESULTS_DIR), self.fence, self.log)
        except OSError as exc:
            raise io_error(self.log, "removing leftovers", exc) from None

    def ensure_failed_results_dir(self) -> None:
        """Create ``failed-results/`` (0750) if missing [Original: on every run]."""
        if os.path.isdir(self.directory / FAILED_RESULTS_DIR):
            return
        self.fence()
        try:
            ensure_failed_results_dir(self.directory)
        except OSError as exc:
            raise io_error(self.log, "creating failed-results", exc) from None

    def resend(self) -> None:
        """Re-send the failed results, oldest first, while the budget allows (service spec §6.2, D10)."""
        if not self.api_usable:
            return
        try:
            outcome = resend_failed_results(
                self.directory / FAILED_RESULTS_DIR,
                user_id=self.user_id,
                installation_id=self.installation_id,
                client=self.api,
                resolver=self.resolver,
                fence=self.fence,
                should_continue=lambda: not self.budget.used(),
                on_resent=self.resent,
                retry_until=self.budget.started + self.budget.budget_s,
                api_up=self.api_up,
            )
        except OSError as exc:
            raise io_error(self.log, "re-sending failed results", exc) from None
        self.count("resent", outcome.resent)
        self.count("rejected", outcome.rejected)
        self.refused, self.delivered = outcome.refused, outcome.resent > 0
        if outcome.api_unusable:
            self.api_usable = False

    def resent(self, timestamp: int) -> None:
        """A re-sent result is a delivery too (``status``'s last delivery); written with the next state write."""
        self.state = self.state.delivered(timestamp)

    def api_up(self) -> bool:
        """
        H9: tix-api is known up when this run delivered something or this process's client had a 2xx within the
        last processing period; a 5xx is then the refusal of one result, not an outage.
        """
        return self.delivered or self.api.succeeded_within(self.period_s)

    def strike_refused(self) -> None:
        """H9: the results refused while tix-api is known up get a strike; at 3 they are retired."""
        if not (self.refused and self.api_up()):
            return  # no success in this run nor in the last period: an outage of the whole API, no strike
        try:
            self.count("rejected", strike_refused(self.refused, fence=self.fence, run_log=self.log))
        except OSError as exc:
            raise io_error(self.log, "striking refused results", exc) from None

    # -- §10 step 5: windows -----------------------------------------------------------------------------------

    def select(self) -> Window | None:
        """Select the next window, after the removals of the gap and IP rules and the moves of unusable files."""
        try:
            selection = next_selection(self.directory, (), self.log)
        except OSError as exc:
            raise io_error(self.log, "reading reports", exc) from None
        try:
            for discard in selection.discards:
                for name in discard.names:
                    self.fence()
                    delete_report(self.directory, name)
                self.count(f"discarded_{discard.reason}", len(discard.names))
                self.log.info(
                    "reports discarded", reason=discard.reason, files=len(discard.names), names=",".join(discard.names)
                )
            for item in selection.invalid:
                self.fence()
                moved = move_to_invalid(self.directory, item.name)
                if moved is not None:
                    self.count("invalid_reports", 1)
                    self.log.warning(
                        "unusable report moved",
                        name=item.name,
                        reason=item.reason,
                        moved_to=f"{INVALID_REPORTS_DIR}/{moved}",
                    )
        except OSError as exc:
            raise io_error(self.log, "removing reports", exc) from None
        return selection.window

    def process(self, window: Window) -> None:
        """Windows spec §9.2 steps 2-6 for one window."""
        started = time.monotonic()
        attempts = self.state.attempts(window.id)
        if attempts < MAX_WINDOW_ATTEMPTS:
            starting = self.state.started(window.id)
            self.increment = (self.state.attempt, starting.attempt)
            self.write_state(starting)
        analysis = analyse_window(window, attempts, self.resolver, self.usage_estimator, self.log)
        outcome: WindowOutcome = "not_analysable"
        status = None
        if analysis.payload is not None:
            outcome, status = self.deliver(window, analysis)
        # Step 5 directly after the API's answer: the interval in which a crash posts the window twice stays short.
        self.write_state(self.state.recorded(analysis.last_window(window, outcome)))
        self.increment = None
        try:
            self.dispose(window.dispose, analysis.disposal)
        except OSError as exc:
            raise io_error(self.log, "disposing of a window", exc) from None
        self.windows.append(window_done(self.log, window, analysis, outcome, status, started))

    def deliver(self, window: Window, analysis: Analysis) -> tuple[WindowOutcome, int | None]:
        """POST the payload, or back the result up in ``failed-results/`` (windows spec §9.2 step 4)."""
        assert analysis.payload is not None and analysis.results is not None
        if self.api_usable:
            try:
                answer = self.api.post(
                    self.user_id,
                    self.installation_id,
                    analysis.payload,
                    fence=self.fence,
                    retry_until=self.budget.started + self.budget.budget_s,  # H3: budget plus one attempt at most
                )
            except ApiError as exc:
                # S6: further windows go straight to failed-results, unless a 5xx refused this result alone (H9).
                if isinstance(exc, ApiUnavailable) and not (refused_by_server(exc) and self.api_up()):
                    self.api_usable = False
            else:
                self.delivered = True
                return "posted", answer.status
        try:
            write_failed_result(
                self.directory / FAILED_RESULTS_DIR,
                analysis.results,
                ip=window.ip,
                asn=analysis.as_info.asn,
                as_owner=analysis.as_info.owner,
                usage_estimator=analysis.payload["usageEstimator"],
                fence=self.fence,
            )
        except OSError as exc:
            self.log.error("failed result not written", timestamp=analysis.timestamp, error=exc)
            raise _Stop("write_failed", f"failed-results write: {exc}") from None
        return "backed_up", None

    def dispose(self, names: Collection[str], disposal: Disposal) -> None:
        """Remove a recorded window's ``dispose`` files: delete them, or move them to ``invalid-reports/``."""
        for name in names:
            self.fence()
            if disposal == "quarantine":
                move_to_invalid(self.directory, name)
            else:
                delete_report(self.directory, name)

    # -- the state file ------------------------------------------------------------------------------------------

    def count(self, counter: str, increment: int) -> None:
        """Add to one of the run's counts and to the state's counter of the same name (written later)."""
        if increment:
            self.counts[counter] += increment
            self.state = self.state.counted(**{counter: increment})

    def write_state(self, state: State) -> None:
        """Write ``state`` and make it the run's state; a failed write ends the run (``write_failed``)."""
        self.fence()
        try:
            write_state(self.directory, state)
        except OSError as exc:
            self.log.error("state write failed", error=exc)
            raise _Stop("write_failed", f"state write: {exc}") from None
        self.state = self.written = state

    def write_counters(self) -> None:
        """Write the counts of discards, moves and re-sends that came after the last write."""
        if self.state != self.written:
            self.write_state(self.state)

    def restore_attempt(self) -> None:
        """
        Best effort: a controlled stop must not count towards the S4 cap (windows spec §9.2). Only this run's
        increment is undone, and only where the file still holds it: a recording renamed into place before its
        write failed stays, so that the window is never posted again.
        """
        if self.increment is None:
            return
        (previous, started), self.increment = self.increment, None
        try:
            self.fence()
            on_disk = load_state(self.directory)
            if on_disk is not None and on_disk.attempt == started:
                write_state(self.directory, replace(on_disk, attempt=previous))
        except (OSError, ValueError, LockLost):
            return


def io_error(run_log: EventLogger, what: str, exc: OSError) -> _Stop:
    """Log an I/O error that ends the run (field ``while``, a Python keyword); raise what this returns."""
    fields: dict[str, Any] = {"while": what.replace(" ", "_"), "error": exc}
    run_log.error("installation run stopped, I/O error", **fields)
    return _Stop("io_error", f"{what}: {exc}")
