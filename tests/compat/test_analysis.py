"""Tests of the original's analysis API under ``processor.analysis`` (compat spec §3), against the exact analysis."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from processor.analysis import (
    CONGESTION_THRESHOLD,
    DAY_NS,
    HURST_CONGESTION_THRESHOLD,
    MEANINGFUL_OBSERVATIONS_DELTA,
    Analyzer,
    Bin,
    ClockFixer,
    DegenerateWindowError,
    FixedSizeBinHistogram,
    HurstCalculator,
    QualityCalculator,
    UsageCalculator,
    analyse,
    divide_observations_into_minutes,
    downstream_time_function,
    histogram,
    observation_rtt_key_function,
    upstream_time_function,
)
from processor.compat.observations import from_array
from processor.errors import NotAnalysable
from processor.observations import LONG
from processor.reports import Observation, Report, ReportHandler
from tests.analysis.synthetic import queueing_times, window
from tests.analysis.test_parity import batch_files, differences
from tests.shared_data import CALIBRATION_EXPERIMENTS


@pytest.fixture(scope="module")
def records():
    """Twenty minutes of probes with exponential queueing in both directions (the synthetic generator)."""
    rng = np.random.default_rng(13)
    return window(queueing_times(rng, 1200), queueing_times(rng, 1200, scale_ns=9e5))


@pytest.fixture(scope="module")
def analyzer(records):
    return Analyzer(set(from_array(records)))


def without_queueing(results: dict) -> dict:
    for direction in ("upstream", "downstream"):
        del results[direction]["usage_queueing"]
    return results


class TestAnalyzerResults:
    def test_are_those_of_the_exact_analysis_in_the_original_shape(self, records, analyzer):
        results = analyzer.get_results()

        assert without_queueing(analyse(records).as_results_dict()) == results
        assert ["timestamp", "upstream", "downstream"] == list(results)
        assert ["usage", "quality", "hurst"] == list(results["upstream"])
        assert int is type(results["timestamp"])
        assert {float} == {type(results[d][k]) for d in ("upstream", "downstream") for k in ("usage", "quality")}

    def test_order_duplicates_and_long_probes_do_not_matter(self, records, analyzer):
        """C1: the observations are de-duplicated and sorted; only b'S' replies count."""
        observations = from_array(records)
        longs = records[:50].copy()
        longs["type"] = LONG
        shuffled = [observations[i] for i in np.random.default_rng(1).permutation(len(observations))]

        assert analyzer.get_results() == Analyzer(shuffled + observations[:100] + from_array(longs)).get_results()

    def test_timestamp_is_the_chronologically_last_observation(self, records, analyzer):
        assert int(records["ts"].max()) == analyzer.get_results()["timestamp"]

    @pytest.mark.parametrize("clock", ["t2", "t3"])
    def test_a_clock_wrapping_at_midnight_gives_the_unwrapped_result(self, clock, records, analyzer):
        """C2: the server clock passing midnight 15 minutes into the window changes nothing."""
        shift = DAY_NS - int(records["t2"][900])
        wrapped = records.copy()
        for field in ("t2", "t3"):
            wrapped[field] = (wrapped[field] + shift) % DAY_NS
        counting = records.copy()
        counting["t2"] += shift
        counting["t3"] += shift

        assert Analyzer(from_array(counting)).get_results() == Analyzer(from_array(wrapped)).get_results()

    def test_constants(self):
        assert 600 == MEANINGFUL_OBSERVATIONS_DELTA.total_seconds() == Analyzer.MEANINGFUL_OBSERVATIONS_DELTA.seconds
        assert (0.5, 0.7) == (CONGESTION_THRESHOLD, HURST_CONGESTION_THRESHOLD)
        assert (0.5, 0.7) == (Analyzer.CONGESTION_THRESHOLD, Analyzer.HURST_CONGESTION_THRESHOLD)


class TestAnalyzerErrors:
    def test_a_span_under_ten_minutes_is_the_original_value_error(self, records):
        """K6: the original's ValueError and message; C3: it also carries the reason code."""
        with pytest.raises(ValueError, match="Meaningful observations time delta is lower than expected") as caught:
            Analyzer(from_array(records[:599]))

        assert "span_too_short" == caught.value.reason
        assert isinstance(caught.value, NotAnalysable)

    def test_no_observations_is_a_span_too_short(self):
        with pytest.raises(ValueError, match="lower than expected"):
            Analyzer([])

    def test_a_degenerate_window_is_a_value_error_with_its_reason(self):
        """C3: where the original crashed (here: no probe above the mode), a ValueError with the reason code."""
        constant = window(np.full(1200, 5_000_000), np.full(1200, 5_000_000))

        with pytest.raises(DegenerateWindowError) as caught:
            Analyzer(from_array(constant))

        assert isinstance(caught.value, ValueError)
        assert "no_sample_above_mode" == caught.value.reason


