"""
The queueing-share usage estimator: the share of probes queued above the window's own floor (usage-queueing spec).

Per direction, on the meaningful window W after midnight unwrapping, the raw one-way samples in mixed clocks
(``r = t4 − t3`` downstream, ``r = t2 − t1`` upstream) lie above a straight line: the constant clock offset plus
the path's base delay, drifting with the relative clock skew. The lower-envelope line of Moon, Skelly and Towsley
(1999) removes both; the residuals above it, less the mean of the 5 smallest, are the queueing delays, and the
usage is the share of them above 3 ms. No clock offset φ is involved, so a standing queue or a drifting clock
cannot push the estimate to 0 or above 1 as they do with the original rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Queueing delay above the floor that counts a probe as queued, in nanoseconds (3 ms; not fitted).
QUEUED_MARGIN_NS = 3_000_000

#: Number of smallest residuals whose mean is the floor of the window (the least-queued probes).
FLOOR_RESIDUALS = 5

#: Fewest samples of W that give a queueing share; below it the estimate is null (the window stays analysable).
MIN_QUEUEING_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class LowerEnvelope:
    """
    The line ``ℓ(ts) = a + b·ts`` on or below every point (ts_i, r_i) that minimises ``Σ (r_i − ℓ(ts_i))``.

    It is the edge of the points' lower convex hull that spans the mean ts; it passes through the two points
    ``support``. Values are kept relative to a reference point (first ts, smallest r) so that offsets of ~10¹³ ns
    in mixed clocks lose no precision.
    """

    ts0_s: int  # reference second: the first ts, Unix seconds
    r0_ns: float  # reference level: the smallest r, nanoseconds (exact: real values are far below 2⁵³)
    intercept_ns: float  # ℓ(ts0) − r0, nanoseconds
    slope_ns_per_s: float  # b, nanoseconds per second: the relative clock skew in ppm × 1000 (plus path drift)
    support: tuple[int, int]  # indices of the two points the line goes through (ts ≤ mean ts, ts > mean ts)
    residuals_ns: FloatArray  # e_i = r_i − ℓ(ts_i) ≥ 0, nanoseconds, in the input order

    @property
    def skew_ppm(self) -> float:
        """The slope as a rate, parts per million (1 ppm = 1000 ns per second)."""
        return self.slope_ns_per_s / 1e3

    def line_ns(self, ts_s: ArrayLike) -> FloatArray:
        """ℓ(ts) at the seconds ``ts_s``, nanoseconds (absolute, in the samples' mixed clocks)."""
        ts = np.asarray(ts_s, dtype=np.float64)
        return self.r0_ns + (self.intercept_ns + self.slope_ns_per_s * (ts - self.ts0_s))


@dataclass(frozen=True, slots=True)
class QueueingShare:
    """The queueing share of one direction, with what it came from (for calibration plots and tests)."""

    usage: float | None  # #{q_i > margin} / |W| in [0, 1]; None when degenerate (|W| < 10 or all ts equal)
    samples: int  # |W|, the samples used
    queued: int  # #{q_i > margin}
    floor_ns: float | None  # mean of the 5 smallest residuals, nanoseconds
    envelope: LowerEnvelope | None  # the skew line; None when degenerate
    queueing_ns: FloatArray | None  # q_i = e_i − floor, nanoseconds, in the input order


def as_samples(ts_s: ArrayLike, raw_ns: ArrayLike) -> tuple[IntArray, NDArray[np.generic]]:
    """Return ``ts_s`` as 1-D int64 and ``raw_ns`` as a 1-D real array of the same length, or raise naming them."""
    ts = np.asarray(ts_s)
    raw = np.asarray(raw_ns)
    if ts.ndim != 1:
        raise ValueError(f"`ts_s` must be 1-D, got shape {ts.shape}")
    if raw.ndim != 1:
        raise ValueError(f"`raw_ns` must be 1-D, got shape {raw.shape}")
    if ts.size != raw.size:
        raise ValueError(f"`ts_s` and `raw_ns` must have the same length, got {ts.size} and {raw.size}")
    if ts.dtype.kind not in "iu":
        raise TypeError(f"`ts_s` must hold integer seconds, got dtype {ts.dtype}")
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"`raw_ns` must hold real numbers, got dtype {raw.dtype}")
    return ts.astype(np.int64, copy=False), raw


