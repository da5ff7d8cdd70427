"""Tests of processor.reports.windows: the window selection of windows spec §3–§7 and its worked example §11."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest

from processor.errors import UnusableReport
from processor.observations import LONG, observations
from processor.reports.files import Report, read_report, report_candidates, write_report
from processor.reports.records import WIRE_DTYPE
from processor.reports.windows import (
    MIN_WINDOW_OBSERVATIONS,
    dispose_count,
    iter_windows,
    load_candidates,
    select_window,
    window_id,
)

#: T₁ of the worked example (windows spec §11).
T1 = 1_700_000_000
IP_A = "203.0.113.45"
IP_B = "198.51.100.7"


def records(first_ts: int, n: int = 60, *, step_s: int = 1, type_byte: int = ord("S")) -> np.ndarray:
    """``n`` records whose ts run from ``first_ts`` by ``step_s``; t1..t4 are plausible nanosecond stamps."""
    ts = first_ts + step_s * np.arange(n, dtype=np.int64)
    t1 = (ts % 86_400) * 1_000_000_000
    return observations(ts, t1, t1 + 5_000_000, t1 + 5_100_000, t1 + 10_000_000, type_byte=type_byte)


def report(name: str, first_ts: int, n: int = 60, *, ip: str = IP_A, step_s: int = 1, data=None) -> Report:
    """A usable report built in memory, as read_report would return it."""
    data = records(first_ts, n, step_s=step_s) if data is None else data
    return Report(
        path=Path(name),
        ip=ip,
        user_id=7,
        installation_id=12,
        observations=data.astype(WIRE_DTYPE),
        mtime_s=float(first_ts + 60),
    )


def example(count: int, *, starts: dict[int, int] | None = None, ips: dict[int, str] | None = None) -> list[Report]:
    """
    Reports f01 … f<count> of the worked example: 60 records each, one every 60 s from T₁.

    ``starts`` maps a file number to the delay of its start after the previous file's start (default 60 s);
    ``ips`` maps a file number to its address (default 203.0.113.45).
    """
    starts = starts or {}
    ips = ips or {}
    result = []
    start = T1
    for k in range(1, count + 1):
        if k > 1:
            start += starts.get(k, 60)
        result.append(report(f"f{k:02d}", start, ip=ips.get(k, IP_A)))
    return result


def names(first: int, last: int) -> tuple[str, ...]:
    return tuple(f"f{k:02d}" for k in range(first, last + 1))


def unusable(name: str, reason: str = "empty", *, mtime_s: float | None = T1) -> UnusableReport:
    return UnusableReport(Path(name), reason, "", mtime_s)


class TestWorkedExample:
    """Windows spec §11 (a)–(f)."""

    def test_a_normal_operation_gives_f01_to_f19_and_disposes_of_f01_to_f09(self):
        selection = select_window(example(25), now_s=math.inf)

        assert names(1, 19) == selection.window.names
        assert 1140 == selection.window.count
        assert names(1, 9) == selection.window.dispose
        assert () == selection.discards
        assert () == selection.invalid
        assert selection.young is None

    def test_a_window_observations_are_distinct_and_chronological(self):
        window = select_window(example(25), now_s=math.inf).window

        merged = window.observations()

        assert 1140 == merged.size
        assert T1 == merged["ts"][0]
        assert 1_700_001_139 == merged["ts"][-1]
        assert np.all(np.diff(merged["ts"]) > 0)
        assert IP_A == window.ip

    def test_a_after_window_1_the_remaining_16_files_make_no_window_until_f28_arrives(self):
        remaining = example(25)[9:]

        first = select_window(remaining, now_s=math.inf)
        second = select_window(example(28)[9:], now_s=math.inf)

        assert first.window is None
        assert () == first.discards
        assert names(10, 28) == second.window.names

    def test_b_a_gap_of_420_s_deletes_f01_to_f10_and_gives_f11_to_f29(self):
        selection = select_window(example(40, starts={11: 420}), now_s=math.inf)

        assert 1 == len(selection.discards)
        assert "gap" == selection.discards[0].reason
        assert names(1, 10) == selection.discards[0].names
        assert names(11, 29) == selection.window.names

    def test_c_an_ip_change_deletes_the_reports_of_the_previous_ip(self):
        reports = example(40, ips={k: IP_B for k in range(13, 41)})

        selection = select_window(reports, now_s=math.inf)

        assert 1 == len(selection.discards)
        assert "ip_change" == selection.discards[0].reason
        assert names(1, 12) == selection.discards[0].names
        assert names(13, 31) == selection.window.names
        assert IP_B == selection.window.ip

    def test_d_exactly_1084_records_skip_the_gap_rule_and_keep_a_400_s_gap(self):
        reports = [*example(18), report("f19", T1 + 17 * 60 + 400, n=4)]

        selection = select_window(reports, now_s=math.inf)

        assert MIN_WINDOW_OBSERVATIONS == selection.window.count
        assert names(1, 19) == selection.window.names
        assert () == selection.discards

    def test_e_a_young_empty_file_ends_the_scan_and_touches_nothing(self):
        now_s = T1 + 10_000.0
        reports = example(25)
        candidates = [*reports[:14], unusable("f15", mtime_s=now_s - 5), *reports[15:]]

        selection = select_window(candidates, now_s=now_s)

        assert selection.window is None
        assert "f15" == selection.young.name
        assert "empty" == selection.young.reason
        assert () == selection.discards
        assert () == selection.invalid
        assert 15 == selection.scanned

    def test_e_the_same_file_60_s_old_is_quarantined_and_skipped(self):
        now_s = T1 + 10_000.0
        reports = example(25)
        candidates = [*reports[:14], unusable("f15", mtime_s=now_s - 60), *reports[15:]]

        selection = select_window(candidates, now_s=now_s)

        assert ("f15",) == tuple(item.name for item in selection.invalid)
        assert "empty" == selection.invalid[0].reason
        assert selection.young is None
        assert names(1, 14) + names(16, 20) == selection.window.names
        assert 1140 == selection.window.count

    def test_e_with_real_files_read_lazily_from_a_directory(self, tmp_path):
        """The same case through write_report, read_report and load_candidates."""
        for k in range(1, 26):
            if k != 15:
                write_report(tmp_path, records(T1 + 60 * (k - 1)), from_address=f"{IP_A}:4501", user_id=7,
                             installation_id=12)  # fmt: skip
        empty = tmp_path / f"tix-report-{T1 + 14 * 60}.json"
        empty.write_bytes(b"")
        os.utime(empty, (T1 + 1000.0, T1 + 1000.0))
        listing = report_candidates(tmp_path)

        def scan(now_s: float):
            return select_window(load_candidates(listing, lambda name: read_report(tmp_path / name)), now_s=now_s)

        young = scan(T1 + 1005.0)
        old = scan(T1 + 1060.0)

        assert young.window is None
        assert empty.name == young.young.name
        assert [empty.name] == [item.name for item in old.invalid]
        assert tuple(listing[:14] + listing[15:20]) == old.window.names

    def test_f_one_huge_report_is_a_window_of_its_own_and_disposes_of_itself(self):
        selection = select_window([report("f01", T1, n=1200)], now_s=math.inf)

        assert ("f01",) == selection.window.names
        assert ("f01",) == selection.window.dispose


class TestGapRule:
    """Edge cases of windows spec §6."""

    def test_a_gap_of_exactly_300_s_is_tolerated(self):
        selection = select_window(example(25, starts={11: 300}), now_s=math.inf)

        assert names(1, 19) == selection.window.names
        assert () == selection.discards

    def test_a_split_falls_at_the_latest_of_two_equal_gaps(self):
        selection = select_window(example(40, starts={5: 400, 10: 400}), now_s=math.inf)

        assert [("gap", names(1, 9))] == [(d.reason, d.names) for d in selection.discards]
        assert names(10, 28) == selection.window.names

    def test_a_gap_inside_the_last_report_keeps_only_that_report(self):
        """span(P[last]) is the largest gap: before = all but the last report, after = [last]."""
        reports = example(18)
        sparse = records(T1 + 18 * 60, n=60, step_s=7)  # span 413 s
        reports.append(report("f19", T1 + 18 * 60, data=sparse))
        reports += [report(f"f{k:02d}", T1 + 60 * (k - 1)) for k in range(20, 40)]

        selection = select_window(reports, now_s=math.inf)

        assert [("gap", names(1, 18))] == [(d.reason, d.names) for d in selection.discards]
        assert names(19, 37) == selection.window.names

    def test_a_gap_inside_an_earlier_report_is_not_examined(self):
        reports = example(25)
        reports[0] = report("f01", T1, data=records(T1, n=60, step_s=7))  # span 413 s, never the last report

        selection = select_window(reports, now_s=math.inf)

        assert names(1, 19) == selection.window.names

    def test_negative_distances_between_first_records_never_count(self):
        """Files whose first records are out of order give negative distances; the maximum starts at 0."""
        reports = [report(f"f{k:02d}", T1 - 60 * k) for k in range(1, 26)]

        selection = select_window(reports, now_s=math.inf)

        assert names(1, 19) == selection.window.names
        assert () == selection.discards

    def test_duplicated_and_long_records_count_towards_1084(self):
        """Q(P) counts every record; the window may hold fewer distinct observations."""
        same = np.concatenate([records(T1, n=60)] * 18 + [records(T1, n=4, type_byte=LONG)])
        selection = select_window([report("f01", T1, data=same)], now_s=math.inf)

        assert 1084 == selection.window.count
        assert 64 == selection.window.observations().size

    def test_too_few_observations_give_no_window_and_touch_nothing(self):
        selection = select_window(example(18), now_s=math.inf)

        assert selection.window is None
        assert () == selection.discards
        assert 18 == selection.scanned

    def test_reports_of_a_new_ip_stay_when_they_cannot_make_a_window(self):
        reports = example(8, ips={6: IP_B, 7: IP_B, 8: IP_B})

        selection = select_window(reports, now_s=math.inf)

        assert selection.window is None
        assert [("ip_change", names(1, 5))] == [(d.reason, d.names) for d in selection.discards]

    def test_an_ip_change_after_a_gap_split_compares_with_the_first_kept_report(self):
        reports = example(40, starts={11: 420}, ips={k: IP_B for k in range(20, 41)})

        selection = select_window(reports, now_s=math.inf)

        assert [("gap", names(1, 10)), ("ip_change", names(11, 19))] == [
            (d.reason, d.names) for d in selection.discards
        ]
        assert names(20, 38) == selection.window.names


class TestUnusableCandidates:
    def test_an_unusable_file_of_unknown_age_counts_as_old(self):
        candidates = [unusable("f00", "not_json", mtime_s=None), *example(20)]

        selection = select_window(candidates, now_s=T1)

        assert [("f00", "not_json")] == [(item.name, item.reason) for item in selection.invalid]
        assert names(1, 19) == selection.window.names

    def test_infinite_now_makes_every_unusable_file_old(self):
        candidates = [*example(3), unusable("f03a", mtime_s=T1 + 10**9), *example(25)[3:]]

        selection = select_window(candidates, now_s=math.inf)

        assert selection.young is None
        assert ["f03a"] == [item.name for item in selection.invalid]

    def test_an_unusable_file_dated_a_year_ahead_is_old_and_quarantined(self):
        """H5: an mtime more than 60 s in the future is no trustworthy age; the file does not hold the scan."""
        now_s = T1 + 10_000.0
        candidates = [*example(3), unusable("f03a", mtime_s=now_s + 365 * 86_400), *example(25)[3:]]

        selection = select_window(candidates, now_s=now_s)

        assert selection.young is None
        assert ["f03a"] == [item.name for item in selection.invalid]
        assert names(1, 19) == selection.window.names

    @pytest.mark.parametrize("ahead_s", [1.0, 59.9, 60.0])
    def test_an_unusable_file_dated_up_to_60_s_ahead_is_young(self, ahead_s):
        """Clocks of machines sharing the volume may differ by 30 s: a small lead still means 'being written'."""
        now_s = T1 + 10_000.0
        candidates = [*example(3), unusable("f03a", mtime_s=now_s + ahead_s), *example(25)[3:]]

        selection = select_window(candidates, now_s=now_s)

        assert "f03a" == selection.young.name
        assert selection.window is None

    def test_unusable_files_after_the_complete_window_are_not_read(self):
        candidates = [*example(19), unusable("f19a")]

        selection = select_window(candidates, now_s=math.inf)

        assert () == selection.invalid
        assert 19 == selection.scanned


class TestLaziness:
    def test_a_directory_of_1000_reports_is_read_only_up_to_the_first_window(self):
        taken: list[str] = []

        def generator():
            for k in range(1000):
                taken.append(f"r{k:04d}")
                yield report(f"r{k:04d}", T1 + 60 * k)

        selection = select_window(generator(), now_s=math.inf)

        assert 19 == len(taken)
        assert 19 == len(selection.window.reports)

    def test_load_candidates_skips_vanished_files_and_yields_unusable_ones(self):
        def load(name: str) -> Report:
            if name == "gone":
                raise FileNotFoundError(name)
            if name == "bad":
                raise UnusableReport(Path(name), "not_json", "", T1)
            return report(name, T1)

        loaded = list(load_candidates(["a", "gone", "bad", "b"], load))

        assert ["a", "bad", "b"] == [getattr(c, "name", None) or c.path.name for c in loaded]
        assert isinstance(loaded[1], UnusableReport)

    def test_an_io_error_while_loading_ends_the_selection(self):
        def load(name: str) -> Report:
            raise OSError(5, "Input/output error", name)

        with pytest.raises(OSError, match="Input/output"):
            select_window(load_candidates(["a"], load), now_s=math.inf)


class TestIdentity:
    def test_window_id_is_the_sha256_of_the_names_joined_by_newlines(self):
        expected = hashlib.sha256(b"tix-report-1.json\ntix-report-2.json").hexdigest()

        assert expected == window_id(["tix-report-1.json", "tix-report-2.json"])

    def test_the_window_id_of_a_selection_uses_its_names_in_order(self):
        window = select_window(example(19), now_s=math.inf).window

        assert window_id(names(1, 19)) == window.id

    @pytest.mark.parametrize(("length", "expected"), [(1, 1), (2, 1), (3, 1), (18, 9), (19, 9), (21, 10)])
    def test_dispose_count_is_half_rounded_down_but_at_least_one(self, length, expected):
        assert expected == dispose_count(length)


class TestIterWindows:
    def test_consumes_overlapping_windows_until_none_is_left(self):
        selections = list(iter_windows(example(40)))

        assert [names(1, 19), names(10, 28), names(19, 37)] == [s.window.names for s in selections[:-1]]
        assert selections[-1].window is None

    def test_drops_discarded_and_invalid_candidates_between_windows(self):
        candidates = [*example(12), unusable("f12a"), *example(60, starts={30: 500})[12:]]

        selections = list(iter_windows(candidates))

        windows = [s.window.names for s in selections if s.window is not None]
        assert names(1, 12) + names(13, 19) == windows[0]
        assert ["f12a"] == [item.name for item in selections[0].invalid]
        assert names(10, 28) == windows[1]
        # The third selection meets the 500 s gap before f30: f19 … f29 go, the window starts at f30.
        assert [("gap", names(19, 29))] == [(d.reason, d.names) for d in selections[2].discards]
        assert names(30, 48) == windows[2]
        assert all(s.window is not None for s in selections[:-1])
        assert selections[-1].window is None

    def test_stops_at_a_young_file_when_given_a_finite_now(self):
        candidates = [*example(25), unusable("f25a", mtime_s=T1 + 100), *example(40)[25:]]

        selections = list(iter_windows(candidates, now_s=T1 + 110))

        assert [names(1, 19)] == [s.window.names for s in selections[:-1]]
        assert "f25a" == selections[-1].young.name

    def test_a_single_huge_report_is_consumed_once(self):
        selections = list(iter_windows([report("f01", T1, n=1200), *example(3)[1:]]))

        assert [("f01",)] == [s.window.names for s in selections[:-1]]
        assert selections[-1].window is None
