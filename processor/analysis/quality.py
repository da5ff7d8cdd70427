"""Per-minute usage and the quality of each direction (analysis spec §7.6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from processor.analysis.histogram import sorted_segment_modes
from processor.errors import NotAnalysable

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Fewest observations that make a UTC minute count for quality.
MIN_MINUTE_OBSERVATIONS = 30

#: A minute is congested when its usage is strictly below this (dimensionless) …
CONGESTED_BELOW_USAGE = 0.5
#: … and the direction's effective Hurst exponent strictly above this. Inverted-looking, but the original rule.
CONGESTED_ABOVE_HURST = 0.7


@dataclass(frozen=True, slots=True)
class Minutes:
    """The UTC minutes of W kept for quality (those with at least 30 observations)."""

    minute_s: IntArray  # start of each kept minute, Unix seconds (⌊ts / 60⌋ · 60)
    start: IntArray  # position of the minute's first observation in W
    size: IntArray  # observations of the minute


@dataclass(frozen=True, slots=True)
class MinuteUsages:
    """Usage of every kept minute, per direction (dimensionless, unclamped)."""

    upstream: FloatArray
    downstream: FloatArray


def quality_minutes(ts_s: IntArray) -> Minutes:
    """
    Bucket W by UTC minute and keep the minutes with at least 30 observations (§7.6 steps 1–2).

    Parameters
    ----------
    ts_s : ndarray of int64, shape (n,)
        The ts of W's observations, Unix seconds, non-decreasing (D1 order), so every minute is one run.

    Raises
    ------
    NotAnalysable
        ``no_quality_minute`` when no minute has 30 observations.
    """
    minute = ts_s // 60 * 60
    boundaries = np.flatnonzero(minute[1:] != minute[:-1]) + 1
    start = np.concatenate(([0], boundaries))
    size = np.diff(np.concatenate((start, [minute.size])))
    kept = size >= MIN_MINUTE_OBSERVATIONS
    if not kept.any():
        raise NotAnalysable("no_quality_minute")
    start = start[kept]
    return Minutes(minute_s=minute[start], start=start, size=size[kept])


def minute_usages(up_ns: FloatArray, down_ns: FloatArray, minutes: Minutes) -> MinuteUsages:
    """
    Run the complete usage computation of §7.2 on every kept minute alone (§7.6 step 3).

    Each minute gets its own upstream and downstream histograms (same φ as the window). All minutes and both
    directions are computed together by :func:`~processor.analysis.histogram.sorted_segment_modes`.

    Parameters
    ----------
    up_ns, down_ns : ndarray of float64, shape (n,)
        One-way times u and d of W's observations, nanoseconds, in D1 order.
    minutes : Minutes
        The kept minutes of W.

    Raises
    ------
    NotAnalysable
        ``no_sample_above_mode`` when no sample of a minute exceeds that minute's mode.
    """
    count = minutes.size.size
    # Every minute is one run of W (D1 order): the segments are the up minutes, then the down minutes, each sorted.
    ordered = np.concatenate(
        [
            np.sort(values[start : start + size], kind="stable")
            for values in (up_ns, down_ns)
            for start, size in zip(minutes.start.tolist(), minutes.size.tolist(), strict=True)
        ]
    )
    sizes = np.concatenate((minutes.size, minutes.size))
    modes = sorted_segment_modes(ordered, sizes)
    starts = np.cumsum(sizes) - sizes
    over_threshold = np.add.reduceat(ordered > np.repeat(modes.threshold, sizes), starts, dtype=np.int64)
    over_mode = np.add.reduceat(ordered > np.repeat(modes.mode, sizes), starts, dtype=np.int64)
    if not over_mode.all():
        raise NotAnalysable("no_sample_above_mode")
    usages = over_threshold / over_mode
    return MinuteUsages(upstream=usages[:count], downstream=usages[count:])


def congested_minutes(usages: FloatArray, effective_hurst: float) -> int:
    """Minutes with usage < 0.5 while ``effective_hurst`` > 0.7 (both strict, §7.6 step 4)."""
    if not effective_hurst > CONGESTED_ABOVE_HURST:
        return 0
    return int(np.count_nonzero(usages < CONGESTED_BELOW_USAGE))


def quality(usages: FloatArray, effective_hurst: float) -> float:
    """
    Quality of one direction: the share of kept minutes that are not congested (§7.6 step 5).

    Parameters
    ----------
    usages : ndarray of float64, shape (M,), M ≥ 1
        Usage of each kept minute in this direction (dimensionless).
    effective_hurst : float
        ``(H_wavelet + H_rs) / 2`` of the whole window in this direction (dimensionless).

    Returns
    -------
    float
        ``(M − congested) / M``, in [0, 1]; exactly 1.0 whenever ``effective_hurst`` ≤ 0.7.
    """
    total = int(usages.size)
    return (total - congested_minutes(usages, effective_hurst)) / total