def lower_envelope(ts_s: ArrayLike, raw_ns: ArrayLike) -> LowerEnvelope:
    """
    The lower-envelope line of the points (ts_i, r_i): the linear-programming skew estimator of Moon et al.

    Among the lines ``ℓ`` with ``ℓ(ts_i) ≤ r_i`` for every i, the one minimising ``Σ (r_i − ℓ(ts_i))``. Since that
    sum is ``Σ r_i − n·ℓ(mean ts)``, it is the line of greatest height at the mean ts: the lower-convex-hull edge
    spanning the mean (when the mean falls on a hull vertex every line through it between the adjacent edges is
    optimal; this one takes the edge to its right).

    Parameters
    ----------
    ts_s : array_like of int, shape (n,)
        Seconds of the samples (any order; repeated values are fine).
    raw_ns : array_like of int or float, shape (n,)
        Raw one-way samples in mixed clocks, nanoseconds. Integers are reduced exactly before conversion.

    Returns
    -------
    LowerEnvelope

    Raises
    ------
    ValueError
        When fewer than two distinct seconds are given (no line is defined: a caller bug).

    Notes
    -----
    The edge is found as the bridge over the mean: with L the points at or left of the mean and R those right
    of it, alternately take the point of L with the steepest slope to the current point of R, and the point of
    R with the gentlest slope from the current point of L. Each change strictly lowers the line at the mean (or
    keeps it and lowers the slope), so the search ends; on real windows after one or two rounds of two O(n)
    vectorised steps. At the end every point of L and of R lies on or above the line through the pair, which is
    then a supporting line of the hull through points on both sides of the mean.
    """
    ts, raw = as_samples(ts_s, raw_ns)
    if ts.size == 0 or ts.min() == ts.max():
        raise ValueError("`ts_s` must hold at least two distinct seconds")
    return _envelope(_Abscissae.of(ts), raw)


@dataclass(frozen=True, slots=True)
class _Abscissae:
    """The seconds of the samples relative to the first, split at their mean: shared by both directions."""

    ts0_s: int
    x_s: FloatArray  # ts − ts0, seconds
    left: slice | IntArray  # positions with x ≤ mean x (a prefix when ts is sorted, as W is)
    right: slice | IntArray  # positions with x > mean x

    @classmethod
    def of(cls, ts: IntArray) -> _Abscissae:
        """Split ``ts`` (at least two distinct values) at its mean."""
        ts0 = int(ts[0])
        x = (ts - ts0).astype(np.float64)
        mean = x.sum() / x.size
        if not (ts[1:] < ts[:-1]).any():
            split = int(np.searchsorted(x, mean, side="right"))
            return cls(ts0, x, slice(0, split), slice(split, None))
        is_left = x <= mean
        return cls(ts0, x, np.flatnonzero(is_left), np.flatnonzero(~is_left))

    def position(self, side: slice | IntArray, k: int) -> int:
        """Position in the samples of the k-th point of ``side``."""
        return int(side.start + k) if isinstance(side, slice) else int(side[k])


def _envelope(abscissae: _Abscissae, raw: NDArray[np.generic]) -> LowerEnvelope:
    """:func:`lower_envelope` behind the argument checks."""
    y: FloatArray
    if raw.dtype.kind in "iu":
        whole = raw.astype(np.int64, copy=False)
        low = int(whole.min())
        r0 = float(low)
        y = (whole - low).astype(np.float64)  # exact: a window's spread is far below 2⁵³ ns
    else:
        real = raw.astype(np.float64, copy=False)
        r0 = float(real.min())
        y = real - r0
    x = abscissae.x_s
    xl, yl = x[abscissae.left], y[abscissae.left]
    xr, yr = x[abscissae.right], y[abscissae.right]

    i = int(yl.argmin())
    from_i = (yr - yl[i]) / (xr - xl[i])  # slopes from the left point i to every right point
    j = int(from_i.argmin())
    for _ in range(x.size):
        to_j = (yr[j] - yl) / (xr[j] - xl)  # slopes from every left point to the right point j
        best_i = int(to_j.argmax())
        moved = bool(to_j[best_i] > to_j[i])
        if moved:
            i = best_i
            from_i = (yr - yl[i]) / (xr - xl[i])
        best_j = int(from_i.argmin())
        if from_i[best_j] < from_i[j]:
            j = best_j
            moved = True
        if not moved:
            break

    slope = float((yr[j] - yl[i]) / (xr[j] - xl[i]))
    # e = r − ℓ, evaluated from the support point so that it is exactly 0 there; rounding can leave −1e-7 ns
    # on collinear points, hence the clip to the constraint e ≥ 0.
    residuals = (y - yl[i]) - slope * (x - xl[i])
    np.maximum(residuals, 0.0, out=residuals)
    return LowerEnvelope(
        ts0_s=abscissae.ts0_s,
        r0_ns=r0,
        intercept_ns=float(yl[i] - slope * xl[i]),
        slope_ns_per_s=slope,
        support=(abscissae.position(abscissae.left, i), abscissae.position(abscissae.right, j)),
        residuals_ns=residuals,
    )


