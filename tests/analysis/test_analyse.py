"""Tests of ``analyse``: the whole window analysis, its results dict and its not-analysable reasons."""

from __future__ import annotations

import calendar
import time

import numpy as np
import pytest

from processor.analysis import DAY_NS, analyse
from processor.errors import NotAnalysable
from processor.observations import LONG, OBSERVATION_DTYPE, observations
from tests.analysis.synthetic import START_S, queueing_times, window


def read_text_log(path):
    """The 2013 text log of §11.3: ts = date and time read as UTC (fraction dropped), t = microseconds · 1000."""
    ts, t = [], ([], [], [], [])
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        date, clock, _size, *values = line.split("|")
        stamp = time.strptime(f"{date} {clock.strip().split(',')[0]}", "%m/%d/%y %H:%M:%S")
        ts.append(calendar.timegm(stamp))
        for column, value in zip(t, values, strict=True):
            column.append(int(value) * 1000)
    return observations(ts, *t)


@pytest.fixture(scope="module")
def text_log_result(shared_data):
    return analyse(read_text_log(shared_data / "samples" / "test_analysis_data.txt"))


class TestTextLogWorkedNumbers:
    """Every value of the worked example of analysis spec §11.3 (original algorithm, file order = D1 order)."""

    def test_result(self, text_log_result):
        upstream, downstream = text_log_result.upstream, text_log_result.downstream

        assert 1376092707 == text_log_result.timestamp
        assert 0.8093457943925234 == upstream.usage
        assert 0.24074074074074073 == downstream.usage
        assert pytest.approx(0.4693216718235134, abs=1e-9) == upstream.hurst_wavelet
        assert pytest.approx(0.4575281782963149, abs=1e-9) == upstream.hurst_rs
        assert pytest.approx(0.8012538831632052, abs=1e-9) == downstream.hurst_wavelet
        assert pytest.approx(0.6028489616689235, abs=1e-9) == downstream.hurst_rs
        assert (1.0, 0.2) == (upstream.quality, downstream.quality)

    def test_window_sizes(self, text_log_result):
        d = text_log_result.diagnostics

        assert (1579, 596, 512) == (d.observations, d.window_observations, d.hurst_length)

    def test_rtt_histogram(self, text_log_result):
        h = text_log_result.diagnostics.rtt_histogram

        assert (39, 40, 59, 12) == (h.k, h.items_per_bin, int(h.counts[-1]), h.representatives)
        assert (7, 15_462_000, 15_729_000, 15_595_500.0) == (h.mode_index, h.lo[7], h.hi[7], h.mode)
        assert (12_068_000, 13_418_000, 12_743_000) == (h.lo[0], h.hi[0], h.mid[0])
        assert 21_967_000.0 == h.threshold

    def test_reference_set_and_offsets(self, text_log_result):
        offset = text_log_result.diagnostics.offset

        assert 40 == text_log_result.diagnostics.reference_count
        assert (1376091164, 1376092661) == (offset.ts_s[0], offset.ts_s[-1])
        assert [160_522_024_500.0, 160_477_459_500.0] == offset(np.array([1376091164, 1376092707])).tolist()

    def test_upstream_histogram(self, text_log_result):
        direction = text_log_result.diagnostics.upstream
        h = direction.usage.histogram

        assert (24, 8, 2) == (h.k, h.representatives, h.mode_index)
        assert (7_449_293.109375, 7_819_116.5, 7_634_204.109375) == (h.lo[2], h.hi[2], h.mode)
        assert (6_510_683.734375, 10_889_545.9765625) == (h.mid[0], h.threshold)
        assert (433, 535) == (direction.usage.over_threshold, direction.usage.over_mode)

    def test_downstream_histogram(self, text_log_result):
        direction = text_log_result.diagnostics.downstream
        h = direction.usage.histogram

        assert (4, 6_607_277.78125, 6_667_927.03125, 6_637_601.78125) == (h.mode_index, h.lo[4], h.hi[4], h.mode)
        assert (5_932_121.0, 9_603_662.28125) == (h.mid[0], h.threshold)
        assert (117, 486) == (direction.usage.over_threshold, direction.usage.over_mode)

    def test_minutes_and_congestion(self, text_log_result):
        d = text_log_result.diagnostics
        expected_down = [0.2273, 0.1795, 0.2708, 0.1702, 0.8793, 0.2245, 0.1304, 0.1875, 0.1837, 0.8421]

        assert 10 == d.minutes.size.size
        assert 31 == d.minutes.size[0]  # 23:48; 23:58 (28 observations) is dropped
        assert 1376092080 == d.minutes.minute_s[0]
        assert 1376092620 == d.minutes.minute_s[-1]
        assert pytest.approx(expected_down, abs=5e-5) == d.downstream.minute_usages.tolist()
        assert (0, 8) == (d.upstream.congested_minutes, d.downstream.congested_minutes)
        assert pytest.approx(0.4634, abs=5e-5) == d.upstream.hurst.effective
        assert pytest.approx(0.7021, abs=5e-5) == d.downstream.hurst.effective


