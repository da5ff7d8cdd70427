"""Clock handling: midnight unwrapping (D2), the reference set C and the offset function φ (analysis spec §6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from processor.analysis.histogram import Histogram

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: One day in nanoseconds: the period of a clock that counts nanoseconds since local midnight.
DAY_NS = 86_400 * 10**9

#: Half a day in nanoseconds: steps smaller than this are clock noise, larger ones a midnight wrap.
HALF_DAY_NS = DAY_NS // 2


def as_int_series(values: ArrayLike, name: str) -> IntArray:
    """Return ``values`` as a 1-D int64 array, or raise an error that names ``name``."""
    series = np.asarray(values)
    if series.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {series.shape}")
    if series.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integers, got dtype {series.dtype}")
    return series.astype(np.int64, copy=False)


def unwrap_midnight(values_ns: ArrayLike) -> IntArray:
    """
    Undo the midnight wraps of one clock's sequence of readings (change D2, §9.2).

    Parameters
    ----------
    values_ns : array_like of int, shape (n,)
        Readings of one clock in sequence order, in nanoseconds since that clock's local midnight.
        Values must stay within ±2^61 ns (real values are below 2^47) so that differences cannot overflow int64.

    Returns
    -------
    ndarray of int64, shape (n,)
        The first value unchanged; every following raw value v replaced by ``v + j·DAY_NS`` with
        ``j = ⌊(p − v + DAY_NS/2) / DAY_NS⌋`` and p the previous *unwrapped* value. When no step reaches half a
        day the input is returned as is (every j is 0).

    Notes
    -----
    The rule is sequential, but it has an exact cumulative form. With J_i the multiple applied to v_i and
    p = v_{i−1} + J_{i−1}·DAY, ``⌊(v_{i−1} + J_{i−1}·DAY − v_i + DAY/2) / DAY⌋ = J_{i−1} + ⌊(v_{i−1} − v_i + DAY/2)
    / DAY⌋`` because J_{i−1}·DAY is a whole multiple of the divisor. So J is the running sum of integer
    increments computed from the *raw* neighbouring differences, with no rounding anywhere.
    """
    values = as_int_series(values_ns, "values_ns")
    if values.size < 2:
        return values
    increments = (values[:-1] - values[1:] + HALF_DAY_NS) // DAY_NS
    if not increments.any():
        return values
    shifts = np.empty(values.size, dtype=np.int64)
    shifts[0] = 0
    np.cumsum(increments, out=shifts[1:])
    return values + shifts * DAY_NS


def unwrap_clocks(
    t1: IntArray, t2: IntArray, t3: IntArray, t4: IntArray
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """
    Unwrap the client clock (sequence t1, t4 of each observation in turn) and the server clock (t2, t3).

    Parameters
    ----------
    t1, t2, t3, t4 : ndarray of int64, shape (n,)
        The observations' timestamps in D1 order, in nanoseconds since the local midnight of the clock that took
        them (t1, t4 client; t2, t3 server).

    Returns
    -------
    tuple of four ndarray of int64, shape (n,)
        The unwrapped t1, t2, t3, t4 (§9.2); arrays without a wrap come back unchanged.
    """
    # Fast path: every j is 0 when each step v_{i−1} − v_i of both sequences lies in [−DAY/2, DAY/2). The
    # steps of the client sequence are t1[i] − t4[i] and t4[i] − t1[i + 1], those of the server t2[i] − t3[i]
    # and t3[i] − t2[i + 1].
    steps = np.concatenate((t1 - t4, t4[:-1] - t1[1:], t2 - t3, t3[:-1] - t2[1:]))
    if steps.size == 0 or (steps.min() >= -HALF_DAY_NS and steps.max() < HALF_DAY_NS):
        return t1, t2, t3, t4
    client_t1, client_t4 = _unwrap_pairs(t1, t4)
    server_t2, server_t3 = _unwrap_pairs(t2, t3)
    return client_t1, server_t2, server_t3, client_t4


def _unwrap_pairs(first: IntArray, second: IntArray) -> tuple[IntArray, IntArray]:
    """Unwrap the interleaved sequence first[0], second[0], first[1], second[1], … and split it again."""
    sequence = np.empty(2 * first.size, dtype=np.int64)
    sequence[0::2] = first
    sequence[1::2] = second
    unwrapped = unwrap_midnight(sequence)
    return unwrapped[0::2], unwrapped[1::2]


def observation_offsets(t1: IntArray, t2: IntArray, t3: IntArray, t4: IntArray) -> FloatArray:
    """
    Clock offset of each observation, client minus server, in nanoseconds (§6 step 3).

    ``φ(o) = (t1 − t2) + ((t2 − t1) + (t4 − t3)) / 2``, computed as the equal ``((t1 − t2) + (t4 − t3)) / 2``: the
    integer sum is exact and, below 2^53, so are its conversion to binary64 and the halving.
    """
    return ((t1 - t2) + (t4 - t3)) / 2


def reference_set(rtt: Histogram, ts_s: IntArray) -> IntArray:
    """
    Indices of the reference set C: the members of the RTT histogram's bin 0, sorted stably by ts (§6 step 2).

    Parameters
    ----------
    rtt : Histogram
        The RTT histogram over all of O (key ``t4 − t1``, nanoseconds).
    ts_s : ndarray of int64, shape (n,)
        The ts of O's observations, Unix seconds, in the histogram's item order.

    Returns
    -------
    ndarray of int64, shape (m,)
        Positions in O of the m = ⌊|O| / k⌋ smallest-RTT observations, by ts; equal ts keep the RTT order.
    """
    members = rtt.order[: rtt.items_per_bin]
    return members[np.argsort(ts_s[members], kind="stable")]


@dataclass(frozen=True, slots=True)
class OffsetFunction:
    """
    The piecewise-linear clock offset φ(x) through the reference set C (§6 step 4).

    Call it with seconds to get offsets in nanoseconds (client minus server).
    """

    ts_s: IntArray  # ts of the members of C, Unix seconds, non-decreasing
    offset_ns: FloatArray  # φ of each member of C, nanoseconds
    # Per piece p = i + 1 for the interval [ts_i, ts_{i+1}), p = 0 before the first member and p = |C| from the
    # last member on: φ(x) = x · slope[p] + intercept[p]. The outer pieces have slope 0, so they give the end
    # members' offsets exactly (x · 0 + φ = φ).
    slope: FloatArray = field(init=False, repr=False)
    intercept: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ts, offsets = self.ts_s, self.offset_ns
        step_s = ts[:-1] - ts[1:]
        inner = np.zeros(ts.size - 1)
        # Pieces between members of the same second are never selected; leaving them 0 avoids a 0/0.
        np.divide(offsets[:-1] - offsets[1:], step_s, out=inner, where=step_s != 0)  # s = (φ_i − φ_{i+1}) / (…)
        slope = np.concatenate(([0.0], inner, [0.0]))
        intercept = np.concatenate((offsets[:1], offsets[:-1] - ts[:-1] * inner, offsets[-1:]))  # b = φ_i − ts_i·s
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "intercept", intercept)

    def __call__(self, x_s: IntArray) -> FloatArray:
        """
        Evaluate φ at the seconds ``x_s`` (int64 array, Unix seconds); returns nanoseconds, float64.

        Before the first member φ is the first member's offset, from the last member's second on it is the last
        member's offset. In between it interpolates between c_i and c_{i+1}, i the first index with
        ``ts(c_i) ≤ x < ts(c_{i+1})`` (the last of several members sharing a second is the left anchor), evaluated
        as ``s = (φ_i − φ_{i+1}) / (ts_i − ts_{i+1})``, ``b = φ_i − ts_i · s``, ``φ(x) = x · s + b``: the order
        that reproduces the original's rounding.
        """
        # Right-side search: the number of members with ts ≤ x, which is i + 1 for the unique i with
        # ts_i ≤ x < ts_{i+1}, 0 before the first member and |C| from the last one on.
        piece = np.searchsorted(self.ts_s, x_s, side="right")
        return x_s * self.slope[piece] + self.intercept[piece]


def offset_function(rtt: Histogram, ts_s: IntArray, offsets_ns: FloatArray) -> OffsetFunction:
    """
    Build φ from the RTT histogram over O (§6).

    Parameters
    ----------
    rtt : Histogram
        The RTT histogram over all of O.
    ts_s : ndarray of int64, shape (n,)
        The ts of O's observations, Unix seconds.
    offsets_ns : ndarray of float64, shape (n,)
        :func:`observation_offsets` of O's observations, nanoseconds.
    """
    members = reference_set(rtt, ts_s)
    return OffsetFunction(ts_s=ts_s[members], offset_ns=offsets_ns[members])
