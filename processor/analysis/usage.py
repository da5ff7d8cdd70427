"""One-way times and the usage of a set of observations (analysis spec §7.1–§7.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from processor.analysis.histogram import Histogram, histogram
from processor.errors import NotAnalysable

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def one_way_times(
    t1: IntArray, t2: IntArray, t3: IntArray, t4: IntArray, offset_ns: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """
    Upstream and downstream one-way times of observations, in nanoseconds (§7.1).

    Parameters
    ----------
    t1, t2, t3, t4 : ndarray of int64, shape (n,)
        Unwrapped timestamps, nanoseconds (t1, t4 client clock; t2, t3 server clock).
    offset_ns : ndarray of float64, shape (n,)
        φ(ts(o)) of each observation, nanoseconds (client minus server).

    Returns
    -------
    (u, d) : tuple of ndarray of float64, shape (n,)
        ``u = (t2 + φ) − t1`` and ``d = t4 − (t3 + φ)``, evaluated in exactly this order in binary64.
    """
    return (t2 + offset_ns) - t1, t4 - (t3 + offset_ns)


def usage(one_way_ns: FloatArray, threshold_ns: float, mode_ns: float) -> float:
    """
    Share of the samples above the histogram mode that are also above its threshold.

    Parameters
    ----------
    one_way_ns : ndarray of float64, shape (n,)
        One-way times of one direction, in nanoseconds.
    threshold_ns, mode_ns : float
        Threshold and mode of the same direction's histogram, in nanoseconds.

    Returns
    -------
    float
        ``#{t > threshold_ns} / #{t > mode_ns}`` (both comparisons strict).
        Dimensionless and unclamped; only the API payload clamps it to [0, 1].

    Raises
    ------
    NotAnalysable
        Reason ``no_sample_above_mode`` when no sample exceeds ``mode_ns``.
    """
    return _ratio(*_over_counts(one_way_ns, threshold_ns, mode_ns))


@dataclass(frozen=True, slots=True)
class DirectionUsage:
    """Usage of one direction of a set, with the histogram and the counts it came from."""

    usage: float  # over_threshold / over_mode, dimensionless, unclamped
    histogram: Histogram  # of the direction's one-way times, nanoseconds
    over_threshold: int  # samples strictly above the threshold
    over_mode: int  # samples strictly above the mode


@dataclass(frozen=True, slots=True)
class SetUsage:
    """Upstream and downstream usage of one set of observations (§7.2)."""

    upstream: DirectionUsage
    downstream: DirectionUsage


def set_usage(up_ns: FloatArray, down_ns: FloatArray) -> SetUsage:
    """
    Usage of a set from its upstream and downstream one-way times (§7.2).

    Parameters
    ----------
    up_ns, down_ns : ndarray of float64, shape (n,)
        One-way times u and d of the set's observations in D1 order, nanoseconds.

    Returns
    -------
    SetUsage

    Raises
    ------
    NotAnalysable
        ``too_few_bins`` when n < 4; ``no_sample_above_mode`` when a denominator is 0. The checks run in the
        order of §10: upstream histogram, downstream histogram, then the counts.
    """
    up_histogram = histogram(up_ns)
    down_histogram = histogram(down_ns)
    up_counts = _over_counts(up_ns, up_histogram.threshold, up_histogram.mode)
    down_counts = _over_counts(down_ns, down_histogram.threshold, down_histogram.mode)
    return SetUsage(
        upstream=DirectionUsage(_ratio(*up_counts), up_histogram, *up_counts),
        downstream=DirectionUsage(_ratio(*down_counts), down_histogram, *down_counts),
    )


def _over_counts(one_way_ns: FloatArray, threshold_ns: float, mode_ns: float) -> tuple[int, int]:
    """Numbers of samples strictly above the threshold and strictly above the mode."""
    return int(np.count_nonzero(one_way_ns > threshold_ns)), int(np.count_nonzero(one_way_ns > mode_ns))


def _ratio(over_threshold: int, over_mode: int) -> float:
    """``over_threshold / over_mode``; a zero denominator makes the set not analysable."""
    if over_mode == 0:
        raise NotAnalysable("no_sample_above_mode")
    return over_threshold / over_mode
