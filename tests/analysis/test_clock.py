"""Tests of midnight unwrapping (D2), the reference set C and the offset function φ (analysis spec §6, §9.2)."""

from __future__ import annotations

import numpy as np
import pytest

from processor.analysis.clock import (
    DAY_NS,
    OffsetFunction,
    observation_offsets,
    reference_set,
    unwrap_clocks,
    unwrap_midnight,
)
from processor.analysis.histogram import histogram

HOUR_NS = 3600 * 10**9


def sequential_unwrap(values: list[int]) -> list[int]:
    """The rule of §9.2 written literally: j = ⌊(p − v + DAY/2) / DAY⌋ with p the previous unwrapped value."""
    result = values[:1]
    for v in values[1:]:
        j = (result[-1] - v + DAY_NS // 2) // DAY_NS
        result.append(v + j * DAY_NS)
    return result


class TestUnwrapMidnight:
    def test_a_drop_by_a_day_is_undone(self):
        values = [DAY_NS - 2_000, DAY_NS - 1_000, 500, 1_500]

        assert [DAY_NS - 2_000, DAY_NS - 1_000, DAY_NS + 500, DAY_NS + 1_500] == unwrap_midnight(values).tolist()

    def test_a_value_already_shifted_stays_consistent_with_its_neighbours(self):
        """After a wrap, a late value from before midnight (larger raw value) lands just before its neighbours."""
        values = [DAY_NS - 1_000, 500, DAY_NS - 200, 900]

        assert [DAY_NS - 1_000, DAY_NS + 500, DAY_NS - 200, DAY_NS + 900] == unwrap_midnight(values).tolist()

    def test_steps_below_half_a_day_are_untouched(self):
        values = np.array([5 * HOUR_NS, 16 * HOUR_NS, 4 * HOUR_NS + 1, 15 * HOUR_NS + 59 * 60 * 10**9])

        assert values.tolist() == unwrap_midnight(values).tolist()

    def test_values_above_a_day_need_no_special_case(self):
        """A host west of UTC counts past 24 h before its local date changes (reports spec §3.1)."""
        values = [26 * HOUR_NS, 27 * HOUR_NS - 1, 3 * HOUR_NS, 3 * HOUR_NS + 7]

        assert [26 * HOUR_NS, 27 * HOUR_NS - 1, 27 * HOUR_NS, 27 * HOUR_NS + 7] == unwrap_midnight(values).tolist()

    def test_a_step_of_exactly_half_a_day_backwards_is_kept(self):
        """j = ⌊(p − v + DAY/2) / DAY⌋: a drop of exactly DAY/2 gives j = 1, a rise of DAY/2 gives j = 0."""
        half = DAY_NS // 2

        assert [half, DAY_NS] == unwrap_midnight([half, 0]).tolist()
        assert [0, half] == unwrap_midnight([0, half]).tolist()

    def test_cumulative_form_equals_the_sequential_rule(self):
        """The vectorised cumulative form is exact: compare with the literal loop on wild random sequences."""
        rng = np.random.default_rng(92)
        steps = rng.choice([0, 1, -1, 2], size=5000, p=[0.9, 0.05, 0.03, 0.02]) * DAY_NS
        values = (np.cumsum(rng.integers(-13 * HOUR_NS, 13 * HOUR_NS, 5000)) % (3 * DAY_NS)) - steps

        assert sequential_unwrap(values.tolist()) == unwrap_midnight(values).tolist()

    def test_rejects_floats(self):
        with pytest.raises(TypeError, match="values_ns"):
            unwrap_midnight(np.array([1.0, 2.0]))


class TestUnwrapClocks:
    def test_the_client_sequence_interleaves_t1_and_t4(self):
        """A wrap between t1 and t4 of one observation is undone: the client sequence is t1, t4, t1, t4, …"""
        t1 = np.array([DAY_NS - 30_000_000, DAY_NS - 20_000_000 + 5])
        t4 = np.array([DAY_NS - 29_000_000, 5_000_000])
        t2 = np.array([40 * HOUR_NS, 40 * HOUR_NS + 10_000_000])
        t3 = t2 + 1_000

        u1, u2, u3, u4 = unwrap_clocks(t1, t2, t3, t4)

        assert t1.tolist() == u1.tolist()
        assert [DAY_NS - 29_000_000, DAY_NS + 5_000_000] == u4.tolist()
        assert (t2.tolist(), t3.tolist()) == (u2.tolist(), u3.tolist())

    def test_the_server_sequence_interleaves_t2_and_t3(self):
        t2 = np.array([DAY_NS - 10, 3])
        t3 = np.array([2, 8])
        t1 = np.array([7 * HOUR_NS, 7 * HOUR_NS + 10**9])

        _, u2, u3, _ = unwrap_clocks(t1, t2, t3, t1 + 10)

        assert [DAY_NS - 10, DAY_NS + 3] == u2.tolist()
        assert [DAY_NS + 2, DAY_NS + 8] == u3.tolist()


class TestObservationOffsets:
    def test_example_record_of_the_reports_spec(self):
        """reports spec §3: client 2 s ahead of the server."""
        t = [np.array([v]) for v in (79_999_950_000_000, 79_997_968_000_000, 79_997_968_004_000, 79_999_986_004_000)]

        assert [2_000_000_000.0] == observation_offsets(*t).tolist()

    def test_half_nanoseconds_are_exact(self):
        t1, t2, t3, t4 = (np.array([v]) for v in (10, 0, 0, 1))

        assert [5.5] == observation_offsets(t1, t2, t3, t4).tolist()


class TestReferenceSet:
    def test_bin_0_members_sorted_stably_by_ts(self):
        """C = the m smallest RTTs (ties by input order), then sorted by ts keeping the RTT order for equal ts.

        Bin 0 holds positions 1, 5, 4 (RTT 10, 10, 11); 5 and 4 share ts 110 and stay in RTT order.
        """
        rtt = np.array([50, 10, 12, 90, 11, 10, 70, 60, 80])
        ts = np.array([100, 130, 110, 101, 110, 110, 120, 121, 122])

        members = reference_set(histogram(rtt), ts)

        assert [5, 4, 1] == members.tolist()


class TestOffsetFunction:
    def test_example_of_the_spec(self):
        """C = (100, 1000), (110, 2000), (110, 2200), (130, 1800) (§6 example)."""
        phi = OffsetFunction(ts_s=np.array([100, 110, 110, 130]), offset_ns=np.array([1000.0, 2000.0, 2200.0, 1800.0]))

        assert [1000.0, 1500.0, 2200.0, 2000.0, 1800.0, 1800.0] == phi(np.array([95, 105, 110, 120, 130, 140])).tolist()

    def test_evaluation_order_is_x_times_s_plus_b(self):
        """s = (φ_i − φ_{i+1}) / (ts_i − ts_{i+1}), b = φ_i − ts_i · s, φ(x) = x · s + b, in binary64."""
        ts = np.array([1_376_091_164, 1_376_091_201])
        offsets = np.array([160_522_024_500.0, 160_520_911_000.5])
        phi = OffsetFunction(ts_s=ts, offset_ns=offsets)
        x = 1_376_091_180

        s = (160_522_024_500.0 - 160_520_911_000.5) / (1_376_091_164 - 1_376_091_201)
        b = 160_522_024_500.0 - 1_376_091_164 * s
        assert [x * s + b] == phi(np.array([x])).tolist()

    def test_a_single_member_is_constant(self):
        phi = OffsetFunction(ts_s=np.array([50]), offset_ns=np.array([7.5]))

        assert [7.5, 7.5, 7.5] == phi(np.array([10, 50, 90])).tolist()
