"""Tests of the R/S and wavelet Hurst estimators (analysis spec §7.4–§7.5, reference values §11.2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import pywt

from processor.analysis.hurst import (
    hurst_estimates,
    hurst_estimates_rows,
    hurst_rs,
    hurst_series_length,
    hurst_wavelet,
    rs_fits,
    wavelet_fits,
)
from processor.errors import NotAnalysable


def literal_rs(x: list[float]) -> float:
    """§7.4 written out step by step with plain Python loops (slow, for comparison only)."""
    n = len(x)
    cx, cy, sx, sy = [], [], 0.0, 0.0
    for v in x:
        sx += v
        sy += v * v
        cx.append(sx)
        cy.append(sy)

    def X(j: int) -> float:
        return cx[j] if j >= 0 else 0.0

    def Y(j: int) -> float:
        return cy[j] if j >= 0 else 0.0

    b = n // 5
    inc = math.log10(n) / 50
    r_slots = [[0.0] * 5 for _ in range(50)]
    rs_slots = [[0.0] * 5 for _ in range(50)]
    for k in range(50):
        d = math.ceil(math.pow(10.0, inc * (k + 1))) if k < 49 else int(math.pow(10.0, inc * 50))
        nval = 5
        if d > b:
            corr = math.ceil((d - b) / b)
            nval = 5 - (4 if corr == 5 else corr)
        for i in [0, *range(1, nval)]:
            s = i * b
            ave = (1 / d) * (X(s + d - 1) - X(s - 1))
            devs = [(X(s + j) - X(s - 1)) - (j + 1) * ave for j in range(d)]
            r = max(0.0, max(devs)) - min(0.0, min(devs))
            m = (1 / d) * (Y(s + d - 1) - Y(s - 1))
            r_slots[k][i] = r
            rs_slots[k][i] = r / math.sqrt(m - ave * ave) if m > ave * ave else r
    xs, ys, fit_any, excluded_any = [], [], False, False
    for i in range(1, 50):
        log_lag = i * inc
        abscissa = math.log10(math.floor(math.pow(10.0, log_lag)))
        fit = log_lag >= 0.7 and abscissa <= 2.5
        excluded = log_lag < 0.7 or log_lag > 2.5
        for slot in range(5):
            r = r_slots[i - 1][slot]
            fit_any |= fit and r > 1e-10
            excluded_any |= excluded and r > 1e-10
            if fit and r > 0:
                xs.append(abscissa)
                ys.append(math.log10(rs_slots[i - 1][slot]))
    assert fit_any and excluded_any
    design = np.column_stack([xs, np.ones(len(xs))])
    return float(np.linalg.lstsq(design, np.array(ys), rcond=None)[0][0])


def literal_wavelet(x: np.ndarray) -> float:
    """§7.5 with ``pywt.wavedec`` and ``lstsq``, one octave at a time."""
    length = 2 ** int(math.log2(x.size))
    noctave = int(math.log2(length)) - 1
    j2 = 8 if 8 <= noctave - 2 else noctave - 2
    coefficients = pywt.wavedec(x[:length], "db2", mode="periodic", level=noctave - 1)
    points = []
    for octave in range(2, j2 + 1):
        kept = coefficients[-octave][1 : length // 2**octave - 2]
        points.append((octave, (math.log2(np.mean(kept**2)) + octave) / 2))
    if not points:
        return 0.0
    design = np.array([[o, 1.0] for o, _ in points])
    return float(np.linalg.lstsq(design, np.array([y for _, y in points]), rcond=None)[0][0])


@pytest.fixture(scope="module")
def hurst_reference(shared_data):
    """The two 10 000-value series of §11.2, by generator name."""
    entries = json.loads((shared_data / "hurst" / "test_hurst_data.json").read_text())
    return {entry["generator"]: entry for entry in entries}


class TestReferenceSeries:
    @pytest.mark.parametrize(
        ("generator", "original", "r_value"), [("farimagen", 0.66508806, 0.6650881), ("fft-gen", 0.64612805, 0.646128)]
    )
    def test_rs_estimate_matches_original_and_r(self, hurst_reference, generator, original, r_value):
        """Original Python and R values: analysis spec §11.2."""
        h = hurst_rs(hurst_reference[generator]["values"])

        assert pytest.approx(original, abs=1e-6) == h
        assert pytest.approx(r_value, rel=5e-3) == h
        assert pytest.approx(hurst_reference[generator]["expected"]["rs"], rel=5e-3) == h

    @pytest.mark.parametrize(
        ("generator", "original", "r_value"),
        [("farimagen", 0.66116032, 0.6611598), ("fft-gen", 0.73710612, 0.7341646)],
    )
    def test_wavelet_estimate_matches_original_and_r(self, hurst_reference, generator, original, r_value):
        """Original Python and R values: §11.2; mode 'periodization' would give 0.66404 and 0.74043."""
        h = hurst_wavelet(hurst_reference[generator]["values"])

        assert pytest.approx(original, abs=1e-6) == h
        assert pytest.approx(r_value, rel=5e-3) == h
        assert pytest.approx(hurst_reference[generator]["expected"]["wavelet"], rel=5e-3) == h


class TestRescaledRange:
    @pytest.mark.parametrize("n", [8, 13, 30, 100, 121, 512, 600, 1024])
    def test_equals_the_literal_algorithm(self, n):
        """The vectorised estimator agrees with a loop-by-loop transcription of §7.4 (any n, not only 2^p)."""
        rng = np.random.default_rng(n)
        x = 7e6 + np.cumsum(rng.normal(0, 1e4, n)) + rng.normal(0, 3e4, n)

        assert pytest.approx(literal_rs(x.tolist()), abs=1e-12) == hurst_rs(x)

    def test_fit_points_for_512_values(self):
        """n = 512: rows 13 … 46 (34 rows; 13 and 14 share ⌊v⌋ = 5), abscissas log₁₀ 5 … log₁₀ 310 (§7.4)."""
        x = np.random.default_rng(512).normal(size=512)

        fit = rs_fits(x[np.newaxis])[0]

        abscissas = np.unique(fit.log_scale)
        assert 33 == abscissas.size
        assert pytest.approx([math.log10(5), math.log10(310)], abs=1e-12) == [abscissas[0], abscissas[-1]]

    def test_rows_are_estimated_independently(self):
        rng = np.random.default_rng(11)
        series = rng.normal(size=(3, 512)) * [[1.0], [1e5], [3.0]]

        fits = rs_fits(series)

        assert [hurst_rs(row) for row in series] == [fit.hurst for fit in fits]

    def test_long_lag_excluded_rows_count_when_short_lag_blocks_are_flat(self):
        """Flat at every short-lag block (lags 2 … 5 from s = 0, b, …, 4b) is still not a constant series."""
        x = np.random.default_rng(21).normal(size=512)
        for start in range(0, 512, 102):
            x[start : start + 6] = 0.25

        assert pytest.approx(literal_rs(x.tolist()), abs=1e-12) == hurst_rs(x)

    def test_constant_series_is_not_analysable(self):
        with pytest.raises(NotAnalysable) as caught:
            hurst_rs(np.full(512, 7e6))

        assert "constant_series" == caught.value.reason

    def test_series_shorter_than_8_is_too_short(self):
        with pytest.raises(NotAnalysable) as caught:
            hurst_rs(np.arange(7.0))

        assert "hurst_series_too_short" == caught.value.reason


class TestWavelet:
    @pytest.mark.parametrize("n", [64, 100, 256, 512, 1000, 1024, 2048, 5000])
    def test_equals_wavedec_with_lstsq(self, n):
        """Both the cached-matrix path (L ≤ 1024) and the wavedec path give §7.5's numbers."""
        x = 7e6 + np.random.default_rng(n).normal(0, 1e5, n)

        assert pytest.approx(literal_wavelet(x), abs=1e-10) == hurst_wavelet(x)

    def test_octaves_2_to_6_for_512_values(self):
        fit = wavelet_fits(np.random.default_rng(1).normal(size=(1, 512)))[0]

        assert [2.0, 3.0, 4.0, 5.0, 6.0] == fit.log_scale.tolist()

    def test_single_octave_gives_the_minimum_norm_slope(self):
        """L = 32: one point (2, y), minimum-norm slope 2·y/5 (D15, reproduced from the original)."""
        x = np.random.default_rng(32).normal(size=32)
        kept = pywt.wavedec(x, "db2", mode="periodic", level=3)[-2][1:6]
        y = (math.log2(np.mean(kept**2)) + 2) / 2

        assert pytest.approx(2 * y / 5, abs=1e-12) == hurst_wavelet(x)

    @pytest.mark.parametrize("n", [8, 16, 31])
    def test_no_octave_gives_zero(self, n):
        assert 0.0 == hurst_wavelet(np.random.default_rng(n).normal(size=n))

    def test_uses_only_the_first_power_of_two_values(self):
        x = np.random.default_rng(5).normal(size=700)

        assert hurst_wavelet(x[:512]) == hurst_wavelet(x)


