"""
Cost of reading and analysing the calibration windows, against a plain-Python read of the same files.

For every batch directory of every experiment in ``../shared/data/calibration`` it times

(a) a plain-Python read of the batch's files: ``json.load`` + ``base64.b64decode`` + ``struct.unpack_from``
    (``>qciqqqq``) of every record into tuples, and nothing else;
(b) the processor: ``read_report`` of every file, ``window_observations`` and ``analyse``.

Each side is timed as the best of several repeats over all windows (the files stay in the page cache), and the
script prints one JSON line: ``{"windows", "plain_read_ms", "processor_ms", "ratio", "queueing_ms"}`` with
milliseconds per window and ratio = processor / plain read (the acceptance asks for at most 3). ``queueing_ms`` is
the part of (b) that the queueing-share estimator adds (usage-queueing spec): ``queueing_shares`` of both
directions on each window's W, timed alone (it is included in ``processor_ms``).

Usage::

    python bench/analysis.py              # default: 7 repeats
    python bench/analysis.py --repeats 15 --detail
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from processor.analysis import MEANINGFUL_WINDOW_S, analyse, queueing_shares, unwrap_clocks  # noqa: E402
from processor.errors import NotAnalysable  # noqa: E402
from processor.observations import SHORT  # noqa: E402
from processor.reports.files import read_report  # noqa: E402
from processor.reports.records import window_observations  # noqa: E402

#: The project's shared data, beside the checkout.
SHARED_DATA = REPO.parent / "shared" / "data"

#: The wire record: ts, type, size, t1, t2, t3, t4 (reports spec §3).
RECORD = struct.Struct(">qciqqqq")


def batches(calibration: Path) -> list[list[Path]]:
    """The files of every batch: the numeric sub-directories of each experiment, their files only (no recursion)."""
    windows = []
    for experiment in sorted(p for p in calibration.iterdir() if p.is_dir()):
        for batch in sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.isdigit()):
            windows.append(sorted(p for p in batch.iterdir() if p.is_file()))
    return windows


def plain_read(files: list[Path]) -> list[list[tuple[object, ...]]]:
    """Read a batch the plainest way: JSON, base64, one struct unpack per record."""
    records = []
    for path in files:
        with open(path, "rb") as handle:
            message = base64.b64decode(json.load(handle)["message"])
        records.append([RECORD.unpack_from(message, offset) for offset in range(0, len(message), RECORD.size)])
    return records


def processor_window(files: list[Path]) -> object:
    """Read, merge and analyse a batch as the service does."""
    observations = window_observations([read_report(path).observations for path in files])
    try:
        return analyse(observations)
    except NotAnalysable as exc:
        return exc.reason


def meaningful_window(files: list[Path]) -> tuple[np.ndarray, ...] | None:
    """(ts, t1, t2, t3, t4) of a batch's W as :func:`analyse` forms it (unwrapped), or None without enough span."""
    observations = window_observations([read_report(path).observations for path in files])
    short = observations[observations["type"] == SHORT]
    ts = short["ts"].astype(np.int64)
    if ts.size == 0 or ts[-1] - ts[0] < MEANINGFUL_WINDOW_S:
        return None
    clocks = unwrap_clocks(*(short[name].astype(np.int64) for name in ("t1", "t2", "t3", "t4")))
    first = int(np.searchsorted(ts, ts[-1] - MEANINGFUL_WINDOW_S, side="right"))
    return (ts[first:], *(clock[first:] for clock in clocks))


def best_seconds(step: Callable[[list[Path]], object], windows: list[list[Path]], repeats: int) -> float:
    """Best total time, over ``repeats`` runs, of ``step`` applied to every window, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for files in windows:
            step(files)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per side; the best counts (default 7)")
    parser.add_argument("--detail", action="store_true", help="also print the processor's three stages")
    args = parser.parse_args(argv)
    calibration = SHARED_DATA / "calibration"
    if not calibration.is_dir():
        print(f"no calibration data at {calibration}", file=sys.stderr)
        return 1
    windows = batches(calibration)
    count = len(windows)
    # Interleave the two sides so that a slow phase of the machine does not favour one of them.
    plain = processor = float("inf")
    for _ in range(args.repeats):
        plain = min(plain, best_seconds(plain_read, windows, 1))
        processor = min(processor, best_seconds(processor_window, windows, 1))
    # The estimator's added cost: both directions on every window's W, nothing else, per window.
    windows_w = {id(files): meaningful_window(files) for files in windows}
    queueing = best_seconds(
        lambda files: queueing_shares(*window) if (window := windows_w[id(files)]) is not None else None,
        windows,
        args.repeats,
    )
    result = {
        "windows": count,
        "plain_read_ms": round(plain / count * 1e3, 4),
        "processor_ms": round(processor / count * 1e3, 4),
        "ratio": round(processor / plain, 3),
        "queueing_ms": round(queueing / count * 1e3, 4),
    }
    if args.detail:
        reports = {id(files): [read_report(path).observations for path in files] for files in windows}
        merged = {key: window_observations(parts) for key, parts in reports.items()}
        read_s = best_seconds(lambda files: [read_report(path) for path in files], windows, args.repeats)
        merge_s = best_seconds(lambda files: window_observations(reports[id(files)]), windows, args.repeats)
        analyse_s = best_seconds(lambda files: _analyse_quietly(merged[id(files)]), windows, args.repeats)
        result |= {
            "read_report_ms": round(read_s / count * 1e3, 4),
            "window_observations_ms": round(merge_s / count * 1e3, 4),
            "analyse_ms": round(analyse_s / count * 1e3, 4),
        }
    print(json.dumps(result))
    return 0


def _analyse_quietly(observations: object) -> object:
    try:
        return analyse(observations)  # type: ignore[arg-type]
    except NotAnalysable as exc:
        return exc.reason


if __name__ == "__main__":
    sys.exit(main())
