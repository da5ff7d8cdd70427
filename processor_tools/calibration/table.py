"""Batch directories analysed into the calibration table: measured, expected and actual usage (tools spec §2.4–§2.7)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from processor.analysis import analyse
from processor.errors import NotAnalysable
from processor.reports.files import read_report, report_candidates
from processor.reports.windows import load_candidates, select_window
from processor_tools.calibration.batches import bar_disabled
from processor_tools.calibration.description import Description, expected_usage, load_description
from processor_tools.calibration.netusage import (
    NET_USAGE_SEPARATOR,
    group_network_usage,
    read_network_usage,
    utc_times,
)

#: Actual usage (share of capacity) at or below which the relative error uses the absolute error (tools spec §2.8).
ACTUAL_USAGE_FLOOR = 0.05

#: The table's columns, in order. Usage values are the analysis's unclamped values (change D4). The queueing-share
#: estimate (usage-queueing spec) comes last, so the original columns keep their positions.
COLUMNS = (
    "batch",  # the batch directory name
    "batch_start",  # the name as an integer, Unix seconds
    "batch_end",  # the result timestamp, Unix seconds (empty when not analysed)
    "batch_start_time",  # the two as UTC date-times (ISO 8601 with Z in the CSV)
    "batch_end_time",
    "report_files",  # files in the batch's window
    "reason",  # why the batch could not be analysed (empty when analysed)
    "down_usage",
    "up_usage",
    "down_quality",
    "up_quality",
    "down_hurst_rs",
    "down_hurst_wavelet",
    "up_hurst_rs",
    "up_hurst_wavelet",
    "expected_downstream_usage",  # E of tools spec §2.5 (empty outside the schedule)
    "error",  # |E − down_usage|
    "relative_error",  # error / E, or error when E = 0
    "actual_rate_kbps",  # mean measured rate of the paired 9-minute group, kbit/s (network log only)
    "actual_usage",  # that rate / capacity
    "actual_error",  # |actual_usage − down_usage|
    "actual_relative_error",  # actual_error / actual_usage, or actual_error when actual_usage ≤ 0.05
    "down_usage_queueing",  # the queueing share of the downstream direction, in [0, 1] (empty when null)
    "up_usage_queueing",
    "error_queueing",  # |E − down_usage_queueing|
    "relative_error_queueing",  # error_queueing / E, or error_queueing when E = 0
)

#: Reason given to a batch directory whose files do not make a window (fewer than 1084 records).
NO_WINDOW = "no_window"
#: Reason given to a batch directory without any ``*.json`` file.
NO_REPORT_FILES = "no_report_files"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """The analysis of one batch directory: its results dict, or the reason it has none."""

    name: str  #: the directory name (decimal Unix seconds)
    results: dict[str, Any] | None  #: the original results dict (analysis spec §7.7), usage unclamped
    reason: str | None  #: a not-analysable reason code, ``no_window``, ``no_report_files`` or ``io_error: …``
    report_files: int  #: files of the window analysed (0 when there was none)

    @property
    def start_s(self) -> int:
        """batch_start: the directory name as an integer, Unix seconds."""
        return int(self.name)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Everything one calibration analysis produced; the CLI and the notebook display it."""

    name: str  #: the experiment's name, for titles
    description: Description
    outcomes: tuple[BatchOutcome, ...]
    network_samples: pd.DataFrame | None  #: ``time_s``, ``rate_kbps`` per minute, or None without a network log
    network_groups: pd.DataFrame | None  #: 9-minute groups (``time_s``, ``time``, ``rate_kbps``), or None
    table: pd.DataFrame  #: one row per batch directory, columns :data:`COLUMNS`


def batch_directories(batches_dir: str | Path) -> list[Path]:
    """The sub-directories of ``batches_dir`` whose name is a decimal number, in ascending numeric order."""
    root = Path(batches_dir)
    found = [entry for entry in root.iterdir() if entry.name.isdecimal() and entry.is_dir()]
    return sorted(found, key=lambda entry: (int(entry.name), entry.name))


