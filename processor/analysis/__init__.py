"""
The analysis of one window: from its observations to usage, quality and Hurst per direction (analysis spec), plus
the queueing-share usage of the usage-queueing spec beside the original usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from processor.analysis.clock import (
    DAY_NS,
    OffsetFunction,
    observation_offsets,
    offset_function,
    reference_set,
    unwrap_clocks,
    unwrap_midnight,
)
from processor.analysis.histogram import ALPHA, Histogram, histogram, sorted_segment_modes
from processor.analysis.hurst import (
    MIN_HURST_SERIES,
    HurstEstimates,
    HurstFit,
    hurst_estimates,
    hurst_estimates_rows,
    hurst_rs,
    hurst_series_length,
    hurst_wavelet,
    rs_fits,
    wavelet_fits,
)
from processor.analysis.quality import (
    MIN_MINUTE_OBSERVATIONS,
    Minutes,
    MinuteUsages,
    congested_minutes,
    minute_usages,
    quality,
    quality_minutes,
)
from processor.analysis.queueing import (
    FLOOR_RESIDUALS,
    MIN_QUEUEING_SAMPLES,
    QUEUED_MARGIN_NS,
    LowerEnvelope,
    QueueingShare,
    lower_envelope,
    queueing_share,
    queueing_shares,
)
from processor.analysis.usage import DirectionUsage, SetUsage, one_way_times, set_usage, usage
from processor.errors import NotAnalysable
from processor.observations import OBSERVATION_DTYPE, SHORT

__all__ = [
    "ALPHA",
    "DAY_NS",
    "FLOOR_RESIDUALS",
    "MEANINGFUL_WINDOW_S",
    "MIN_HURST_SERIES",
    "MIN_MINUTE_OBSERVATIONS",
    "MIN_QUEUEING_SAMPLES",
    "QUEUED_MARGIN_NS",
    "AnalysisResult",
    "Diagnostics",
    "DirectionDiagnostics",
    "DirectionResult",
    "DirectionUsage",
    "Histogram",
    "HurstEstimates",
    "HurstFit",
    "LowerEnvelope",
    "MinuteUsages",
    "Minutes",
    "NotAnalysable",
    "OffsetFunction",
    "QueueingShare",
    "SetUsage",
    "analyse",
    "congested_minutes",
    "histogram",
    "hurst_estimates",
    "hurst_estimates_rows",
    "hurst_rs",
    "hurst_series_length",
    "hurst_wavelet",
    "lower_envelope",
    "minute_usages",
    "observation_offsets",
    "offset_function",
    "one_way_times",
    "quality",
    "quality_minutes",
    "queueing_share",
    "queueing_shares",
    "reference_set",
    "rs_fits",
    "set_usage",
    "sorted_segment_modes",
    "unwrap_clocks",
    "unwrap_midnight",
    "usage",
    "wavelet_fits",
]

IntArray = NDArray[np.int64]

#: Length of the meaningful window at the end of the observations, in seconds: W = {o : ts(o) > ts_max − 600}.
MEANINGFUL_WINDOW_S = 600


@dataclass(frozen=True, slots=True)
class DirectionResult:
    """The posted numbers of one direction."""

    usage: float  # dimensionless, unclamped (D4: only the API payload clamps)
    quality: float  # share of kept minutes not congested, in [0, 1]
    hurst_wavelet: float  # dimensionless
    hurst_rs: float  # dimensionless
    usage_queueing: float | None = None  # queueing share (usage-queueing spec), in [0, 1]; None when degenerate

    def as_dict(self) -> dict[str, Any]:
        """
        ``{"usage", "quality", "hurst": {"wavelet", "rs"}, "usage_queueing"}`` with plain floats (or None).

        The original's keys come first, in its order; the new ``usage_queueing`` follows them.
        """
        return {
            "usage": self.usage,
            "quality": self.quality,
            "hurst": {"wavelet": self.hurst_wavelet, "rs": self.hurst_rs},
            "usage_queueing": self.usage_queueing,
        }


@dataclass(frozen=True, slots=True)
class DirectionDiagnostics:
    """Intermediate values of one direction, for calibration and reference checks (never posted)."""

    usage: DirectionUsage  # window usage with its histogram and counts
    hurst: HurstEstimates  # both fits with their points
    minute_usages: NDArray[np.float64]  # usage of each kept minute, dimensionless
    congested_minutes: int
    queueing: QueueingShare  # the queueing share with its skew line, residual floor and counts


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """Intermediate values of the analysis (§7.7 optional addition); no effect on the result."""

    observations: int  # |O|, the 'S' observations of the window
    window_observations: int  # |W|, those of the last 10 minutes
    hurst_length: int  # L, the length of each Hurst series
    rtt_histogram: Histogram  # RTT histogram over O, keys in nanoseconds (integers)
    offset: OffsetFunction  # φ through the reference set C (its ts and offsets)
    minutes: Minutes  # the kept UTC minutes of W
    upstream: DirectionDiagnostics
    downstream: DirectionDiagnostics

    @property
    def reference_count(self) -> int:
        """|C|, the observations of the RTT histogram's bin 0."""
        return int(self.offset.ts_s.size)


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """The result of one window and how it was obtained."""

    timestamp: int  # ts of the last observation of W (D1: the chronologically last), Unix seconds
    upstream: DirectionResult
    downstream: DirectionResult
    diagnostics: Diagnostics

    def as_results_dict(self) -> dict[str, Any]:
        """
        The results dict (§7.7): plain ints and floats, keys in the original order, usage unclamped.

        Each direction also carries ``usage_queueing`` (a float in [0, 1] or None) after the original keys.
        """
        return {
            "timestamp": self.timestamp,
            "upstream": self.upstream.as_dict(),
            "downstream": self.downstream.as_dict(),
        }


