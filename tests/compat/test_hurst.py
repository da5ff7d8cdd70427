"""Tests of the original's ``processor.hurst`` (compat spec §4): ``rs`` and ``wavelet`` on the R reference series."""

from __future__ import annotations

import json

import numpy as np
import pytest

from processor import hurst
from processor.analysis import hurst_rs, hurst_wavelet

#: The original Python's values on the reference series (analysis spec §11.2), rs then wavelet.
ORIGINAL = {"farimagen": (0.66508806, 0.66116032), "fft-gen": (0.64612805, 0.73710612)}


@pytest.fixture(scope="module")
def series(shared_data):
    return {
        item["generator"]: item for item in json.loads((shared_data / "hurst" / "test_hurst_data.json").read_text())
    }


@pytest.mark.parametrize("generator", ["farimagen", "fft-gen"])
def testRs(series, generator):  # the original test's name
    """Within 0.5 % of R (the original test's tolerance) and 1e-6 of the original Python."""
    value = hurst.rs(series[generator]["values"])

    assert float is type(value)
    assert pytest.approx(series[generator]["expected"]["rs"], rel=5e-3) == value
    assert pytest.approx(ORIGINAL[generator][0], abs=1e-6) == value


@pytest.mark.parametrize("generator", ["farimagen", "fft-gen"])
def testWavelet(series, generator):  # the original test's name
    value = hurst.wavelet(series[generator]["values"])

    assert float is type(value)
    assert pytest.approx(series[generator]["expected"]["wavelet"], rel=5e-3) == value
    assert pytest.approx(ORIGINAL[generator][1], abs=1e-6) == value


def test_estimators_are_the_exact_ones_on_generated_noise():
    values = np.random.default_rng(3).normal(size=1000)

    assert hurst_rs(values) == hurst.rs(values)
    assert hurst_wavelet(values) == hurst.wavelet(values, order=2, octaves_bounds=(2, 8))
    assert hurst.wavelet(values) == hurst.wavelet(values[:512]) != hurst.wavelet(values[:513][::-1])


def test_a_constant_series_is_the_original_value_error():
    with pytest.raises(ValueError, match=r"Either the series is constant or no data was entered\."):
        hurst.rs([3.0] * 100)
    with pytest.raises(ValueError, match="Either the series is constant"):
        hurst.wavelet([0.0] * 100)  # all detail coefficients exactly zero


def test_crs_fills_output_with_the_fit_points():
    values = np.random.default_rng(4).normal(size=512)
    output: list[tuple[float, float]] = []

    h = hurst.crs(values, output)

    slope = np.polyfit([x for x, _ in output], [y for _, y in output], 1)[0]
    assert pytest.approx(slope, abs=1e-9) == h == hurst.rs(values)
    assert 0.69 < output[0][0] and output[-1][0] < 2.5


def test_other_wavelet_options_are_refused():
    with pytest.raises(ValueError, match="order"):
        hurst.wavelet(np.arange(64.0), order=3)


def test_constants():
    assert (5, 50, 0.7, 2.5) == (hurst.NBLK, hurst.NLAG, hurst.POWER1, hurst.POWER2)
    assert (0, 1, 0, 0, 0) == (hurst.SHUFFEL, hurst.OVERLAP, hurst.NDIFF, hurst.LAG, hurst.CONNECT_)
