"""Hurst exponent estimators: rescaled range (R/S, §7.4) and wavelet (§7.5) of delay series."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pywt
from numpy.typing import ArrayLike, NDArray

from processor.errors import NotAnalysable

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
_Plan = TypeVar("_Plan")

#: Shortest Hurst series; below it the R/S block size ⌊L / 5⌋ is 0 (reason ``hurst_series_too_short``).
MIN_HURST_SERIES = 8

#: R/S: number of blocks per lag.
RS_BLOCKS = 5
#: R/S: number of lags (the last one is computed by the original but never used).
RS_LAGS = 50
#: R/S: rows whose log₁₀ lag is below this are not fitted (they are excluded rows).
RS_LOW_CUTOFF = 0.7
#: R/S: rows whose abscissa is above this are not fitted; rows whose log₁₀ lag is above it are excluded rows.
RS_HIGH_CUTOFF = 2.5
#: R/S: a range at or below this counts as zero in the constant-series test.
RS_CONSTANT_RANGE = 1e-10

#: Wavelet: Daubechies wavelet with two vanishing moments (order N = 2), PyWavelets name.
WAVELET = pywt.Wavelet("db2")
#: Wavelet: PyWavelets boundary mode (periodic padding; *not* ``periodization``, which gives other numbers).
WAVELET_MODE = "periodic"
#: Wavelet: first and last octave of the fit (the last is lowered for short series).
WAVELET_OCTAVES = (2, 8)
#: Wavelet: octaves at the coarse end spoiled by boundary effects, ⌈log₂(2N)⌉.
WAVELET_BOUNDARY_OCTAVES = 2
#: Wavelet: longest series whose kept detail coefficients come from a cached matrix rather than ``wavedec``.
#: For L = 512 the matrix is 233 × 512 (0.95 MB); for L = 1024, 486 × 1024 (4 MB).
WAVELET_MATRIX_MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class HurstFit:
    """A Hurst estimate with the points its straight-line fit used."""

    hurst: float  # slope of the fit, dimensionless
    log_scale: FloatArray  # abscissae the fit used (log₁₀ ⌊lag⌋ for R/S, octave for wavelet)
    log_statistic: FloatArray  # ordinates the fit used (log₁₀ R/S, or (log₂ energy + octave) / 2)


@dataclass(frozen=True, slots=True)
class HurstEstimates:
    """Both Hurst estimates of one series."""

    wavelet: HurstFit
    rs: HurstFit

    @property
    def effective(self) -> float:
        """``(H_wavelet + H_rs) / 2``, the value quality compares with 0.7 (§7.6)."""
        return (self.wavelet.hurst + self.rs.hurst) / 2


def as_series(values: ArrayLike, name: str, *, ndim: int = 1) -> FloatArray:
    """Return ``values`` as a float64 array of ``ndim`` dimensions, or raise an error that names ``name``."""
    series = np.asarray(values, dtype=np.float64)
    if series.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D, got shape {series.shape}")
    return series


def hurst_series_length(n: int) -> int:
    """L = the largest power of two ≤ n (0 for n = 0): how many trailing values the Hurst series keeps (§7.3)."""
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def hurst_estimates(series_ns: ArrayLike) -> HurstEstimates:
    """
    Wavelet and R/S estimates of one series (§7.4–§7.5).

    Parameters
    ----------
    series_ns : array_like of float, shape (n,)
        The delay series, nanoseconds (the analysis passes the last L values of W, L a power of two).

    Raises
    ------
    NotAnalysable
        ``hurst_series_too_short`` when n < 8 (checked before either estimator runs); ``constant_series`` as
        :func:`rs_fits` and :func:`wavelet_fits`.
    """
    return hurst_estimates_rows(as_series(series_ns, "series_ns")[np.newaxis])[0]


def hurst_estimates_rows(series_ns: ArrayLike) -> list[HurstEstimates]:
    """
    Wavelet and R/S estimates of each row of a 2-D array, all rows computed together.

    Both failures of the estimators have the reason ``constant_series``, so computing every wavelet estimate
    before every R/S estimate gives the same reason as the one-series-at-a-time order of §10.

    Parameters
    ----------
    series_ns : array_like of float, shape (rows, n)
        One delay series per row, nanoseconds.

    Raises
    ------
    NotAnalysable
        ``hurst_series_too_short`` when n < 8; ``constant_series`` when any row fails.
    """
    series = as_series(series_ns, "series_ns", ndim=2)
    if series.shape[1] < MIN_HURST_SERIES:  # 8: below it the R/S block size ⌊n / 5⌋ is 0
        raise NotAnalysable("hurst_series_too_short")
    wavelet = wavelet_fits(series)
    rs = rs_fits(series)
    return [HurstEstimates(wavelet=w, rs=r) for w, r in zip(wavelet, rs, strict=True)]


def hurst_rs(series: ArrayLike) -> float:
    """R/S Hurst estimate of a 1-D ``series`` (dimensionless); see :func:`rs_fits`."""
    return rs_fits(as_series(series, "series")[np.newaxis])[0].hurst


def hurst_wavelet(series: ArrayLike) -> float:
    """Wavelet Hurst estimate of a 1-D ``series`` (dimensionless); see :func:`wavelet_fits`."""
    return wavelet_fits(as_series(series, "series")[np.newaxis])[0].hurst


@dataclass(frozen=True, slots=True)
class _RsBlocks:
    """
    A set of R/S blocks of ``rows`` series of one length n, flattened for vectorised evaluation.

    Blocks of all rows are laid out one after the other: row r's blocks follow row r − 1's, and indices into the
    zero-prefixed cumulative sums (shape (rows, n + 1), flattened) include the row offset r·(n + 1).
    """

    start: IntArray  # per block: flat index of X_{s−1} (s the block's first index)
    end: IntArray  # per block: flat index of X_{s+d−1}
    lag: IntArray  # per block: d
    inverse_lag: FloatArray  # per block: 1 / d
    offsets: IntArray  # per block: position of its first deviation in the flat deviation array
    position: IntArray  # per deviation: flat index of X_{s+j}
    count: FloatArray  # per deviation: j + 1
    fit: BoolArray  # per block of one row: its row i is a fit row
    excluded: BoolArray  # per block of one row: its row i is an excluded row
    abscissa: FloatArray  # per block of one row: log₁₀ ⌊10^(i·inc)⌋ of its row i

    @classmethod
    def of(cls, n: int, rows: int, blocks: list[tuple[int, int, int]], inc: float) -> _RsBlocks:
        """Lay out ``blocks`` (row i, s, d) for ``rows`` series of n values; ``inc`` = log₁₀(n) / 50."""
        row_of_block = np.array([b[0] for b in blocks], dtype=np.int64)
        first = np.array([b[1] for b in blocks], dtype=np.int64)
        lag = np.array([b[2] for b in blocks], dtype=np.int64)
        log_lag = row_of_block * inc  # the same products as the scalar tests below (one multiplication)
        abscissa = np.array([math.log10(math.floor(math.pow(10.0, row * inc))) for row in row_of_block.tolist()])
        start = (first + (n + 1) * np.arange(rows)[:, np.newaxis]).ravel()
        lag_all = np.tile(lag, rows)
        offsets = np.cumsum(lag_all) - lag_all
        count = np.arange(int(lag_all.sum())) - np.repeat(offsets, lag_all) + 1  # j + 1
        return _read_only(
            cls,
            start=start,
            end=start + lag_all,
            lag=lag_all,
            inverse_lag=1.0 / lag_all,
            offsets=offsets,
            position=np.repeat(start, lag_all) + count,
            count=count.astype(np.float64),
            fit=(log_lag >= RS_LOW_CUTOFF) & (abscissa <= RS_HIGH_CUTOFF),
            excluded=(log_lag < RS_LOW_CUTOFF) | (log_lag > RS_HIGH_CUTOFF),
            abscissa=abscissa,
        )


@functools.lru_cache(maxsize=32)
def _rs_plan(n: int, rows: int) -> tuple[_RsBlocks, _RsBlocks]:
    """
    Lags, blocks and point selection of §7.4 for ``rows`` series of n ≥ 5 values each.

    Returns the blocks every estimate needs (those of fit rows and of the short-lag excluded rows) and, apart,
    those of the long-lag excluded rows that are not fit rows: they matter only to the constant-series test, and
    only when no short-lag excluded block varies, so they are evaluated only then (for n = 512 they hold 16 % of
    all deviations, for n = 1024 half).
    """
    size = n // RS_BLOCKS
    inc = math.log10(n) / RS_LAGS  # overlap on
    needed: list[tuple[int, int, int]] = []  # (row i, s, d)
    spare: list[tuple[int, int, int]] = []
    # Row i takes the slots of lag index k = i − 1, so rows 1 … 49 use lags 0 … 48; lag 49 is never used.
    for row in range(1, RS_LAGS):
        d = math.ceil(math.pow(10.0, inc * row))
        blocks_of_lag = RS_BLOCKS
        if d > size:
            corr = math.ceil((d - size) / size)
            blocks_of_lag = RS_BLOCKS - (RS_BLOCKS - 1 if corr == RS_BLOCKS else corr)
        log_lag = row * inc
        fit = log_lag >= RS_LOW_CUTOFF and math.log10(math.floor(math.pow(10.0, log_lag))) <= RS_HIGH_CUTOFF
        # Block 0 is always computed, even when the count is ≤ 0 (only for n < 30). Slots of blocks not
        # computed hold R = 0 in the original: they are never fit points and never pass the constant test.
        target = spare if log_lag > RS_HIGH_CUTOFF and not fit else needed
        target.extend((row, i * size, d) for i in range(max(blocks_of_lag, 1)))
    return _RsBlocks.of(n, rows, needed, inc), _RsBlocks.of(n, rows, spare, inc)


def _ranges(sums: FloatArray, squares: FloatArray, blocks: _RsBlocks) -> tuple[FloatArray, FloatArray]:
    """R and R/S of each block (§7.4 step 4), from the flattened zero-prefixed cumulative sums."""
    if blocks.lag.size == 0:
        return np.zeros(0), np.zeros(0)
    base = sums[blocks.start]
    mean = blocks.inverse_lag * (sums[blocks.end] - base)  # ave = (1/d)·(X_{s+d−1} − X_{s−1})
    # D_j = (X_{s+j} − X_{s−1}) − (j+1)·ave, in place: the temporaries (≈ 100 kB per row) dominate the cost.
    deviations = sums.take(blocks.position)
    deviations -= np.repeat(base, blocks.lag)
    scratch = np.repeat(mean, blocks.lag)
    scratch *= blocks.count
    deviations -= scratch
    ranges = np.maximum(np.maximum.reduceat(deviations, blocks.offsets), 0.0)
    ranges -= np.minimum(np.minimum.reduceat(deviations, blocks.offsets), 0.0)
    variance = blocks.inverse_lag * (squares[blocks.end] - squares[blocks.start]) - mean * mean  # M − ave²
    spread = variance > 0  # M > ave²; otherwise R/S is R itself
    deviation = np.sqrt(variance, where=spread, out=np.ones_like(variance))
    return ranges, np.divide(ranges, deviation, where=spread, out=ranges.copy())


def rs_fits(series: ArrayLike) -> list[HurstFit]:
    """
    Rescaled-range ("pox plot", overlapping blocks) Hurst estimate of each row (§7.4).

    Parameters
    ----------
    series : array_like of float, shape (rows, n), n ≥ 8
        One series x_0 … x_{n−1} per row, all n values used (no power-of-two truncation), any unit.

    Returns
    -------
    list of HurstFit
        Per row, the least-squares slope of log₁₀(R/S) against log₁₀ ⌊10^(i·inc)⌋ over the fit rows' blocks
        with R > 0.

    Raises
    ------
    NotAnalysable
        ``hurst_series_too_short`` when n < 8; ``constant_series`` when, in some row, no fit-row block or no
        excluded-row block has a range above 1e-10.

    Notes
    -----
    Every block of every lag of every row is computed at once: the deviations
    ``D_j = (X_{s+j} − X_{s−1}) − (j+1)·ave`` of all blocks lie in one flat array and ``reduceat`` gives each
    block's extremes; the arithmetic is the spec's, term by term, with the sequential sums of ``np.cumsum``.
    Lags, block starts and abscissas depend on n only and are cached; they use the scalar ``math`` functions
    because numpy's vectorised ones can differ in the last bit and flip a ceiling or floor.
    """
    values = as_series(series, "series", ndim=2)
    rows, n = values.shape
    if n < MIN_HURST_SERIES:
        raise NotAnalysable("hurst_series_too_short")
    needed, spare = _rs_plan(n, rows)
    # Zero-prefixed cumulative sums of each row: sums[r, j + 1] = X_j, sums[r, 0] = X_{−1} = 0.
    sums = np.zeros((rows, n + 1))
    np.cumsum(values, axis=1, out=sums[:, 1:])
    squares = np.zeros((rows, n + 1))
    np.cumsum(values * values, axis=1, out=squares[:, 1:])
    sums = sums.ravel()
    squares = squares.ravel()

    ranges, rescaled = _ranges(sums, squares, needed)
    ranges = ranges.reshape(rows, -1)
    varying = ranges > RS_CONSTANT_RANGE
    fit_varies = (varying & needed.fit).any(axis=1)
    excluded_varies = (varying & needed.excluded).any(axis=1)
    if not excluded_varies.all():
        spare_ranges = _ranges(sums, squares, spare)[0].reshape(rows, -1)
        excluded_varies |= (spare_ranges > RS_CONSTANT_RANGE).any(axis=1)
    if not (fit_varies & excluded_varies).all():
        raise NotAnalysable("constant_series")
    points = needed.fit & (ranges > 0)
    rescaled = rescaled.reshape(rows, -1)
    fits = []
    for row in range(rows):
        abscissa = needed.abscissa[points[row]]
        ordinate = np.log10(rescaled[row, points[row]])
        fits.append(HurstFit(hurst=_slope(abscissa, ordinate), log_scale=abscissa, log_statistic=ordinate))
    return fits


def wavelet_fits(series: ArrayLike) -> list[HurstFit]:
    """
    Wavelet (Abry–Veitch style) Hurst estimate of each row (§7.5).

    Parameters
    ----------
    series : ndarray of float64, shape (rows, n)
        One series per row; only its first L = 2^⌊log₂ n⌋ values are used.

    Returns
    -------
    list of HurstFit
        Per row, the slope of the least-squares line through ``(o, (log₂ mean(d_o²) + o) / 2)`` for octaves
        o = 2 … j2, where d_o are the kept detail coefficients of level o of
        ``pywt.wavedec(x, 'db2', mode='periodic', level=log₂ L − 2)`` (indices 1 … L/2^o − 3) and
        j2 = min(8, log₂ L − 3). With a single octave (L = 32) it is the minimum-norm slope ``2·y/5``; with none
        (L ≤ 16) it is 0.0: meaningless values the original produced without error.

    Raises
    ------
    NotAnalysable
        ``constant_series`` when the kept coefficients of a fitted octave are all exactly zero (their log would be
        −∞). The original did not guard this; for a constant series the R/S estimator fails the same way right
        after, and the guard keeps NaN and infinities out of every result.

    Notes
    -----
    For L ≤ 1024 the kept coefficients come from one matrix product with a cached matrix whose columns are
    ``wavedec`` of the unit vectors: the same linear map, with sums in another order (relative differences
    around 1e-14, far inside the 1e-6 parity tolerance), four times faster than ``wavedec`` on two rows.
    """
    values = as_series(series, "series", ndim=2)
    rows, n = values.shape
    plan = _wavelet_plan(hurst_series_length(n))
    if plan is None:
        empty = np.empty(0)
        return [HurstFit(hurst=0.0, log_scale=empty, log_statistic=empty) for _ in range(rows)]
    x = values[:, : plan.length]
    kept = plan.matrix @ x.T if plan.matrix is not None else _kept_coefficients(x).T
    energy = np.add.reduceat(kept * kept, plan.offsets, axis=0).T / plan.counts
    if not energy.all():
        raise NotAnalysable("constant_series")
    statistic = (np.log2(energy) + plan.scale) / 2
    slopes = (statistic @ plan.slope_weights).tolist()
    return [
        HurstFit(hurst=h, log_scale=plan.scale, log_statistic=row) for h, row in zip(slopes, statistic, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _WaveletPlan:
    """What the wavelet estimator needs for series of one length L."""

    length: int  # L
    scale: FloatArray  # the fitted octaves j1 … j2
    counts: IntArray  # kept coefficients per fitted octave: L/2^o − 3
    offsets: IntArray  # position of each octave's first kept coefficient in the concatenated kept coefficients
    matrix: FloatArray | None  # kept coefficients = matrix @ x, for L ≤ WAVELET_MATRIX_MAX_LENGTH
    slope_weights: FloatArray  # the fit's slope is statistic @ slope_weights (least squares with fixed abscissae)


@functools.lru_cache(maxsize=16)
def _wavelet_plan(length: int) -> _WaveletPlan | None:
    """Octaves and coefficient layout for series of ``length`` = L values; None when no octave is fitted."""
    first, last = _octaves(length)
    if last < first:
        return None
    counts = np.array([(length >> octave) - 3 for octave in range(first, last + 1)], dtype=np.int64)
    matrix = None
    if length <= WAVELET_MATRIX_MAX_LENGTH:
        # Row i of the identity's coefficients is the image of the unit vector e_i: the map's i-th column.
        matrix = np.ascontiguousarray(_kept_coefficients(np.eye(length)).T)
    scale = np.arange(first, last + 1, dtype=np.float64)
    if scale.size == 1:
        # One octave: the minimum-norm solution of a·x0 + c = y is (a, c) = y·(x0, 1) / (x0² + 1).
        weights = scale / (scale * scale + 1.0)
    else:
        centred = scale - scale.mean()
        weights = centred / np.dot(centred, centred)  # Σ (x − x̄)·y / Σ (x − x̄)²
    return _read_only(
        _WaveletPlan,
        length=length,
        scale=scale,
        counts=counts,
        offsets=np.cumsum(counts) - counts,
        matrix=matrix,
        slope_weights=weights,
    )


def _octaves(length: int) -> tuple[int, int]:
    """First and last octave of the wavelet fit for a series of ``length`` = 2^p values (last < first: none)."""
    first, last = WAVELET_OCTAVES
    octaves = length.bit_length() - 2  # noctave = log₂ L − 1
    return first, min(last, octaves - WAVELET_BOUNDARY_OCTAVES)


def _kept_coefficients(x: FloatArray) -> FloatArray:
    """Kept detail coefficients of the fitted octaves of each row of ``x`` (L values each), octave after octave."""
    length = x.shape[1]
    first, last = _octaves(length)
    # [approximation, detail level noctave − 1, …, detail level 1]: level o is coefficients[-o].
    coefficients = pywt.wavedec(x, WAVELET, mode=WAVELET_MODE, level=length.bit_length() - 3, axis=-1)
    # Drop one leading coefficient and the trailing remainder: keep indices 1 … L/2^o − 3.
    return np.concatenate([coefficients[-o][:, 1 : (length >> o) - 2] for o in range(first, last + 1)], axis=1)


def _read_only(cls: type[_Plan], **fields: Any) -> _Plan:
    """Build a cached plan whose arrays cannot be changed by accident (they are shared by every later call)."""
    for value in fields.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return cls(**fields)


def _slope(x: FloatArray, y: FloatArray) -> float:
    """
    Slope of the minimum-norm least-squares line ``y = a·x + c`` through at least one point.

    ``x`` must be non-decreasing (both estimators' abscissae are). With two or more distinct abscissae this is
    ordinary least squares, ``Σ (x − x̄)·y / Σ (x − x̄)²``.
    """
    if x[0] == x[-1]:
        # One abscissa: the minimum-norm solution of a·x0 + c = mean(y) is (a, c) ∝ (x0, 1).
        x0 = float(x[0])
        return x0 * float(y.sum() / y.size) / (x0 * x0 + 1.0)
    dx = x - x.sum() / x.size
    return float(np.dot(dx, y) / np.dot(dx, dx))