def as_observations(values: NDArray[np.void], name: str) -> NDArray[np.void]:
    """Return ``values`` as a 1-D array with the observation fields, or raise an error that names ``name``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {array.shape}")
    if array.dtype.names is None or not set(OBSERVATION_DTYPE.names or ()).issubset(array.dtype.names):
        raise TypeError(f"`{name}` must have the fields {OBSERVATION_DTYPE.names}, got dtype {array.dtype}")
    return array


def analyse(observations: NDArray[np.void]) -> AnalysisResult:
    """
    Analyse one window (analysis spec §2–§7, with changes D1–D4).

    Parameters
    ----------
    observations : ndarray with the fields of ``OBSERVATION_DTYPE``, shape (n,)
        The window's observations, de-duplicated and sorted by (ts, t1, t2, t3, t4, type, size) as
        :func:`processor.reports.records.window_observations` returns them (D1). ts in Unix seconds, t1…t4 in
        nanoseconds since the local midnight of the clock that took them.

    Returns
    -------
    AnalysisResult
        ``as_results_dict()`` gives the original results dict, each direction with ``usage_queueing`` added
        (usage-queueing spec: None when W has fewer than 10 samples); ``diagnostics`` the intermediate values.

    Raises
    ------
    NotAnalysable
        With the first reason met in the order of §10: ``span_too_short``, ``too_few_bins``,
        ``no_sample_above_mode``, ``hurst_series_too_short``, ``constant_series``, ``no_quality_minute``
        (``no_sample_above_mode`` also for a kept minute, after ``no_quality_minute``).
    ValueError
        When the observations are not sorted by ts (a caller bug: D1 order is the caller's job).
    """
    window = as_observations(observations, "observations")
    is_short = window["type"] == SHORT  # §3: only replies to short probes
    short = window if is_short.all() else window[is_short]
    if short.size == 0:
        raise NotAnalysable("span_too_short")
    ts = short["ts"].astype(np.int64)
    if (ts[1:] < ts[:-1]).any():
        raise ValueError("`observations` must be sorted by ts (D1 order, see window_observations)")
    last_ts = int(ts[-1])
    if last_ts - int(ts[0]) < MEANINGFUL_WINDOW_S:
        raise NotAnalysable("span_too_short")

    # D2: unwrap both clocks over all of O before any difference is taken.
    t1, t2, t3, t4 = unwrap_clocks(
        short["t1"].astype(np.int64), short["t2"].astype(np.int64),
        short["t3"].astype(np.int64), short["t4"].astype(np.int64),
    )  # fmt: skip
    rtt = histogram(t4 - t1)
    offset = offset_function(rtt, ts, observation_offsets(t1, t2, t3, t4))

    # W: ts > ts_max − 600; O is sorted by ts, so W is its tail.
    first = int(np.searchsorted(ts, last_ts - MEANINGFUL_WINDOW_S, side="right"))
    window_ts = ts[first:]
    up, down = one_way_times(t1[first:], t2[first:], t3[first:], t4[first:], offset(window_ts))
    window_usage = set_usage(up, down)

    length = hurst_series_length(int(window_ts.size))
    if length < MIN_HURST_SERIES:
        raise NotAnalysable("hurst_series_too_short")
    # Upstream and downstream together; both estimators fail only with constant_series, so the order holds.
    up_hurst, down_hurst = hurst_estimates_rows(np.stack((up[-length:], down[-length:])))

    minutes = quality_minutes(window_ts)
    per_minute = minute_usages(up, down, minutes)
    up_congested = congested_minutes(per_minute.upstream, up_hurst.effective)
    down_congested = congested_minutes(per_minute.downstream, down_hurst.effective)

    # Usage-queueing spec: never raises, so it cannot change which windows are analysable or why.
    up_queueing, down_queueing = queueing_shares(window_ts, t1[first:], t2[first:], t3[first:], t4[first:])

    return AnalysisResult(
        timestamp=last_ts,
        upstream=DirectionResult(
            usage=window_usage.upstream.usage,
            quality=quality(per_minute.upstream, up_hurst.effective),
            hurst_wavelet=up_hurst.wavelet.hurst,
            hurst_rs=up_hurst.rs.hurst,
            usage_queueing=up_queueing.usage,
        ),
        downstream=DirectionResult(
            usage=window_usage.downstream.usage,
            quality=quality(per_minute.downstream, down_hurst.effective),
            hurst_wavelet=down_hurst.wavelet.hurst,
            hurst_rs=down_hurst.rs.hurst,
            usage_queueing=down_queueing.usage,
        ),
        diagnostics=Diagnostics(
            observations=int(ts.size),
            window_observations=int(window_ts.size),
            hurst_length=length,
            rtt_histogram=rtt,
            offset=offset,
            minutes=minutes,
            upstream=DirectionDiagnostics(
                window_usage.upstream, up_hurst, per_minute.upstream, up_congested, up_queueing
            ),
            downstream=DirectionDiagnostics(
                window_usage.downstream, down_hurst, per_minute.downstream, down_congested, down_queueing
            ),
        ),
    )


# The original tix-time-processor's analysis API (compat spec §3), imported last: it is built on the names above.
from processor.compat.analysis import (  # noqa: E402
    CONGESTION_THRESHOLD,
    HURST_CONGESTION_THRESHOLD,
    MEANINGFUL_OBSERVATIONS_DELTA,
    Analyzer,
    Bin,
    ClockFixer,
    DegenerateWindowError,
    FixedSizeBinHistogram,
    HurstCalculator,
    QualityCalculator,
    UsageCalculator,
    divide_observations_into_minutes,
    downstream_time_function,
    observation_rtt_key_function,
    upstream_time_function,
)

__all__ += [
    "CONGESTION_THRESHOLD",
    "HURST_CONGESTION_THRESHOLD",
    "MEANINGFUL_OBSERVATIONS_DELTA",
    "Analyzer",
    "Bin",
    "ClockFixer",
    "DegenerateWindowError",
    "FixedSizeBinHistogram",
    "HurstCalculator",
    "QualityCalculator",
    "UsageCalculator",
    "divide_observations_into_minutes",
    "downstream_time_function",
    "observation_rtt_key_function",
    "upstream_time_function",
]