def analyse_batch(directory: str | Path) -> BatchOutcome:
    """
    Analyse one batch directory read-only (tools spec §2.4, change S10).

    The ``*.json`` files are read in name order and the window is formed in memory with the service's selection
    (:func:`processor.reports.windows.select_window`, every unusable file counted as old and left out); nothing is
    moved or deleted. A batch written by the formatter is exactly one window. Never raises for bad data: the
    reason comes back in the outcome.
    """
    directory = Path(directory)
    name = directory.name
    try:
        names = report_candidates(directory)
        if not names:
            return BatchOutcome(name, None, NO_REPORT_FILES, 0)
        candidates = list(load_candidates(names, lambda file: read_report(directory / file)))
    except OSError as error:
        return BatchOutcome(name, None, f"io_error: {error.strerror or error}", 0)
    window = select_window(candidates, now_s=math.inf).window
    if window is None:
        return BatchOutcome(name, None, NO_WINDOW, 0)
    try:
        results = analyse(window.observations()).as_results_dict()
    except NotAnalysable as error:
        return BatchOutcome(name, None, error.reason, len(window.reports))
    return BatchOutcome(name, results, None, len(window.reports))


def analyse_batches(batches_dir: str | Path, *, progress: bool | None = None) -> list[BatchOutcome]:
    """Analyse every batch directory of ``batches_dir`` in ascending order (a progress bar on a terminal)."""
    directories = batch_directories(batches_dir)
    bar = tqdm(directories, desc="analysing", unit="batch", disable=bar_disabled(progress))
    return [analyse_batch(directory) for directory in bar]


def _row(outcome: BatchOutcome, description: Description) -> dict[str, Any]:
    row: dict[str, Any] = {column: None for column in COLUMNS}
    row.update(batch=outcome.name, batch_start=outcome.start_s, report_files=outcome.report_files)
    row["reason"] = outcome.reason or ""
    if outcome.results is None:
        return row
    results = outcome.results
    end_s = int(results["timestamp"])
    row["batch_end"] = end_s
    for prefix, direction in (("down", results["downstream"]), ("up", results["upstream"])):
        row[f"{prefix}_usage"] = direction["usage"]
        row[f"{prefix}_quality"] = direction["quality"]
        row[f"{prefix}_hurst_rs"] = direction["hurst"]["rs"]
        row[f"{prefix}_hurst_wavelet"] = direction["hurst"]["wavelet"]
        row[f"{prefix}_usage_queueing"] = direction.get("usage_queueing")
    expected = expected_usage(description.steps, outcome.start_s, end_s)
    if expected is not None:
        error = abs(expected - results["downstream"]["usage"])
        row.update(
            expected_downstream_usage=expected, error=error, relative_error=error / expected if expected else error
        )
        if row["down_usage_queueing"] is not None:
            error_queueing = abs(expected - row["down_usage_queueing"])
            row.update(
                error_queueing=error_queueing,
                relative_error_queueing=error_queueing / expected if expected else error_queueing,
            )
    return row


def calibration_table(
    outcomes: Sequence[BatchOutcome], description: Description, network_groups: pd.DataFrame | None = None
) -> pd.DataFrame:
    """
    The calibration table: one row per batch, sorted by ``batch_start``, columns :data:`COLUMNS`.

    Measured values come from the results (unclamped usage, change D4), the expected usage from
    :func:`~processor_tools.calibration.description.expected_usage`. A batch that could not be analysed keeps its name,
    start and reason, with empty cells elsewhere. With ``network_groups`` (tools spec §2.7), group i is paired
    **by position** with the i-th analysed row that has an expected usage (the original's table), over the shorter
    of the two; its rate divided by the description's capacity is the actual usage.
    """
    rows = [_row(outcome, description) for outcome in sorted(outcomes, key=lambda item: item.start_s)]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("batch_start", "batch_end", "report_files"):
        table[column] = table[column].astype("Int64")
    for column in COLUMNS[7:]:
        table[column] = table[column].astype("float64")
    table["batch"] = table["batch"].astype(str)
    table["reason"] = table["reason"].astype(str)
    table["batch_start_time"] = utc_times(table["batch_start"].astype("float64"))
    table["batch_end_time"] = utc_times(table["batch_end"].astype("float64"))
    if network_groups is not None:
        paired = table.index[table["expected_downstream_usage"].notna()]
        count = min(len(paired), len(network_groups))
        rows_index = paired[:count]
        rate = network_groups["rate_kbps"].to_numpy()[:count]
        actual = rate / description.capacity
        error = np.abs(actual - table.loc[rows_index, "down_usage"].to_numpy())
        table.loc[rows_index, "actual_rate_kbps"] = rate
        table.loc[rows_index, "actual_usage"] = actual
        table.loc[rows_index, "actual_error"] = error
        table.loc[rows_index, "actual_relative_error"] = np.where(actual > ACTUAL_USAGE_FLOOR, error / actual, error)
    return table


