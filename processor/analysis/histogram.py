"""The equal-count histogram and its mode and threshold (analysis spec §5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from processor.errors import NotAnalysable

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Weight of the lowest bin's middle in the threshold ``mode + ALPHA · mid_0`` (dimensionless).
ALPHA = 0.5

#: Fewest items that make a histogram of two bins (k = ⌊√n⌋ ≥ 2); below it the window is ``too_few_bins``.
MIN_HISTOGRAM_ITEMS = 4

#: Largest integer below which every integer is exact in binary64. While ``n · W_tot`` stays below it, the
#: integer score products convert to float without rounding, so one float division equals Python's exactly
#: rounded ``int / int``.
EXACT_FLOAT_INTEGER = 2**53


@dataclass(frozen=True, slots=True)
class Histogram:
    """
    Equal-count histogram of one collection, with the spec's mode and threshold.

    Keys are in the unit of the collection (nanoseconds for the RTT and the one-way times). Integer keys
    (the RTT) give integer ``lo``/``hi``/``width``/``mid`` arrays; float keys give float64 arrays.
    """

    n: int  # number of items
    k: int  # number of bins, ⌊√n⌋
    items_per_bin: int  # m = ⌊n / k⌋; the last bin also holds the n − k·m left-overs
    order: IntArray  # stable sort permutation of the keys: bin i holds order[i·m : (i+1)·m] (last: to the end)
    lo: NDArray[np.int64] | FloatArray  # smallest key per bin
    hi: NDArray[np.int64] | FloatArray  # largest key per bin
    mid: NDArray[np.int64] | FloatArray  # lo + ⌊(hi − lo) / 2⌋ per bin
    counts: IntArray  # items per bin
    scores: FloatArray  # (n · W_tot) / (c_i · w_i); +inf for a zero-width bin (D3)
    representatives: int  # R = min(2·⌊√k⌋, k): the bins that compete for the mode
    mode_index: int  # first bin among the R with the largest score
    mode: float  # mid of the mode bin
    threshold: float  # mid_1 when p_0 is the largest score, else mode + ALPHA · mid_0


def as_keys(values: ArrayLike, name: str) -> IntArray | FloatArray:
    """Return ``values`` as a 1-D int64 or float64 array (integers stay exact), or raise naming ``name``."""
    keys = np.asarray(values)
    if keys.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {keys.shape}")
    if keys.dtype.kind in "iub":
        return keys.astype(np.int64, copy=False)
    if keys.dtype.kind == "f":
        return keys.astype(np.float64, copy=False)
    raise TypeError(f"`{name}` must hold integers or floats, got dtype {keys.dtype}")


def representatives(k: int) -> int:
    """Number of leading bins that compete for the mode: ``min(2·⌊√k⌋, k)`` (k = 39 → 12, k = 3 → 2)."""
    return min(2 * math.isqrt(k), k)


def histogram(keys: ArrayLike) -> Histogram:
    """
    Build the equal-count histogram of ``keys`` and find its mode and threshold (§5).

    Parameters
    ----------
    keys : array_like of int or float, shape (n,)
        One key per item, in the collection's order (D1 order); equal keys keep that order in the bins.
        Integer keys are handled as exact integers, float keys as binary64.

    Returns
    -------
    Histogram
        Bins, scores ``p_i = (n · W_tot) / (c_i · w_i)`` (W_tot = largest minus smallest key), the mode (middle
        of the first best-scoring bin among the first R) and the threshold.

    Raises
    ------
    NotAnalysable
        Reason ``too_few_bins`` when n < 4 (k = ⌊√n⌋ < 2).
    """
    values = as_keys(keys, "keys")
    n = int(values.size)
    k = math.isqrt(n)
    if k < 2:
        raise NotAnalysable("too_few_bins")
    m = n // k
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    lo = ordered[0 : k * m : m]
    hi = ordered[m - 1 : k * m : m].copy()
    hi[-1] = ordered[-1]  # the last bin runs to the end: it holds the n − k·m left-overs
    counts = np.full(k, m, dtype=np.int64)
    counts[-1] = n - (k - 1) * m
    width = hi - lo
    integral = values.dtype.kind == "i"
    # ⌊w/2⌋ (w ≥ 0): integer division for integer keys; for floats w/2 is exact, so floor(w · 0.5) equals
    # Python's w // 2.
    mid = lo + (width // 2 if integral else np.floor(width * 0.5))
    scores = _scores(n, ordered[-1] - ordered[0], counts, width, integral=integral)

    r = representatives(k)
    mode_index = int(np.argmax(scores[:r]))  # argmax returns the first of equal maxima
    best = scores[mode_index]
    mode = float(mid[mode_index])
    # Exact equality on purpose: a tie with bin 0 also selects mid_1 (§5 step 7).
    threshold = float(mid[1]) if scores[0] == best else mode + ALPHA * float(mid[0])
    return Histogram(
        n=n,
        k=k,
        items_per_bin=m,
        order=order,
        lo=lo,
        hi=hi,
        mid=mid,
        counts=counts,
        scores=scores,
        representatives=r,
        mode_index=mode_index,
        mode=mode,
        threshold=threshold,
    )


def _scores(
    n: int,
    total_width: np.int64 | np.float64,
    counts: IntArray,
    width: IntArray | FloatArray,
    *,
    integral: bool,
) -> FloatArray:
    """Bin scores ``(n · W_tot) / (c_i · w_i)``, evaluated as one division; +inf where w_i = 0 (D3)."""
    scores = np.full(counts.size, np.inf)
    nonzero = width != 0
    if not integral:
        np.divide(n * float(total_width), counts * width, out=scores, where=nonzero)
        return scores
    w_tot = int(total_width)
    if w_tot < EXACT_FLOAT_INTEGER // n:
        # Every c_i · w_i ≤ n · W_tot < 2^53: the int64 products cannot overflow and convert to float exactly, so
        # the float division is the correctly rounded quotient, as Python's int / int is.
        np.divide(float(n * w_tot), (counts * width).astype(np.float64), out=scores, where=nonzero)
        return scores
    # Beyond 2^53 (never in real data: it needs an RTT range of days) use Python's exact integers.
    for i, (count, w) in enumerate(zip(counts.tolist(), width.tolist(), strict=True)):
        if w:
            scores[i] = (n * w_tot) / (count * w)
    return scores


@dataclass(frozen=True, slots=True)
class SegmentModes:
    """Mode and threshold of the histograms of several segments, computed together (one entry per segment)."""

    mode: FloatArray
    threshold: FloatArray


def sorted_segment_modes(ordered: FloatArray, sizes: IntArray) -> SegmentModes:
    """
    Mode and threshold of the §5 histogram of each of several consecutive segments, vectorised over segments.

    Gives for each segment exactly what :func:`histogram` gives for that segment alone (float keys only).
    Kept for speed: :func:`histogram` per minute made ``bench/analysis.py`` 30 % slower (3 alternated pairs).

    Parameters
    ----------
    ordered : ndarray of float64, shape (N,)
        The segments' keys one after the other, N = ``sizes.sum()``, each segment already sorted ascending.
    sizes : ndarray of int64, shape (S,), S ≥ 1
        Item count of each segment.

    Returns
    -------
    SegmentModes
        ``mode`` and ``threshold`` arrays of shape (S,), in the unit of the keys.

    Raises
    ------
    NotAnalysable
        Reason ``too_few_bins`` when a segment has fewer than 4 items.
    """
    if sizes.min() < MIN_HISTOGRAM_ITEMS:
        raise NotAnalysable("too_few_bins")
    n = sizes[:, np.newaxis]
    k = np.array([[math.isqrt(size)] for size in sizes.tolist()])
    r = np.array([[representatives(bins)] for bins in k[:, 0].tolist()])
    m = n // k
    # One row per segment, one column per competing bin; shorter rows repeat their last competing bin.
    column = np.minimum(np.arange(int(r.max())), r - 1)
    last_bin = column == k - 1  # only when R = k (k = 2 or 4): the bin that holds the left-overs
    first = np.cumsum(n)[:, np.newaxis] - n
    lo = ordered[first + column * m]
    width = ordered[first + np.where(last_bin, n - 1, column * m + m - 1)] - lo
    counts = np.where(last_bin, n - (k - 1) * m, m)
    mid = lo + np.floor(width * 0.5)
    scores = np.full(width.shape, np.inf)
    np.divide(n * (ordered[first + n - 1] - ordered[first]), counts * width, out=scores, where=width != 0)
    scores[np.arange(column.shape[1]) >= r] = -np.inf  # bins beyond R do not compete
    mode_bin = np.argmax(scores, axis=1)  # the first of equal maxima
    rows = np.arange(sizes.size)
    best = scores[rows, mode_bin]
    mode = mid[rows, mode_bin]
    threshold = np.where(scores[:, 0] == best, mid[:, 1], mode + ALPHA * mid[:, 0])
    return SegmentModes(mode=mode, threshold=threshold)
