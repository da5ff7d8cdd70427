"""The calibration machine's ``network_usage.log``: its measured download rate per minute (tools spec §2.3, §2.7)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from processor.errors import BadDescription

#: Column separator of ``network_usage.log``.
NET_USAGE_SEPARATOR = "|"

#: Samples (minutes) averaged per group: batches start about 9 minutes apart.
NET_USAGE_SAMPLES_PER_BATCH = 9


class BadNetworkUsage(BadDescription):
    """A ``network_usage.log`` line that is not ``<Unix seconds>|<kbit/s>``; the message names the line."""


def read_network_usage(path: str | Path, *, separator: str = NET_USAGE_SEPARATOR) -> pd.DataFrame:
    """
    Read ``network_usage.log``: a header line, then one ``<Unix seconds>|<kbit/s>`` line per minute.

    Returns
    -------
    pandas.DataFrame
        Columns ``time_s`` (Unix seconds, float) and ``rate_kbps`` (kbit/s, float), in file order. Blank lines are
        ignored.

    Raises
    ------
    BadNetworkUsage
        When a line after the header does not hold two numbers.
    """
    times: list[float] = []
    rates: list[float] = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(separator)
        try:
            if len(fields) != 2:
                raise ValueError(line)
            times.append(float(fields[0]))
            rates.append(float(fields[1]))
        except ValueError:
            raise BadNetworkUsage(f"{Path(path).name} line {number}: expected '<seconds>{separator}<kbps>'") from None
    return pd.DataFrame({"time_s": np.array(times, dtype=np.float64), "rate_kbps": np.array(rates, dtype=np.float64)})


def group_network_usage(samples: pd.DataFrame, *, size: int = NET_USAGE_SAMPLES_PER_BATCH) -> pd.DataFrame:
    """
    Average the samples in consecutive groups of ``size`` in file order; an incomplete last group is dropped.

    Returns
    -------
    pandas.DataFrame
        Columns ``time_s`` (the first sample's time, Unix seconds), ``time`` (the same as a UTC date-time)
        and ``rate_kbps`` (the group's mean rate, kbit/s), one row per group.
    """
    groups = len(samples) // size
    time_s = samples["time_s"].to_numpy()[: groups * size : size]
    rate_kbps = samples["rate_kbps"].to_numpy()[: groups * size].reshape(groups, size).mean(axis=1)
    return pd.DataFrame({"time_s": time_s, "time": utc_times(time_s), "rate_kbps": rate_kbps})


def utc_times(seconds: Iterable[float | None]) -> pd.Series:
    """Unix seconds as UTC date-times (timezone-aware); None and NaN become ``NaT``."""
    values = pd.to_numeric(pd.Series(list(seconds), dtype="object"), errors="coerce").astype("float64")
    return pd.to_datetime(values, unit="s", utc=True)
