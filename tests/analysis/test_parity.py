"""
Parity with the original analysis on the shared reference windows (analysis spec §11.1).

For every batch of every calibration experiment, and for every window of the service-loop run on the raw
tree 23/41, the window is read with ``read_report``, merged with ``window_observations`` and analysed. Where the
original did not fail and no clock wraps (``error`` null, ``crosses_midnight`` false) the result must have the
same timestamp, usage and quality within 1e-9 and Hurst values within 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processor.analysis import analyse
from processor.errors import NotAnalysable
from processor.reports.files import read_report
from processor.reports.records import window_observations
from tests.shared_data import CALIBRATION_EXPERIMENTS

EXPERIMENTS = CALIBRATION_EXPERIMENTS

#: Tolerances of the parity rule.
USAGE_TOLERANCE = 1e-9
HURST_TOLERANCE = 1e-6


def analyse_files(files: list[Path]) -> dict | str:
    """The results dict of the window made of ``files``, or the not-analysable reason."""
    try:
        return analyse(window_observations([read_report(path).observations for path in files])).as_results_dict()
    except NotAnalysable as exc:
        return exc.reason


def differences(expected: dict, actual: dict | str) -> list[str]:
    """What differs beyond the parity tolerances (empty when the results agree)."""
    if isinstance(actual, str):
        return [f"not analysable: {actual}"]
    found = []
    if expected["timestamp"] != actual["timestamp"]:
        found.append(f"timestamp {actual['timestamp']} != {expected['timestamp']}")
    for direction in ("upstream", "downstream"):
        want, got = expected[direction], actual[direction]
        for key in ("usage", "quality"):
            if not abs(want[key] - got[key]) <= USAGE_TOLERANCE:
                found.append(f"{direction} {key} {got[key]!r} != {want[key]!r}")
        for key in ("rs", "wavelet"):
            if not abs(want["hurst"][key] - got["hurst"][key]) <= HURST_TOLERANCE:
                found.append(f"{direction} hurst {key} {got['hurst'][key]!r} != {want['hurst'][key]!r}")
    return found


def batch_files(batch: Path) -> list[Path]:
    """The files directly in a batch directory (files left in the experiment directory belong to no batch)."""
    return sorted(path for path in batch.iterdir() if path.is_file())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_calibration_windows_match_the_original(shared_data, experiment):
    reference = json.loads((shared_data / "reference" / f"calibration-{experiment}.json").read_text())
    batches = sorted(p for p in (shared_data / "calibration" / experiment).iterdir() if p.is_dir() and p.name.isdigit())
    compared, mismatches = 0, {}

    for batch in batches:
        expected = reference[batch.name]
        if expected["error"] is not None or expected["crosses_midnight"]:
            continue
        compared += 1
        found = differences(expected["results"], analyse_files(batch_files(batch)))
        if found:
            mismatches[batch.name] = found

    assert set(reference) == {batch.name for batch in batches}
    assert compared > 0
    assert {} == mismatches


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_calibration_windows_the_original_could_not_compare_are_analysed(shared_data, experiment):
    """Windows with a midnight wrap (exempt from parity) still give a result: D2 makes them meaningful."""
    reference = json.loads((shared_data / "reference" / f"calibration-{experiment}.json").read_text())
    exempt = [name for name, entry in reference.items() if entry["error"] is not None or entry["crosses_midnight"]]

    reasons = {name: analyse_files(batch_files(shared_data / "calibration" / experiment / name)) for name in exempt}

    assert {} == {name: reason for name, reason in reasons.items() if isinstance(reason, str)}


def test_service_loop_windows_match_the_original(shared_data):
    """The windows the original service formed on tree 23/41; the fifth, where it crashed, now gives a result."""
    reference = json.loads((shared_data / "reference" / "pipeline-23-41.json").read_text())
    tree = shared_data / "reports-tree" / "23" / "41"
    mismatches, failed = {}, []

    for window in reference["windows"]:
        actual = analyse_files([tree / name for name in window["report_files"]])
        if window["error"] is None and not window["crosses_midnight"]:
            found = differences(window["results"], actual)
            if found:
                mismatches[window["report_files"][0]] = found
        elif isinstance(actual, str):
            failed.append((window["report_files"][0], actual))

    assert 5 == len(reference["windows"])
    assert {} == mismatches
    assert [] == failed