class TestHurstEstimates:
    def test_effective_hurst_is_the_mean_of_both(self):
        x = np.random.default_rng(8).normal(size=512)

        estimates = hurst_estimates(x)

        assert (hurst_wavelet(x) + hurst_rs(x)) / 2 == estimates.effective

    def test_rows_agree_with_one_series_at_a_time(self):
        series = np.random.default_rng(9).normal(size=(2, 256))

        rows = hurst_estimates_rows(series)

        # R/S is bit-identical; the wavelet's matrix product may round the last bit differently for 1 and 2 rows.
        assert [hurst_rs(s) for s in series] == [e.rs.hurst for e in rows]
        assert pytest.approx([hurst_wavelet(s) for s in series], rel=1e-13) == [e.wavelet.hurst for e in rows]

    def test_series_shorter_than_8_is_too_short(self):
        with pytest.raises(NotAnalysable) as caught:
            hurst_estimates(np.arange(7.0))

        assert "hurst_series_too_short" == caught.value.reason

    def test_any_constant_row_is_a_constant_series(self):
        series = np.vstack([np.random.default_rng(4).normal(size=512), np.full(512, 3.0)])

        with pytest.raises(NotAnalysable) as caught:
            hurst_estimates_rows(series)

        assert "constant_series" == caught.value.reason

    @pytest.mark.parametrize(("n", "length"), [(0, 0), (1, 1), (7, 4), (8, 8), (596, 512), (1024, 1024)])
    def test_series_length_is_the_largest_power_of_two(self, n, length):
        assert length == hurst_series_length(n)
