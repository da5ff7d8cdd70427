"""Report files written as the original's tests wrote them: ``Report`` objects through ``ReportJSONEncoder``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from processor.compat.observations import from_array
from processor.reports import Observation, Report, ReportJSONEncoder
from tests.analysis.synthetic import START_S, window

#: The client address of the generated reports, as the condenser writes it (ip:port).
FROM_DIR = "203.0.113.45:4501"
TO_DIR = "[0:0:0:0:0:0:0:0%0]:4500"
#: Probes per generated report, one a second, as a real client sends them.
PROBES_PER_REPORT = 60


def probes(first_ts: int, n: int = PROBES_PER_REPORT) -> list[Observation]:
    """
    ``n`` short-probe observations one second apart from ``first_ts``, from the synthetic window generator.

    The one-way times depend on the second only, so reports that overlap share their observations.
    """
    ts = first_ts + np.arange(n, dtype=np.int64)
    return from_array(window(5_000_000 + ts * 7919 % 400_000, 5_000_000 + ts * 104_729 % 300_000, ts))


def make_report(first_ts: int, *, from_dir: str = FROM_DIR, n: int = PROBES_PER_REPORT) -> Report:
    """A report of ``n`` probes from ``first_ts``, with placeholder key and signature (never verified)."""
    observations = probes(first_ts, n)
    return Report(
        from_dir=from_dir,
        to_dir=TO_DIR,
        packet_type="LONG",
        initial_timestamp=observations[-1].initial_timestamp,
        reception_timestamp=0,
        sent_timestamp=0,
        final_timestamp=0,
        public_key="cHVibGljIGtleQ==",
        observations=observations,
        signature="c2lnbmF0dXJl",
        user_id=23,
        installation_id=41,
    )


def write_reports(
    directory: Path, count: int, first_ts: int = START_S, *, from_dir: str = FROM_DIR, step_s: int = 60
) -> list[str]:
    """Write ``count`` reports of 60 probes, one every ``step_s`` seconds, named tix-report-<ts>.json; their paths."""
    paths = []
    for i in range(count):
        ts = first_ts + i * step_s
        path = os.path.join(directory, f"tix-report-{ts}.json")
        with open(path, "w") as handle:
            json.dump(make_report(ts, from_dir=from_dir), handle, cls=ReportJSONEncoder)
        paths.append(path)
    return paths


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    """An empty installation directory."""
    directory = tmp_path / "23" / "41"
    directory.mkdir(parents=True)
    return directory