def queueing_share(ts_s: ArrayLike, raw_ns: ArrayLike, *, margin_ns: float = QUEUED_MARGIN_NS) -> QueueingShare:
    """
    Share of the samples queued more than ``margin_ns`` above the window's floor (usage-queueing spec).

    Parameters
    ----------
    ts_s : array_like of int, shape (n,)
        Seconds of W's samples, Unix seconds.
    raw_ns : array_like of int or float, shape (n,)
        Raw one-way samples in mixed clocks after midnight unwrapping, nanoseconds: ``t4 − t3`` downstream,
        ``t2 − t1`` upstream.
    margin_ns : float
        Queueing delay above the floor that counts as queued, nanoseconds (3 ms, a constant).

    Returns
    -------
    QueueingShare
        ``usage = #{i : q_i > margin_ns} / n`` with ``q_i = e_i − (mean of the 5 smallest e)`` and ``e`` the
        residuals above the :func:`lower_envelope` line; in [0, 1] by construction. ``usage`` is None (and the
        other fields empty) when n < 10 or all ts are equal: a degenerate estimate, not a degenerate window.
    """
    ts, raw = as_samples(ts_s, raw_ns)
    if ts.size < MIN_QUEUEING_SAMPLES or ts.min() == ts.max():
        return QueueingShare(None, int(ts.size), 0, None, None, None)
    return _share(_Abscissae.of(ts), raw, margin_ns)


def _share(abscissae: _Abscissae, raw: NDArray[np.generic], margin_ns: float) -> QueueingShare:
    """:func:`queueing_share` of a non-degenerate window behind the argument checks."""
    envelope = _envelope(abscissae, raw)
    residuals = envelope.residuals_ns
    floor = float(np.partition(residuals, FLOOR_RESIDUALS - 1)[:FLOOR_RESIDUALS].mean())
    queueing = residuals - floor
    queued = int(np.count_nonzero(queueing > margin_ns))
    return QueueingShare(queued / residuals.size, int(residuals.size), queued, floor, envelope, queueing)


def queueing_shares(
    ts_s: IntArray, t1: IntArray, t2: IntArray, t3: IntArray, t4: IntArray
) -> tuple[QueueingShare, QueueingShare]:
    """
    Upstream and downstream queueing shares of W.

    Parameters
    ----------
    ts_s : ndarray of int64, shape (n,)
        ts of W's observations, Unix seconds.
    t1, t2, t3, t4 : ndarray of int64, shape (n,)
        Their unwrapped timestamps (analysis spec §9.2), nanoseconds.

    Returns
    -------
    (up, down) : tuple of QueueingShare
        From ``r = t2 − t1`` and ``r = t4 − t3``, differences taken exactly in int64.
    """
    up, down = t2 - t1, t4 - t3  # exact in int64
    if ts_s.size < MIN_QUEUEING_SAMPLES or ts_s.min() == ts_s.max():
        return queueing_share(ts_s, up), queueing_share(ts_s, down)
    abscissae = _Abscissae.of(ts_s)  # the same seconds for both directions
    return _share(abscissae, up, QUEUED_MARGIN_NS), _share(abscissae, down, QUEUED_MARGIN_NS)
