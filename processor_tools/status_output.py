"""What ``python -m processor status`` prints: a table, one JSON document, or the Prometheus text format."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from processor.installation.lock import LockState
    from processor_tools.status import InstallationStatus, TreeStatus

#: Prefix of every Prometheus metric name.
METRIC_PREFIX = "tix_processor_"

#: Gauges per installation (labels ``user`` and ``installation``): name without the prefix, help text.
INSTALLATION_GAUGES = (
    ("pending_report_files", "Report files waiting in the installation directory."),
    ("pending_observations", "Observation records in the usable pending report files."),
    ("window_ready", "1 when a complete window can be processed now, else 0."),
    ("window_blocked_young", "1 when a young unusable report file ends the window scan, else 0."),
    ("ready_windows", "Complete windows one run would process in a row."),
    ("unusable_report_files", "Pending report files that cannot be used (young or old)."),
    ("would_quarantine", "Old unusable report files the next run would move to invalid-reports."),
    ("would_discard", "Report files the next run would delete by the gap and IP-change rules."),
    ("failed_results", "Failed results waiting to be re-sent."),
    ("rejected_results", "Failed results the API rejected (failed-results/rejected)."),
    ("invalid_reports", "Entries of invalid-reports (unusable or quarantined report files)."),
    (
        "last_delivery_age_seconds",
        "Seconds since tix-api last accepted a result, posted or re-sent (absent if unknown).",
    ),
    ("last_delivery_result_timestamp_seconds", "Result timestamp of the last result tix-api accepted, Unix s."),
    ("last_window_age_seconds", "Seconds since the last window was recorded, whatever its outcome."),
    ("state_corrupt", "1 when the state file cannot be parsed (the next run sets it aside)."),
    ("lock_held", "1 when a lock file names a holder that is not stale, else 0."),
    ("lock_stale", "1 when the lock file is expired or its holder process is gone, else 0."),
)

#: Counter families per installation, from the state file's counters (labels: the one named here, if any, then
#: ``user`` and ``installation``): name without the prefix, help text, label.
COUNTER_FAMILIES = (
    ("windows_total", "Windows recorded as done since the state file was created, by outcome.", "outcome"),
    ("not_analysable_windows_total", "Not-analysable windows since the state file was created, by reason.", "reason"),
    ("resent_total", "Failed results tix-api accepted on a re-send since the state file was created.", None),
    ("rejected_total", "Failed results moved to failed-results/rejected since the state file was created.", None),
    (
        "unusable_reports_moved_total",
        "Unusable report files moved to invalid-reports since the state file was created.",
        None,
    ),
    (
        "discarded_reports_total",
        "Report files deleted by the gap and IP-change rules since the state file was created, by reason.",
        "reason",
    ),
)

#: Each integer counter of the state file (the JSON's ``counters``): its family and the value of that family's
#: label. ``not_analysable``, by reason, goes to ``not_analysable_windows_total`` and, summed, to ``windows_total``.
STATE_COUNTERS: dict[str, tuple[str, str | None]] = {
    "posted": ("windows_total", "posted"),
    "backed_up": ("windows_total", "backed_up"),
    "resent": ("resent_total", None),
    "rejected": ("rejected_total", None),
    "invalid_reports": ("unusable_reports_moved_total", None),
    "discarded_gap": ("discarded_reports_total", "gap"),
    "discarded_ip_change": ("discarded_reports_total", "ip_change"),
}

#: Tree totals, one gauge ``tix_processor_tree_<key>`` each: key of the JSON summary, help text.
TREE_TOTALS = (
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


# --------------------------------------------------------------------------------------------------------------
# Table
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


def _lock_cell(lock: LockState | None) -> str:
    if lock is None:
        return "-"
    who = "unknown" if lock.holder is None else f"{lock.holder.host}:{lock.holder.pid}"
    return f"{who} stale" if lock.stale else who


def _readiness_cell(item: InstallationStatus) -> str:
    if item.readiness == "ready" and item.next_window is not None and item.next_window.attempts:
        return f"ready(attempt {item.next_window.attempts})"
    return item.readiness


#: The table's columns and what each shows (``status --help`` prints them).
TABLE_COLUMNS = (
    ("USER", "user id"),
    ("INST", "installation id"),
    ("NEXT", "the next window: ready (with its attempt count once started before), waiting for reports,"
     " blocked_young (a young unusable file ends the scan) or error [why]"),
    ("FILES", "report files waiting (those of the last window still to remove left out)"),
    ("OBS", "observation records in the usable ones"),
    ("WIN", "complete windows one run would process now, in a row (time budget ignored)"),
    ("QUAR", "old unusable report files that run would move to invalid-reports/"),
    ("FAILED", "failed results waiting to be re-sent (failed-results/)"),
    ("INVALID", "entries of invalid-reports/ (unusable or quarantined report files)"),
    ("LAST WINDOW", "outcome (reason) and age of the last window recorded in the state file"),
    ("LOCK", "host:pid of the lock holder, 'stale' when a worker may take it over now; - when unlocked"),
)  # fmt: skip
TABLE_HEADER = tuple(title for title, _meaning in TABLE_COLUMNS)


def columns_help(width: int = 110) -> str:
    """The table's columns and their meaning, as ``status --help`` shows them, wrapped at ``width`` characters."""
    indent = max(len(title) for title in TABLE_HEADER) + 4
    lines = ["columns of the table:"]
    for title, meaning in TABLE_COLUMNS:
        lines += textwrap.wrap(
            meaning, width, initial_indent=f"  {title:<{indent - 4}}  ", subsequent_indent=" " * indent
        )
    return "\n".join(lines)


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
    """A plain-text table of :data:`TABLE_COLUMNS`, one row per installation, then the summary line; ``tty`` makes
    the header bold."""
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


