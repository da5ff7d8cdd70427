"""
One window's way through a run: its selection, its analysis into a payload, its record and log line, and the
removal of its files. Shared by the run (:mod:`processor.installation.run`) and the dry run, which differ only
in what they do with the window (windows spec §9.2) and with the files a selection removes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processor.analysis import analyse
from processor.config import UsageEstimator
from processor.delivery.ip_to_as import AsInfo, Resolver
from processor.delivery.payload import build_payload
from processor.errors import NotAnalysable
from processor.installation.state import Disposal, LastWindow, utc_now_iso
from processor.logs import EventLogger
from processor.reports.files import read_report, report_candidates
from processor.reports.windows import Selection, Window, load_candidates, select_window

#: Starts of one window without being recorded as done after which it is consumed unanalysed (change S4).
MAX_WINDOW_ATTEMPTS = 3

#: Quarantine of unusable report files inside an installation (reports spec §1.2, change D12).
INVALID_REPORTS_DIR = "invalid-reports"

WindowOutcome = Literal["posted", "backed_up", "not_analysable", "dry_run"]


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
class Analysis:
    """A window's analysis: its result and payload, or why it is not analysable, and how it leaves."""

    observations: int  #: distinct observations analysed (0 when not analysed)
    disposal: Disposal
    reason: str | None = None  #: not-analysable reason code
    timestamp: int | None = None  #: result timestamp, Unix seconds
    results: dict[str, Any] | None = None  #: analysis.md §7.7, usage unclamped
    as_info: AsInfo = field(default_factory=AsInfo)
    payload: dict[str, Any] | None = None  #: service.md §5.2

    def last_window(self, window: Window, outcome: WindowOutcome) -> LastWindow:
        """The state file's record of ``window`` done with ``outcome``."""
        return LastWindow(
            id=window.id,
            files=window.names,
            dispose=window.dispose,
            disposal=self.disposal,
            outcome="posted" if outcome == "dry_run" else outcome,
            reason=self.reason,
            timestamp=self.timestamp,
            finished_at=utc_now_iso(),
        )


def analyse_window(
    window: Window, attempts: int, resolver: Resolver, usage_estimator: UsageEstimator, run_log: EventLogger
) -> Analysis:
    """Analyse ``window`` (started ``attempts`` times before) and build its payload (§9.2 steps 2-4)."""
    if attempts >= MAX_WINDOW_ATTEMPTS:
        # S4: a window that keeps killing its worker is consumed without a fourth analysis, data kept.
        analysis = Analysis(0, "quarantine", "repeated_failure")
    else:
        observations = window.observations()
        try:
            result = analyse(observations)
        except NotAnalysable as exc:
            analysis = Analysis(int(observations.size), "delete", exc.reason)
        else:
            results = result.as_results_dict()
            as_info = resolver.resolve(window.ip)
            payload = build_payload(
                results, ip=window.ip, asn=as_info.asn, as_owner=as_info.owner, usage_estimator=usage_estimator
            )
            return Analysis(int(observations.size), "delete", None, int(result.timestamp), results, as_info, payload)
    run_log.warning("window not analysable", reason=analysis.reason, first=window.first.name, last=window.last.name)
    return analysis


def window_done(
    run_log: EventLogger,
    window: Window,
    analysis: Analysis,
    outcome: WindowOutcome,
    status: int | None,
    started: float,
) -> WindowRecord:
    """The record of a window done since ``started`` (monotonic seconds), logged as ``window done``."""
    record = WindowRecord(
        window_id=window.id,
        first=window.first.name,
        last=window.last.name,
        files=len(window.reports),
        observations=analysis.observations,
        ip=window.ip,
        outcome=outcome,
        reason=analysis.reason,
        timestamp=analysis.timestamp,
        asn=analysis.as_info.asn,
        status=status,
        duration_ms=round((time.monotonic() - started) * 1000),
        payload=analysis.payload,
    )
    run_log.info(
        "window done",
        timestamp=record.timestamp,
        outcome=outcome,
        reason=record.reason,
        ms=record.duration_ms,
        first=record.first,
        last=record.last,
        files=record.files,
        observations=record.observations,
        ip=record.ip,
        asn=record.asn,
        status=status,
    )
    return record


def next_selection(directory: Path, skip: Collection[str], run_log: EventLogger) -> Selection:
    """The next selection among the candidates of ``directory`` not named in ``skip`` (reads reports lazily)."""
    names = [name for name in report_candidates(directory) if name not in skip]
    selection = select_window(load_candidates(names, lambda name: read_report(directory / name)), now_s=time.time())
    if selection.young is not None:
        run_log.debug(
            "window scan stopped at a young unusable report", name=selection.young.name, reason=selection.young.reason
        )
    return selection


def present(directory: Path, names: Collection[str]) -> list[str]:
    """Those of ``names`` that are entries of ``directory``, in their order (one listing, no lstat per name)."""
    listed = set(os.listdir(directory))
    return [name for name in names if name in listed]


def delete_report(directory: Path, name: str) -> None:
    """Delete a report (fenced by the caller); an entry that is not a file is moved aside, never rmtree'd."""
    try:
        os.unlink(directory / name)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        move_to_invalid(directory, name)


def move_to_invalid(directory: Path, name: str) -> str | None:
    """Move ``name`` into ``invalid-reports/`` (``.1``, ``.2`` … when taken); the new name, None if it is gone."""
    target_dir = directory / INVALID_REPORTS_DIR
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
        os.rename(directory / name, target)
    except FileNotFoundError:
        return None
    return target.name