class TestResultsDict:
    def test_has_the_original_shape_key_order_and_plain_types(self):
        """The original keys in the original order, then the added ``usage_queueing``; plain finite floats."""
        rng = np.random.default_rng(1)
        result = analyse(window(queueing_times(rng, 1200), queueing_times(rng, 1200)))

        payload = result.as_results_dict()

        assert ["timestamp", "upstream", "downstream"] == list(payload)
        assert type(payload["timestamp"]) is int
        for direction in ("upstream", "downstream"):
            assert ["usage", "quality", "hurst", "usage_queueing"] == list(payload[direction])
            assert ["wavelet", "rs"] == list(payload[direction]["hurst"])
            values = [
                payload[direction]["usage"],
                payload[direction]["quality"],
                *payload[direction]["hurst"].values(),
                payload[direction]["usage_queueing"],
            ]
            assert all(type(value) is float and np.isfinite(value) for value in values)
            assert 0.0 <= payload[direction]["usage_queueing"] <= 1.0

    def test_timestamp_is_the_last_observation_of_the_window(self):
        rng = np.random.default_rng(2)

        result = analyse(window(queueing_times(rng, 1200), queueing_times(rng, 1200)))

        assert START_S + 1199 == result.timestamp


class TestInput:
    def test_records_that_are_not_short_probe_replies_are_ignored(self):
        rng = np.random.default_rng(3)
        short = window(queueing_times(rng, 1200), queueing_times(rng, 1200))
        noise = short[::7].copy()
        noise["type"] = LONG
        noise["t4"] += 10**12
        mixed = np.concatenate([short, noise])
        mixed = mixed[np.lexsort([mixed[f] for f in ("size", "type", "t4", "t3", "t2", "t1", "ts")])]

        assert analyse(short).as_results_dict() == analyse(mixed).as_results_dict()

    def test_observations_not_sorted_by_ts_are_a_caller_bug(self):
        rng = np.random.default_rng(4)
        shuffled = window(queueing_times(rng, 1200), queueing_times(rng, 1200))[::-1]

        with pytest.raises(ValueError, match="sorted"):
            analyse(shuffled)

    def test_rejects_arrays_without_the_observation_fields(self):
        with pytest.raises(TypeError, match="observations"):
            analyse(np.zeros(5))


class TestMidnight:
    @pytest.mark.parametrize("clock", ["client", "server"])
    def test_a_clock_wrapping_at_midnight_gives_the_unwrapped_result(self, clock):
        """D2: a window whose clock passes midnight analyses as if the clock had kept counting."""
        rng = np.random.default_rng(5)
        up, down = queueing_times(rng, 1200), queueing_times(rng, 1200)
        if clock == "server":
            counting = window(up, down, server_ns=DAY_NS - 2_000_000_000 - 10_800 * 10**9 - 900 * 10**9)
            fields = ("t2", "t3")
        else:
            counting = window(up, down)
            counting["t1"] += DAY_NS - 10_800 * 10**9 - 700 * 10**9
            counting["t4"] += DAY_NS - 10_800 * 10**9 - 700 * 10**9
            fields = ("t1", "t4")
        wrapped = counting.copy()
        for field in fields:
            wrapped[field] = np.where(wrapped[field] >= DAY_NS, wrapped[field] - DAY_NS, wrapped[field])
        assert (wrapped[fields[0]] < counting[fields[0]]).any()  # the test window does wrap

        assert analyse(counting).as_results_dict() == analyse(wrapped).as_results_dict()