class TestAnalyzerInternals:
    """The values the analysis notebook draws, in the original's shapes."""

    def test_observations(self, records, analyzer):
        assert from_array(records) == analyzer.observations
        assert from_array(records[records["ts"] > records["ts"].max() - 600]) == analyzer.meaningful_observations

    def test_rtt_histogram_is_the_exact_one_over_all_observations(self, records, analyzer):
        h = analyzer.rtt_histogram
        exact = histogram(records["t4"] - records["t1"])
        keys = [h.characterization_function(o) for o in h.data]

        assert [observation_rtt_key_function(o) for o in h.data] == keys
        assert sorted(keys) == keys
        assert exact.k == len(h.bins) == math.isqrt(1200)
        assert [int(c) for c in exact.counts] == [len(b.data) for b in h.bins]
        assert exact.scores.tolist() == h.bins_probabilities
        assert (exact.mode, exact.threshold) == (h.mode, h.threshold)
        for b in h.bins:
            bin_keys = [h.characterization_function(o) for o in b.data]
            assert (min(bin_keys), max(bin_keys)) == (b.min_value, b.max_value)
            assert (b.max_value - b.min_value, b.min_value + b.width // 2) == (b.width, b.mid_value)

    def test_clock_fixer_interpolates_through_the_lowest_rtt_bin(self, records, analyzer):
        fixer = analyzer.clock_fixer
        ts = [o.day_timestamp for o in fixer.observations]

        assert set(analyzer.rtt_histogram.bins[0].data) == set(fixer.observations)
        assert sorted(ts) == ts
        first = fixer.observations[0]
        offset = (
            (first.initial_timestamp - first.reception_timestamp) + (first.final_timestamp - first.sent_timestamp)
        ) / 2
        assert offset == fixer.phi_function(ts[0] - 100)
        assert float is type(fixer.phi_function(ts[0]))
        assert analyse(records).diagnostics.offset(records["ts"]).tolist() == fixer.phi_function(records["ts"]).tolist()

    def test_usage_histograms_are_over_the_meaningful_observations(self, analyzer):
        usage = analyzer.usage_calculator
        up = usage.upstream_histogram
        phi = analyzer.clock_fixer.phi_function
        results = analyzer.get_results()

        assert set(analyzer.meaningful_observations) == set(up.data) == set(usage.downstream_histogram.data)
        assert [upstream_time_function(o, phi) for o in up.data] == [up.characterization_function(o) for o in up.data]
        down = usage.downstream_histogram
        assert [downstream_time_function(o, phi) for o in down.data] == [
            down.characterization_function(o) for o in down.data
        ]
        over_threshold = sum(up.characterization_function(o) > up.threshold for o in up.data)
        over_mode = sum(up.characterization_function(o) > up.mode for o in up.data)
        assert results["upstream"]["usage"] == over_threshold / over_mode == usage.upstream_usage

    def test_calculators_built_from_observations_agree_with_the_analyzer(self, analyzer):
        window_observations = analyzer.meaningful_observations
        phi = analyzer.clock_fixer.phi_function
        results = analyzer.get_results()
        up, down = results["upstream"], results["downstream"]
        last = window_observations[-512:]

        usage = UsageCalculator(window_observations, phi)
        hurst = HurstCalculator(last, phi)
        quality = QualityCalculator(
            window_observations,
            phi,
            (up["hurst"]["wavelet"] + up["hurst"]["rs"]) / 2,
            (down["hurst"]["wavelet"] + down["hurst"]["rs"]) / 2,
        )

        assert (up["usage"], down["usage"]) == (usage.upstream_usage, usage.downstream_usage)
        assert (up["hurst"], down["hurst"]) == (hurst.upstream, hurst.downstream)
        assert (up["quality"], down["quality"]) == (quality.upstream_quality, quality.downstream_quality)
        assert usage.upstream_histogram.threshold == analyzer.usage_calculator.upstream_histogram.threshold


class TestFixedSizeBinHistogram:
    def test_spec_example_1(self):
        """Analysis spec §5 example 1, values with the identity."""
        h = FixedSizeBinHistogram([30, 10, 11, 11, 12, 14, 15, 19, 20, 31, 45], lambda x: x)

        assert [[10, 11, 11], [12, 14, 15], [19, 20, 30, 31, 45]] == [b.data for b in h.bins]
        assert [10, 13, 32] == [b.mid_value for b in h.bins]
        assert pytest.approx([385 / 3, 385 / 9, 385 / 130]) == h.bins_probabilities
        assert (10, 13.0) == (h.mode, h.threshold)

    def test_spec_example_2(self):
        h = FixedSizeBinHistogram([0, 4, 8, 10, 11, 12, 20, 21, 40], lambda x: x)

        assert (11, 13.0) == (h.mode, h.threshold)
        assert [15.0, 60.0, 6.0] == h.bins_probabilities

    def test_a_zero_width_bin_scores_infinity(self):
        """Where the original divided by zero (C3)."""
        h = FixedSizeBinHistogram([5, 5, 5, 6, 7, 9, 9, 12, 14], lambda x: x)

        assert math.inf == h.bins_probabilities[0]
        assert (5, 7) == (h.mode, h.threshold)

    def test_observations_with_a_key_function(self):
        observations = [Observation(i, b"S", 32, 0, 1, 2, rtt) for i, rtt in enumerate([9, 3, 5, 1, 7])]
        h = FixedSizeBinHistogram(observations, observation_rtt_key_function)

        assert [1, 3, 5, 7, 9] == [observation_rtt_key_function(o) for o in h.data]
        assert isinstance(h.bins[0], Bin)

    def test_fewer_than_four_items_is_a_value_error(self):
        with pytest.raises(ValueError) as caught:
            FixedSizeBinHistogram([1, 2, 3], lambda x: x)

        assert "too_few_bins" == caught.value.reason

    def test_only_the_analysis_alpha(self):
        with pytest.raises(ValueError, match="alpha"):
            FixedSizeBinHistogram([1, 2, 3, 4], lambda x: x, alpha=0.3)


class TestClockFixer:
    def test_spec_example(self):
        """Analysis spec §6: φ(95)=1000, φ(105)=1500, φ(110)=2200 (last member of the second), φ(120)=2000."""
        members = [(130, 1800), (100, 1000), (110, 2000), (110, 2200)]
        fixer = ClockFixer([Observation(ts, b"S", 32, 0, -phi, -phi, 0) for ts, phi in members], tau=None)

        assert [100, 110, 110, 130] == [o.day_timestamp for o in fixer.observations]
        assert [1000, 1500, 2200, 2000, 1800, 1800] == [fixer.phi_function(x) for x in (95, 105, 110, 120, 130, 140)]

    def test_needs_an_observation(self):
        with pytest.raises(ValueError):
            ClockFixer([], None)


def test_divide_observations_into_minutes(records):
    minutes = divide_observations_into_minutes(from_array(records[:150]))

    assert [0, 60, 120] == [minute - min(minutes) for minute in minutes]
    assert 150 == sum(len(group) for group in minutes.values())
    assert all(o.day_timestamp // 60 * 60 == minute for minute, group in minutes.items() for o in group)


@pytest.mark.parametrize("experiment", CALIBRATION_EXPERIMENTS)
def test_analyzer_matches_the_parity_references(shared_data, experiment):
    """Every calibration batch the original analysed without a midnight wrap: its numbers, within the parity rule."""
    reference = json.loads((shared_data / "reference" / f"calibration-{experiment}.json").read_text())
    mismatches, compared = {}, 0

    for name, expected in reference.items():
        if expected["error"] is not None or expected["crosses_midnight"]:
            continue
        reports = [Report.load(path) for path in batch_files(shared_data / "calibration" / experiment / name)]
        results = Analyzer({o for report in reports for o in report.observations}).get_results()
        compared += 1
        if found := differences(expected["results"], results):
            mismatches[name] = found

    assert compared > 0
    assert {} == mismatches


def test_general_notebook_loop_on_a_calibration_experiment(shared_data, tmp_path):
    """
    Compat spec §8: per batch, ReportHandler → get_ip_and_processable_observations → Analyzer → get_results.

    On a copy of experiment 1b every batch is analysed with the reference numbers, and the loop only adds
    failed-results/ to each batch.
    """
    experiment = tmp_path / "batch-test-report-1b"
    shutil.copytree(shared_data / "calibration" / "batch-test-report-1b", experiment)
    reference = json.loads((shared_data / "reference" / "calibration-batch-test-report-1b.json").read_text())
    batches = sorted(path for path in experiment.iterdir() if path.is_dir())
    before = {batch.name: sorted(p.name for p in batch.iterdir()) for batch in batches}
    mismatches = {}

    for batch in batches:
        ip, observations = ReportHandler(str(batch)).get_ip_and_processable_observations()
        if ip is None:
            raise ValueError(f"no window in {batch}")
        results = Analyzer(observations).get_results()
        expected = reference[batch.name]
        parity = expected["error"] is None and not expected["crosses_midnight"]
        if parity and (found := differences(expected["results"], results)):
            mismatches[batch.name] = found

    assert 15 == len(batches)
    assert {} == mismatches
    assert {name: sorted([*files, "failed-results"]) for name, files in before.items()} == {
        batch.name: sorted(p.name for p in batch.iterdir()) for batch in batches
    }
