"""The dry run of one installation: the windows a run would process now and their payloads; it changes nothing."""

from __future__ import annotations

import time
from collections import Counter

from processor.config import Config
from processor.delivery.ip_to_as import Resolver
from processor.installation.budget import Budget
from processor.installation.run import io_error, log
from processor.installation.state import read_state
from processor.installation.summary import RunOutcome, RunSummary
from processor.installation.window import (
    INVALID_REPORTS_DIR,
    WindowOutcome,
    WindowRecord,
    analyse_window,
    next_selection,
    present,
    window_done,
)
from processor.reports.tree import checked_directory


def dry_run_installation(config: Config, user_id: str, installation_id: str, resolver: Resolver) -> RunSummary:
    """
    The windows a run would process now, each analysed, with the payload it would post; changes nothing.

    No lock, no state write, no deletion or move, no POST, no failed-results file and no re-sending: the files a
    run would remove (recovery, gap and IP rules, quarantines, disposals) are only left out of the next
    selection. Analysed windows have outcome ``dry_run`` and carry their payload.
    """
    run_log = log.bind(user=user_id, installation=installation_id)
    directory = checked_directory(config.reports_base_path, user_id, installation_id, None, run_log)
    if directory is None:
        return RunSummary(user_id, installation_id, "invalid", dry_run=True)
    budget = Budget(config.task_budget_s, run_log)
    counts: Counter[str] = Counter()
    windows: list[WindowRecord] = []
    outcome: RunOutcome = "done"
    try:
        state = read_state(directory, set_aside=False)
        removed = set(present(directory, state.last_window.dispose) if state.last_window is not None else ())
        counts["recovered"] = len(removed)
        while not budget.used():
            selection = next_selection(directory, removed, run_log)
            removed.update(selection.removed_names)
            for discard in selection.discards:
                counts[f"discarded_{discard.reason}"] += len(discard.names)
                run_log.info(
                    "dry run, reports would be discarded",
                    reason=discard.reason,
                    files=len(discard.names),
                    names=",".join(discard.names),
                )
            for item in selection.invalid:
                counts["invalid_reports"] += 1
                run_log.warning(
                    "dry run, unusable report would be moved",
                    name=item.name,
                    reason=item.reason,
                    moved_to=f"{INVALID_REPORTS_DIR}/{item.name}",
                )
            window = selection.window
            if window is None:
                break
            started = time.monotonic()
            analysis = analyse_window(window, state.attempts(window.id), resolver, config.usage_estimator, run_log)
            removed.update(window.dispose)
            window_outcome: WindowOutcome = "dry_run" if analysis.payload is not None else "not_analysable"
            windows.append(window_done(run_log, window, analysis, window_outcome, None, started))
    except OSError as exc:
        outcome = io_error(run_log, "reading reports", exc).outcome
    return RunSummary.of(user_id, installation_id, outcome, windows, counts, budget, dry_run=True)
