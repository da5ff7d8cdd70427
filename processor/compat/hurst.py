"""
The original's Hurst estimators ``rs`` and ``wavelet`` (compat spec §4), computed by the exact estimators.

Delegates to the new exact analysis: the original's numbers wherever the original did not crash and saw
observations in time order.
"""

from __future__ import annotations

from collections.abc import Sequence

from numpy.typing import ArrayLike

from processor.analysis.hurst import (
    RS_BLOCKS,
    RS_HIGH_CUTOFF,
    RS_LAGS,
    RS_LOW_CUTOFF,
    WAVELET_OCTAVES,
    as_series,
    rs_fits,
    wavelet_fits,
)
from processor.compat.analysis import DegenerateWindowError
from processor.errors import NotAnalysable

# The original's names of the R/S options: blocks, lags, fit range (log10 lag), and the switches that stay off.
NBLK = RS_BLOCKS
NLAG = RS_LAGS
POWER1 = RS_LOW_CUTOFF
POWER2 = RS_HIGH_CUTOFF
SHUFFEL = 0
OVERLAP = 1
NDIFF = 0
LAG = 0
CONNECT_ = 0

#: The original's message for a series whose R/S ranges are all zero.
CONSTANT_SERIES_MESSAGE = "Either the series is constant or no data was entered."

#: The wavelet's order (vanishing moments of the Daubechies wavelet) the estimator uses.
WAVELET_ORDER = 2


def crs(data: ArrayLike, output: list[tuple[float, float]]) -> float:
    """
    R/S Hurst exponent of ``data``; ``output`` is filled with the fit's points (log10 lag, log10 R/S).

    Raises ValueError for a constant series (or one shorter than 8 values).
    """
    try:
        fit = rs_fits(as_series(data, "data")[None, :])[0]
    except NotAnalysable as exc:
        raise DegenerateWindowError(exc.reason, CONSTANT_SERIES_MESSAGE) from exc
    output[:] = list(zip(fit.log_scale.tolist(), fit.log_statistic.tolist(), strict=True))
    return fit.hurst


def rs(data: ArrayLike) -> float:
    """R/S (rescaled range) Hurst exponent of ``data``, all values used (analysis spec §7.4)."""
    return crs(data, [])


def wavelet(data: ArrayLike, order: int = WAVELET_ORDER, octaves_bounds: Sequence[int] = WAVELET_OCTAVES) -> float:
    """
    Wavelet Hurst exponent of the first 2^⌊log2 n⌋ values of ``data`` (analysis spec §7.5).

    Only the analysis' ``order`` 2 and ``octaves_bounds`` (2, 8) are available.
    """
    if order != WAVELET_ORDER or tuple(octaves_bounds) != WAVELET_OCTAVES:
        raise ValueError(f"only order={WAVELET_ORDER} and octaves_bounds={WAVELET_OCTAVES} are available")
    try:
        return wavelet_fits(as_series(data, "data")[None, :])[0].hurst
    except NotAnalysable as exc:
        raise DegenerateWindowError(exc.reason, CONSTANT_SERIES_MESSAGE) from exc
