"""Tests of the equal-count histogram, its mode and its threshold (analysis spec §5)."""

from __future__ import annotations

import numpy as np
import pytest

from processor.analysis.histogram import histogram, representatives, sorted_segment_modes
from processor.errors import NotAnalysable


class TestHistogram:
    def test_example_1_of_the_spec(self):
        """Keys 10 … 45: bins [10, 11, 11], [12, 14, 15], [19 … 45]; mode 10 and threshold mid_1 = 13 (§5)."""
        h = histogram([10, 11, 11, 12, 14, 15, 19, 20, 30, 31, 45])

        assert (3, 3, 2) == (h.k, h.items_per_bin, h.representatives)
        assert [10, 12, 19] == h.lo.tolist()
        assert [11, 15, 45] == h.hi.tolist()
        assert [3, 3, 5] == h.counts.tolist()
        assert [10, 13, 32] == h.mid.tolist()
        assert pytest.approx([385 / 3, 385 / 9, 385 / 130], rel=1e-15) == h.scores.tolist()
        assert (0, 10.0, 13.0) == (h.mode_index, h.mode, h.threshold)

    def test_example_2_of_the_spec(self):
        """Keys 0 … 40: the second bin is densest, so threshold = mode + 0.5 · mid_0 = 11 + 2 (§5)."""
        h = histogram([0, 4, 8, 10, 11, 12, 20, 21, 40])

        assert [4, 11, 30] == h.mid.tolist()
        assert [15.0, 60.0, 6.0] == h.scores.tolist()
        assert (1, 11.0, 13.0) == (h.mode_index, h.mode, h.threshold)

    def test_keys_are_sorted_stably(self):
        """Equal keys keep their input order, so bin 0 holds the first-seen of tied keys."""
        h = histogram([5, 1, 5, 1, 5, 1, 5, 1, 5])

        assert [1, 3, 5, 7, 0, 2, 4, 6, 8] == h.order.tolist()

    def test_float_mid_adds_the_floor_of_half_the_width(self):
        """lo 7 449 293.109375, hi 7 819 116.5 → mid 7 634 204.109375 (§5 step 3, and §11.3's upstream mode)."""
        keys = np.array([7_449_293.109375, 7_500_000.0, 7_819_116.5, 9e6, 9.1e6, 9.2e6, 9.3e6, 9.4e6, 9.5e6])

        h = histogram(keys)

        assert 7_634_204.109375 == h.mid[0]

    def test_zero_width_bin_scores_infinity_and_can_be_the_mode(self):
        """D3: a bin of equal keys is infinitely dense (the original divided by zero)."""
        h = histogram([1.0, 2.0, 3.0, 7.0, 7.0, 7.0, 9.0, 10.0, 12.0])

        assert np.inf == h.scores[1]
        assert (1, 7.0) == (h.mode_index, h.mode)
        assert 7.0 + 0.5 * 2.0 == h.threshold

    def test_all_equal_keys_select_mid_1_as_threshold(self):
        """Every bin scores +inf: bin 0 ties with the maximum, so the threshold is mid_1."""
        h = histogram([4.0] * 9)

        assert (0, 4.0, 4.0) == (h.mode_index, h.mode, h.threshold)

    def test_tie_with_bin_0_selects_mid_1(self):
        """p_0 equal to a later maximum (exact equality) still gives threshold = mid_1 (§5 step 7)."""
        h = histogram([0, 2, 4, 10, 12, 14, 20, 21, 40])

        assert h.scores[0] == h.scores[1]
        assert (0, 2.0, 12.0) == (h.mode_index, h.mode, h.threshold)

    def test_only_the_first_r_bins_compete_for_the_mode(self):
        """k = 5 → R = 4: a denser fifth bin is ignored."""
        keys = np.concatenate([np.arange(0, 100, 20), np.arange(100, 200, 20), np.arange(200, 300, 20)])
        keys = np.concatenate([keys, np.arange(300, 400, 20), [1000, 1000.5, 1001, 1001.5, 1002]])

        h = histogram(keys.astype(np.float64))

        assert (5, 4) == (h.k, h.representatives)
        assert h.scores[4] > h.scores[:4].max()
        assert h.mode_index < 4

    @pytest.mark.parametrize(("k", "r"), [(39, 12), (24, 8), (5, 4), (3, 2), (2, 2), (4, 4)])
    def test_representative_bins(self, k, r):
        """R = 2·⌊√k⌋, all bins when that reaches k (§5 step 5 examples)."""
        assert r == representatives(k)

    @pytest.mark.parametrize("n", [0, 1, 3])
    def test_fewer_than_four_keys_are_too_few_bins(self, n):
        with pytest.raises(NotAnalysable) as caught:
            histogram(np.arange(n, dtype=np.float64))

        assert "too_few_bins" == caught.value.reason

    def test_integer_scores_are_exact_beyond_2_to_the_53(self):
        """Integer keys: n · W_tot and c_i · w_i are exact integers, then one correctly rounded division."""
        base = 2**60
        keys = [base, base + 3, base + 10**15, base + 2 * 10**15, base + 2 * 10**15 + 7, base + 5 * 10**15]
        keys += [base + 6 * 10**15, base + 7 * 10**15 + 1, base + 9 * 10**15 + 11]

        h = histogram(np.array(keys, dtype=np.int64))

        total = keys[-1] - keys[0]
        widths = [keys[2] - keys[0], keys[5] - keys[3], keys[8] - keys[6]]
        assert [9 * total / (3 * w) for w in widths] == h.scores.tolist()
        assert keys[0] + (keys[2] - keys[0]) // 2 == int(h.mid[0])

    def test_rejects_two_dimensional_keys(self):
        with pytest.raises(ValueError, match="keys"):
            histogram(np.zeros((3, 3)))


class TestSortedSegmentModes:
    def test_each_segment_gets_what_histogram_gives_it_alone(self):
        """The vectorised per-minute histograms agree exactly with one histogram per segment."""
        rng = np.random.default_rng(20240501)
        sizes = np.array([4, 5, 9, 16, 24, 25, 30, 31, 49, 60, 64, 81, 100, 143, 600])
        # Coarse keys make ties and zero-width bins frequent; the offsets mimic one-way times in nanoseconds.
        keys = rng.integers(0, 40, sizes.sum()) * 0.5 + rng.choice([0.0, 7e6], sizes.sum())
        ordered = np.concatenate([np.sort(part, kind="stable") for part in np.split(keys, np.cumsum(sizes)[:-1])])

        modes = sorted_segment_modes(ordered, sizes)

        expected = [histogram(part) for part in np.split(keys, np.cumsum(sizes)[:-1])]
        assert [h.mode for h in expected] == modes.mode.tolist()
        assert [h.threshold for h in expected] == modes.threshold.tolist()

    def test_random_continuous_segments_agree_with_histogram(self):
        rng = np.random.default_rng(7)
        sizes = rng.integers(4, 200, 40)
        keys = rng.lognormal(15, 0.5, sizes.sum())
        parts = np.split(keys, np.cumsum(sizes)[:-1])

        modes = sorted_segment_modes(np.concatenate([np.sort(p) for p in parts]), sizes)

        assert [histogram(p).mode for p in parts] == modes.mode.tolist()
        assert [histogram(p).threshold for p in parts] == modes.threshold.tolist()

    def test_a_segment_of_fewer_than_four_keys_is_too_few_bins(self):
        with pytest.raises(NotAnalysable) as caught:
            sorted_segment_modes(np.arange(12.0), np.array([5, 3, 4]))

        assert "too_few_bins" == caught.value.reason