def lock_json(lock: LockState, now_s: float) -> dict[str, Any]:
    """The JSON object of a lock: its holder, expiry (Unix seconds and seconds from ``now_s``) and staleness."""
    holder = lock.holder
    return {
        "host": None if holder is None else holder.host,
        "pid": None if holder is None else holder.pid,
        "acquired_at": None if holder is None else holder.acquired_at,
        "expires_at": lock.expires_at,
        "expires_in_s": round(lock.expires_at - now_s, 3),
        "stale": lock.stale,
        "stale_reason": lock.stale_reason,
    }


def render_json(status: TreeStatus) -> str:
    """One JSON document ``{"installations": [...], "summary": {...}}``, newline-terminated."""
    return json.dumps(status.as_dict(), indent=1) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------------------------------------------


def _installation_values(item: InstallationStatus, now_s: float) -> dict[str, float]:
    """The gauges of one installation by name; an age or delivery that is not known has no value."""
    values: dict[str, float] = {
        "pending_report_files": item.pending_files,
        "pending_observations": item.pending_observations,
        "window_ready": item.readiness == "ready",
        "window_blocked_young": item.readiness == "blocked_young",
        "ready_windows": item.windows_ready,
        "unusable_report_files": item.unusable_young + item.unusable_old,
        "would_quarantine": item.would_quarantine,
        "would_discard": item.would_discard,
        "failed_results": item.failed_results,
        "rejected_results": item.rejected_results,
        "invalid_reports": item.invalid_reports,
        "state_corrupt": item.state == "corrupt",
        "lock_held": item.lock is not None and not item.lock.stale,
        "lock_stale": item.lock is not None and item.lock.stale,
    }
    delivery_s = item.last_delivery_at_s
    if delivery_s is not None:
        values["last_delivery_age_seconds"] = round(now_s - delivery_s, 3)
    if item.last_delivery is not None:
        values["last_delivery_result_timestamp_seconds"] = item.last_delivery.timestamp
    window_s = item.last_window_at_s
    if window_s is not None:
        values["last_window_age_seconds"] = round(now_s - window_s, 3)
    return values


class StatusCollector(Collector):
    """
    The metric families of one :class:`~processor_tools.status.TreeStatus`, for a ``CollectorRegistry``.

    Per-installation families carry the labels ``user`` and ``installation``; tree totals are separate families
    named ``tix_processor_tree_*`` (and ``tix_processor_installations`` by readiness), so that no family mixes
    label sets. Ages are seconds at the time of the look; an age that is not known has no sample.
    """

    def __init__(self, status: TreeStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        labels = ["user", "installation"]
        gauges = {
            name: GaugeMetricFamily(METRIC_PREFIX + name, help_text, labels=labels)
            for name, help_text in INSTALLATION_GAUGES
        }
        counters = {
            name: CounterMetricFamily(METRIC_PREFIX + name, help_text, labels=[label, *labels] if label else labels)
            for name, help_text, label in COUNTER_FAMILIES
        }
        for item in status.installations:
            key = [str(item.user), str(item.installation)]
            for name, value in _installation_values(item, status.now_s).items():
                gauges[name].add_metric(key, value)
            if item.counters is None:
                continue
            for counter, (family, label_value) in STATE_COUNTERS.items():
                counters[family].add_metric([label_value, *key] if label_value else key, item.counters[counter])
            reasons = item.counters["not_analysable"]
            counters["windows_total"].add_metric(["not_analysable", *key], sum(reasons.values()))
            for reason, count in sorted(reasons.items()):
                counters["not_analysable_windows_total"].add_metric([reason, *key], count)
        yield from gauges.values()
        yield from counters.values()

        summary = status.summary()
        installations = GaugeMetricFamily(
            METRIC_PREFIX + "installations",
            "Installation directories, by readiness of the next window.",
            labels=["readiness"],
        )
        for readiness, count in summary["readiness"].items():
            installations.add_metric([readiness], count)
        yield installations
        for total, help_text in TREE_TOTALS:
            yield GaugeMetricFamily(f"{METRIC_PREFIX}tree_{total}", help_text, value=summary[total])
        last_delivery = GaugeMetricFamily(
            METRIC_PREFIX + "tree_last_delivery_age_seconds",
            "Seconds since the most recent posted window of any installation.",
            labels=[],
        )
        if summary["last_delivery"] is not None:
            last_delivery.add_metric([], summary["last_delivery"]["age_s"])
        yield last_delivery
        yield GaugeMetricFamily(
            METRIC_PREFIX + "status_duration_seconds",
            "Wall-clock time the status look took.",
            value=round(status.duration_s, 3),
        )


def status_registry(status: TreeStatus) -> CollectorRegistry:
    """A registry holding only the families of ``status``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return registry


def render_prometheus(status: TreeStatus) -> str:
    """The status in the Prometheus text exposition format, for a node-exporter textfile collector."""
    return generate_latest(status_registry(status)).decode("utf-8")


def write_textfile(status: TreeStatus, path: Path) -> None:
    """Write :func:`render_prometheus` to ``path`` atomically (a temporary file in its directory, then a rename)."""
    write_to_textfile(str(path), status_registry(status))
