"""The original's ``processor.hurst`` module: the R/S and wavelet Hurst estimators (see :mod:`processor.compat`)."""

from processor.compat.hurst import (
    CONNECT_,
    LAG,
    NBLK,
    NDIFF,
    NLAG,
    OVERLAP,
    POWER1,
    POWER2,
    SHUFFEL,
    crs,
    rs,
    wavelet,
)

__all__ = ["CONNECT_", "LAG", "NBLK", "NDIFF", "NLAG", "OVERLAP", "POWER1", "POWER2", "SHUFFEL", "crs", "rs", "wavelet"]
