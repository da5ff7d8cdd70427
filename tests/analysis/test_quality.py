"""Tests of the per-minute usage and the quality of each direction (analysis spec §7.6)."""

from __future__ import annotations

import numpy as np
import pytest

from processor.analysis.quality import congested_minutes, minute_usages, quality, quality_minutes
from processor.analysis.usage import set_usage
from processor.errors import NotAnalysable


def window_ts(counts: dict[int, int], first_minute_s: int = 1_376_092_080) -> np.ndarray:
    """Sorted ts with ``counts[i]`` observations in minute i after ``first_minute_s`` (spread over its seconds)."""
    parts = [first_minute_s + 60 * i + np.sort(np.arange(n) % 60) for i, n in sorted(counts.items())]
    return np.concatenate(parts).astype(np.int64)


class TestQualityMinutes:
    def test_minutes_with_fewer_than_30_observations_are_dropped(self):
        """§11.3: 23:48 (31 observations) is kept, 23:58 (28) is dropped."""
        ts = window_ts({0: 31, 1: 60, 2: 29, 3: 30, 4: 28})

        minutes = quality_minutes(ts)

        assert [1_376_092_080, 1_376_092_140, 1_376_092_260] == minutes.minute_s.tolist()
        assert [0, 31, 120] == minutes.start.tolist()
        assert [31, 60, 30] == minutes.size.tolist()

    def test_minutes_are_utc_minutes_of_ts(self):
        """minute(o) = ⌊ts / 60⌋ · 60, whatever second the window starts at: 3 + 60 + 57 observations."""
        ts = np.arange(1_000_000_017, 1_000_000_017 + 120, dtype=np.int64)

        minutes = quality_minutes(ts)

        assert [1_000_000_020, 1_000_000_080] == minutes.minute_s.tolist()
        assert [60, 57] == minutes.size.tolist()

    def test_no_minute_with_30_observations_is_not_analysable(self):
        with pytest.raises(NotAnalysable) as caught:
            quality_minutes(window_ts({0: 29, 1: 29, 2: 10}))

        assert "no_quality_minute" == caught.value.reason


class TestMinuteUsages:
    def test_each_minute_gets_the_usage_of_its_own_set(self):
        """Every kept minute's usage equals §7.2 run on that minute alone (its own two histograms)."""
        rng = np.random.default_rng(17)
        ts = window_ts({0: 31, 1: 60, 2: 12, 3: 59, 4: 45, 5: 60})
        # Millisecond-rounded times, as older clients give them: ties and zero-width bins are common.
        up = np.round(7e6 + rng.exponential(3e5, ts.size), -6) + rng.choice([0.0, 0.5], ts.size)
        down = 5e6 + rng.exponential(6e5, ts.size)
        minutes = quality_minutes(ts)

        result = minute_usages(up, down, minutes)

        expected = [
            set_usage(up[start : start + size], down[start : start + size])
            for start, size in zip(minutes.start, minutes.size, strict=True)
        ]
        assert [e.upstream.usage for e in expected] == result.upstream.tolist()
        assert [e.downstream.usage for e in expected] == result.downstream.tolist()

    def test_a_minute_with_nothing_above_its_mode_is_not_analysable(self):
        ts = window_ts({0: 40, 1: 40})
        up = np.random.default_rng(1).normal(7e6, 1e5, ts.size)
        down = up.copy()
        down[40:] = 5e6  # the second minute's downstream times are all equal

        with pytest.raises(NotAnalysable) as caught:
            minute_usages(up, down, quality_minutes(ts))

        assert "no_sample_above_mode" == caught.value.reason


class TestQuality:
    def test_congested_needs_usage_below_half_and_hurst_above_0_7_both_strict(self):
        usages = np.array([0.1, 0.49, 0.5, 0.9])

        assert 2 == congested_minutes(usages, 0.71)
        assert 0 == congested_minutes(usages, 0.7)

    def test_quality_is_the_share_of_minutes_not_congested(self):
        """§11.3 downstream: 8 of 10 minutes below 0.5 with H_eff 0.7021 → quality 0.2."""
        usages = np.array([0.2273, 0.1795, 0.2708, 0.1702, 0.8793, 0.2245, 0.1304, 0.1875, 0.1837, 0.8421])

        assert 0.2 == quality(usages, 0.7020514224160644)

    def test_quality_is_one_when_hurst_is_at_most_0_7(self):
        assert 1.0 == quality(np.zeros(7), 0.4634)