def calibrate(
    batches_dir: str | Path,
    description_file: str | Path,
    net_usage_file: str | Path | None = None,
    *,
    separator: str = NET_USAGE_SEPARATOR,
    progress: bool | None = None,
    name: str | None = None,
) -> Calibration:
    """
    Run a whole calibration analysis: read the description (and the network log), analyse every batch, build the table.

    ``net_usage_file`` None or ``""`` means no network log (all 2017 experiments). ``name`` (for titles) defaults
    to the name of the directory that holds ``description_file``.

    Raises
    ------
    BadDescription
        When ``description.yml`` is in neither schema or ``network_usage.log`` is malformed.
    OSError
        When ``batches_dir`` or a file cannot be read.
    """
    description = load_description(description_file)
    samples = groups = None
    if net_usage_file:
        samples = read_network_usage(net_usage_file, separator=separator)
        groups = group_network_usage(samples)
    outcomes = tuple(analyse_batches(batches_dir, progress=progress))
    table = calibration_table(outcomes, description, groups)
    name = name or Path(description_file).resolve().parent.name
    return Calibration(name, description, outcomes, samples, groups, table)


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """
    Summary of a calibration table, for the JSON line of ``calibrate``.

    ``batches`` directories, ``windows`` analysed, ``not_analysable`` with counts per ``reasons``, ``compared``
    rows with an expected usage, ``mae`` (mean of ``error``), ``median_ae``, ``max_ae``, ``mean_relative_error``,
    and, with a network log, ``actual_compared`` and ``actual_mae``; then the same for the queueing-share
    estimate: ``mae_queueing`` (mean of ``error_queueing``), ``median_ae_queueing``, ``max_ae_queueing``.
    Statistics of no value are null.
    """
    errors = table["error"].dropna()
    queueing_errors = table["error_queueing"].dropna()
    actual_errors = table["actual_error"].dropna()
    reasons = Counter(reason for reason in table["reason"] if reason)
    return {
        "batches": len(table),
        "windows": int(table["batch_end"].notna().sum()),
        "not_analysable": sum(reasons.values()),
        "reasons": dict(sorted(reasons.items())),
        "compared": len(errors),
        "mae": _number(errors.mean()) if len(errors) else None,
        "median_ae": _number(errors.median()) if len(errors) else None,
        "max_ae": _number(errors.max()) if len(errors) else None,
        "mean_relative_error": _number(table["relative_error"].dropna().mean()) if len(errors) else None,
        "actual_compared": len(actual_errors),
        "actual_mae": _number(actual_errors.mean()) if len(actual_errors) else None,
        "mae_queueing": _number(queueing_errors.mean()) if len(queueing_errors) else None,
        "median_ae_queueing": _number(queueing_errors.median()) if len(queueing_errors) else None,
        "max_ae_queueing": _number(queueing_errors.max()) if len(queueing_errors) else None,
    }


def error_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """
    Count, mean, std, min, quartiles and max of ``error`` and ``relative_error`` (tools spec §2.8 item 4), and of
    ``error_queueing`` and ``relative_error_queueing`` beside them.
    """
    return table[["error", "relative_error", "error_queueing", "relative_error_queueing"]].describe()


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as CSV (comma-separated, header, no index, UTC ISO 8601 date-times, empty cells for none)."""
    path = Path(path)
    table.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")  # the times are UTC
    return path


def summary_line(table: pd.DataFrame, **extra: Any) -> str:
    """The summary as one JSON line (``extra`` keys are appended)."""
    return json.dumps({**summary(table), **extra})
