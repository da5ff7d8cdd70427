"""Tests of the one-way times and the usage of a set (analysis spec §7.1–§7.2)."""

from __future__ import annotations

import numpy as np
import pytest

from processor.analysis.histogram import histogram
from processor.analysis.usage import one_way_times, set_usage, usage
from processor.errors import NotAnalysable


class TestOneWayTimes:
    def test_example_record_of_the_reports_spec(self):
        """reports spec §3: φ = 2 s, both one-way times 18 ms."""
        t1, t2, t3, t4 = (
            np.array([v]) for v in (79_999_950_000_000, 79_997_968_000_000, 79_997_968_004_000, 79_999_986_004_000)
        )

        up, down = one_way_times(t1, t2, t3, t4, np.array([2_000_000_000.0]))

        assert ([18_000_000.0], [18_000_000.0]) == (up.tolist(), down.tolist())

    def test_evaluation_order_is_the_specs(self):
        """u = (t2 + φ) − t1 and d = t4 − (t3 + φ) in binary64: large clock values round before the difference."""
        t1, t2, t3, t4 = (np.array([v]) for v in (84_720_516_253_000, 84_560_001_829_000, 84_560_001_876_000, 0))
        offset = np.array([160_522_024_500.25])

        up, down = one_way_times(t1, t2, t3, t4 + 84_720_532_028_000, offset)

        assert [(84_560_001_829_000 + 160_522_024_500.25) - 84_720_516_253_000] == up.tolist()
        assert [84_720_532_028_000 - (84_560_001_876_000 + 160_522_024_500.25)] == down.tolist()


class TestUsage:
    def test_counts_only_samples_strictly_above_threshold(self):
        """A sample equal to the threshold is not part of the queueing tail."""
        one_way_ns = np.array([10.0, 20.0, 30.0, 30.0, 40.0])

        assert 0.25 == usage(one_way_ns, threshold_ns=30.0, mode_ns=10.0)

    def test_no_sample_above_mode_is_not_analysable(self):
        with pytest.raises(NotAnalysable) as caught:
            usage(np.array([5.0, 5.0]), threshold_ns=8.0, mode_ns=5.0)

        assert "no_sample_above_mode" == caught.value.reason

    def test_usage_is_not_clamped(self):
        """A threshold below the mode (negative mid_0) gives usage above 1 (D4: only the payload clamps)."""
        assert 1.5 == usage(np.array([1.0, 2.0, 3.0, 4.0]), threshold_ns=1.5, mode_ns=2.5)


class TestSetUsage:
    def test_uses_each_directions_own_histogram(self):
        rng = np.random.default_rng(3)
        up = 7e6 + rng.exponential(2e5, 400)
        down = 5e6 + rng.exponential(9e5, 400)

        result = set_usage(up, down)

        for values, direction in ((up, result.upstream), (down, result.downstream)):
            h = histogram(values)
            assert (h.mode, h.threshold) == (direction.histogram.mode, direction.histogram.threshold)
            assert int(np.count_nonzero(values > h.threshold)) == direction.over_threshold
            assert int(np.count_nonzero(values > h.mode)) == direction.over_mode
            assert direction.over_threshold / direction.over_mode == direction.usage

    def test_fewer_than_four_samples_are_too_few_bins(self):
        with pytest.raises(NotAnalysable) as caught:
            set_usage(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))

        assert "too_few_bins" == caught.value.reason

    def test_a_direction_with_nothing_above_its_mode_is_not_analysable(self):
        """All downstream times equal: the mode is that value and nothing lies above it."""
        with pytest.raises(NotAnalysable) as caught:
            set_usage(np.arange(9.0), np.full(9, 3.0))

        assert "no_sample_above_mode" == caught.value.reason