class TestNotAnalysable:
    """Each reason of analysis spec §10, through ``analyse``."""

    @staticmethod
    def reason(observations_array) -> str:
        with pytest.raises(NotAnalysable) as caught:
            analyse(observations_array)
        return caught.value.reason

    def test_no_observations_is_span_too_short(self):
        assert "span_too_short" == self.reason(np.empty(0, dtype=OBSERVATION_DTYPE))

    def test_only_long_probe_replies_is_span_too_short(self):
        rng = np.random.default_rng(6)
        longs = window(queueing_times(rng, 1200), queueing_times(rng, 1200))
        longs["type"] = LONG

        assert "span_too_short" == self.reason(longs)

    def test_a_span_below_600_seconds_is_span_too_short(self):
        rng = np.random.default_rng(7)

        assert "span_too_short" == self.reason(window(queueing_times(rng, 600), queueing_times(rng, 600)))

    def test_fewer_than_4_observations_is_too_few_bins(self):
        assert "too_few_bins" == self.reason(window([5, 6, 7], [5, 6, 7], [START_S, START_S + 300, START_S + 700]))

    def test_fewer_than_4_observations_in_the_last_10_minutes_is_too_few_bins(self):
        rng = np.random.default_rng(8)
        ts = np.concatenate([START_S + np.arange(100), START_S + 1000 + np.arange(3)])

        assert "too_few_bins" == self.reason(window(queueing_times(rng, 103), queueing_times(rng, 103), ts))

    def test_equal_one_way_times_are_no_sample_above_mode(self):
        assert "no_sample_above_mode" == self.reason(window(np.full(1200, 5_000_000), np.full(1200, 5_000_000)))

    def test_fewer_than_8_observations_in_the_last_10_minutes_is_hurst_series_too_short(self):
        """Also no minute has 30 observations, but the Hurst length is checked first (§10 order)."""
        rng = np.random.default_rng(9)
        ts = np.concatenate([START_S + np.arange(100), START_S + 1000 + 10 * np.arange(7)])

        assert "hurst_series_too_short" == self.reason(window(queueing_times(rng, 107), queueing_times(rng, 107), ts))

    def test_a_constant_hurst_series_is_constant_series(self):
        """The last 512 of W's 600 one-way times are equal; the earlier ones keep the usage defined.

        Both directions are held at the base time, so those observations make up C and φ is exactly constant.
        """
        rng = np.random.default_rng(10)
        up, down = queueing_times(rng, 1200), queueing_times(rng, 1200)
        up[-512:] = down[-512:] = 5_000_000

        assert "constant_series" == self.reason(window(up, down))

    def test_no_minute_with_30_observations_is_no_quality_minute(self):
        rng = np.random.default_rng(11)
        ts = START_S + 3 * np.arange(400)  # one observation every 3 s: 20 per minute

        assert "no_quality_minute" == self.reason(window(queueing_times(rng, 400), queueing_times(rng, 400), ts))

    def test_a_kept_minute_with_nothing_above_its_mode_is_no_sample_above_mode(self):
        """Checked last: the minute's histogram is all one value, while the window as a whole is fine."""
        rng = np.random.default_rng(12)
        up, down = queueing_times(rng, 1200), queueing_times(rng, 1200)
        first = (START_S + 1199) // 60 * 60 - 120 - START_S  # a full minute inside W
        up[first : first + 60] = down[first : first + 60] = 5_000_000  # φ is then exactly constant, as above

        assert "no_sample_above_mode" == self.reason(window(up, down))
