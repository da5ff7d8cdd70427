"""A simulated calibration experiment: client logs, their batches, ``description.yml`` and ``network_usage.log``."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from processor.reports.files import report_json
from processor_tools.calibration.batches import plan_batches
from processor_tools.simulate.installation import simulate_installation, split_into_reports
from processor_tools.simulate.model import (
    DEFAULT_START_S,
    LevelName,
    QueueSegment,
    draw_level,
    draw_profile,
)
from processor_tools.simulate.tree import draw_address

#: Download caps of the steps, as shares of the link: the staircase of the 2017 experiments.
STEP_SHARES = (1.0, 0.75, 0.5, 0.25, 0.0)
#: Length of each step, minutes.
STEP_MINUTES = 30
#: Link capacity written as ``max_speed_kbps``, kbit/s.
CAPACITY_KBPS = 30_000.0
#: Interface name written into ``description.yml``.
INTERFACE = "sim0"
#: Smallest mean queueing delay of a busy second, nanoseconds.
MIN_QUEUE_DELAY_NS = 20e6


@dataclass(frozen=True, slots=True)
class ExperimentSummary:
    """What :func:`write_calibration_experiment` wrote."""

    directory: Path
    batches: int  #: batch directories under ``batches/``
    client_logs: int  #: files in ``tix-time-client-logs/``
    observations: int  #: records in the client logs

    def as_dict(self) -> dict[str, object]:
        """The one-line summary of the CLI, with the three paths ``calibrate`` and the notebook take."""
        return {
            "batches": self.batches,
            "client_logs": self.client_logs,
            "observations": self.observations,
            "batches_dir": str(self.directory / "batches"),
            "description": str(self.directory / "description.yml"),
            "net_usage": str(self.directory / "network_usage.log"),
        }


def calibration_schedule(
    rng: np.random.Generator, shares: Sequence[float], step_minutes: float
) -> tuple[QueueSegment, ...]:
    """One segment per step: downstream probes queue in a ``share`` of the seconds, upstream stays idle."""
    segments = []
    for i, share in enumerate(shares):
        kind: LevelName = "idle" if share <= 0 else "saturated" if share >= 1 else "moderate"
        level = draw_level(rng, kind)
        # A queue well above the estimators' 3 ms margin, so that the cap, not the margin, decides what is measured.
        mean_delay_ns = max(level.mean_delay_ns, MIN_QUEUE_DELAY_NS)
        down = dataclasses.replace(level, busy_share=float(share), mean_delay_ns=mean_delay_ns)
        start_s = i * 60.0 * step_minutes
        segments.append(QueueSegment(start_s, start_s + 60.0 * step_minutes, down, draw_level(rng, "idle")))
    return tuple(segments)


def write_calibration_experiment(
    out: Path,
    *,
    seed: int = 0,
    start_s: int = DEFAULT_START_S,
    shares: Sequence[float] = STEP_SHARES,
    step_minutes: float = STEP_MINUTES,
) -> ExperimentSummary:
    """
    Write a calibration experiment of one simulated client whose downstream queueing follows a known schedule.

    ``out`` (absent or empty) receives what a real run and the batch formatter leave: ``tix-time-client-logs/``
    (``<epoch ms>-tix-log.json``), ``batches/<first ts>/`` (the windows the service would form, as the formatter
    cuts them), ``description.yml`` (2018 schema: step i caps the download at ``shares[i]`` for ``step_minutes``)
    and ``network_usage.log`` (per minute, the share of seconds with a downstream queue × the capacity). The
    times are the client clock's, as on a real test machine. The experiment is built beside ``out`` and renamed
    into place, so ``out`` is complete or absent. The same arguments give the same files.

    Raises
    ------
    OSError
        When ``out`` cannot be written or is a non-empty directory.
    """
    rng = np.random.default_rng([seed, 2])
    minutes = len(shares) * step_minutes
    profile = draw_profile(rng, minutes=minutes, ms_clock=False)
    profile = dataclasses.replace(profile, schedule=calibration_schedule(rng, shares, step_minutes))
    records, truth = simulate_installation(rng, start_s=start_s, minutes=minutes, profile=profile)
    client_start_s = start_s + profile.client.offset_ns / 1e9
    address = draw_address(rng, "private")

    out.parent.mkdir(parents=True, exist_ok=True)
    building = out.parent / f".{out.name}.{secrets.token_hex(4)}.partial"
    try:
        logs = building / "tix-time-client-logs"
        logs.mkdir(parents=True)
        for part in split_into_reports(records, rng):
            name = f"{int(part['ts'][0]) * 1000 + int(rng.integers(1000))}-tix-log.json"
            report = report_json(part, from_address=address, user_id=0, installation_id=0, rng=rng)
            (logs / name).write_bytes(report)
        plan = plan_batches(logs, progress=False)
        for batch in plan.batches:
            (building / "batches" / batch.name).mkdir(parents=True)
            for name in batch.files:
                shutil.copyfile(logs / name, building / "batches" / batch.name / name)
        description = {
            "start_time": round(client_start_s, 3),
            "max_speed_kbps": CAPACITY_KBPS,
            "network_interface": INTERFACE,
            "intervals": [{"duration_minutes": step_minutes, "speed_percentage": 100 * s} for s in shares],
        }
        (building / "description.yml").write_text(yaml.safe_dump(description, sort_keys=False), encoding="utf-8")
        busy = truth.queue_down_ns[: int(minutes) * 60].reshape(-1, 60) > 0
        lines = [f"{client_start_s + 60 * (i + 1):.4f}|{rate}" for i, rate in enumerate(busy.mean(1) * CAPACITY_KBPS)]
        (building / "network_usage.log").write_text("\n".join(["time_epoch|speed_kbps", *lines]) + "\n")
        os.rename(building, out)  # replaces an empty directory, fails on a non-empty one
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ExperimentSummary(out, len(plan.batches), len(os.listdir(out / "tix-time-client-logs")), records.size)
