"""Tests of processor.installation.state: the state file of windows spec §9.1."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from processor.installation.state import (
    STATE_NAME,
    Attempt,
    Counters,
    LastDelivery,
    LastWindow,
    State,
    StateFormatError,
    load_state,
    read_state,
    write_state,
)


def last_window(**changes) -> LastWindow:
    fields = {
        "id": "ab" * 32,
        "files": ("f01", "f02", "f03"),
        "dispose": ("f01",),
        "disposal": "delete",
        "outcome": "posted",
        "reason": None,
        "timestamp": 1_700_001_139,
        "finished_at": "2023-11-14T22:32:19+00:00",
    }
    fields.update(changes)
    return LastWindow(**fields)


class TestReadState:
    def test_a_missing_file_is_a_fresh_state(self, tmp_path):
        assert State() == read_state(tmp_path)

    def test_reads_back_what_was_written(self, tmp_path):
        state = State(
            last_window=last_window(),
            attempt=Attempt("cd" * 32, 2),
            counters=Counters(posted=3, discarded_gap=10).plus_not_analysable("too_few_bins"),
        )

        write_state(tmp_path, state)

        assert state == read_state(tmp_path)

    def test_the_file_has_mode_0640_and_the_documented_keys(self, tmp_path):
        write_state(tmp_path, State().started("ef" * 32))

        document = json.loads((tmp_path / STATE_NAME).read_text("utf-8"))

        assert 0o640 == stat.S_IMODE((tmp_path / STATE_NAME).stat().st_mode)
        assert ["format", "last_window", "attempt", "counters", "last_delivery"] == list(document)
        assert document["last_delivery"] is None
        assert 1 == document["format"]
        assert {"id": "ef" * 32, "count": 1} == document["attempt"]
        assert {
            "posted": 0,
            "backed_up": 0,
            "resent": 0,
            "rejected": 0,
            "invalid_reports": 0,
            "discarded_gap": 0,
            "discarded_ip_change": 0,
            "not_analysable": {},
        } == document["counters"]

    def test_a_recorded_window_is_written_with_every_key(self, tmp_path):
        write_state(tmp_path, State().recorded(last_window(outcome="not_analysable", reason="x", timestamp=None)))

        document = json.loads((tmp_path / STATE_NAME).read_text("utf-8"))

        assert {
            "id": "ab" * 32,
            "files": ["f01", "f02", "f03"],
            "dispose": ["f01"],
            "disposal": "delete",
            "outcome": "not_analysable",
            "reason": "x",
            "timestamp": None,
            "finished_at": "2023-11-14T22:32:19+00:00",
        } == document["last_window"]

    @pytest.mark.parametrize(
        "content",
        [
            b"",
            b"{not json",
            b"[]",
            b'{"format": 2, "last_window": null, "attempt": null, "counters": {}}',
            b'{"format": 1, "last_window": {"id": 3}, "attempt": null, "counters": {}}',
            b'{"format": 1, "last_window": null, "attempt": {"id": "x", "count": "1"}, "counters": {}}',
            b'{"format": 1, "last_window": null, "attempt": null, "counters": {"posted": true}}',
            b'{"format": 1, "last_window": null, "attempt": null, "counters": {}, "last_delivery": {"timestamp": 1}}',
            b"\xff\xfe",
        ],
        ids=[
            "empty",
            "not-json",
            "array",
            "format-2",
            "bad-window",
            "bad-count",
            "bool-counter",
            "bad-delivery",
            "not-utf8",
        ],
    )
    def test_a_corrupt_file_is_set_aside_and_a_fresh_state_used(self, tmp_path, caplog, content):
        (tmp_path / STATE_NAME).write_bytes(content)

        with caplog.at_level(logging.ERROR):
            state = read_state(tmp_path, now_s=lambda: 1_700_000_000.5)

        assert State() == state
        assert not (tmp_path / STATE_NAME).exists()
        assert content == (tmp_path / f"{STATE_NAME}.corrupt-1700000000").read_bytes()
        assert [("state file corrupt", tmp_path, f"{STATE_NAME}.corrupt-1700000000")] == [
            (r.event, r.fields["directory"], r.fields["set_aside"]) for r in caplog.records
        ]

    def test_two_corrupt_files_in_the_same_second_are_both_kept(self, tmp_path):
        for content in (b"one", b"two"):
            (tmp_path / STATE_NAME).write_bytes(content)
            read_state(tmp_path, now_s=lambda: 1_700_000_000.0)

        assert b"one" == (tmp_path / f"{STATE_NAME}.corrupt-1700000000").read_bytes()
        assert b"two" == (tmp_path / f"{STATE_NAME}.corrupt-1700000000-1").read_bytes()

    def test_the_fence_is_called_before_a_corrupt_file_is_renamed(self, tmp_path):
        (tmp_path / STATE_NAME).write_bytes(b"junk")

        def fence():
            raise RuntimeError("lock lost")

        with pytest.raises(RuntimeError, match="lock lost"):
            read_state(tmp_path, before_effect=fence)

        assert b"junk" == (tmp_path / STATE_NAME).read_bytes()

    def test_missing_counters_read_as_zero(self, tmp_path):
        (tmp_path / STATE_NAME).write_bytes(b'{"format": 1, "last_window": null, "attempt": null, "counters": {}}')

        assert Counters() == read_state(tmp_path).counters


class TestLoadState:
    """The read-only reading that ``status`` shares with the run."""

    def test_a_missing_file_is_none(self, tmp_path):
        assert load_state(tmp_path) is None

    def test_reads_back_what_was_written(self, tmp_path):
        state = State(attempt=Attempt("cd" * 32, 2), counters=Counters(posted=3))
        write_state(tmp_path, state)

        assert state == load_state(tmp_path)

    def test_a_corrupt_file_raises_and_stays_in_place(self, tmp_path):
        (tmp_path / STATE_NAME).write_bytes(b'{"format": 2}')

        with pytest.raises(StateFormatError):
            load_state(tmp_path)

        assert [STATE_NAME] == [path.name for path in tmp_path.iterdir()]

    def test_a_link_in_place_of_the_state_file_is_not_followed(self, tmp_path):
        target = tmp_path / "elsewhere"
        write_state(target.parent, State())
        (tmp_path / STATE_NAME).rename(target)
        (tmp_path / STATE_NAME).symlink_to(target)

        with pytest.raises(OSError):
            load_state(tmp_path)


class TestTransitions:
    def test_starting_a_new_window_counts_one(self):
        assert Attempt("a", 1) == State().started("a").attempt

    def test_starting_the_same_window_again_counts_up(self):
        assert Attempt("a", 3) == State().started("a").started("a").started("a").attempt

    def test_starting_another_window_resets_the_count(self):
        assert Attempt("b", 1) == State().started("a").started("a").started("b").attempt

    def test_attempts_of_an_unknown_window_are_zero(self):
        assert 0 == State().started("a").attempts("b")

    def test_recording_clears_the_attempt_and_counts_the_outcome(self):
        state = State().started("ab" * 32).recorded(last_window(outcome="backed_up"))

        assert state.attempt is None
        assert 1 == state.counters.backed_up
        assert "backed_up" == state.last_window.outcome

    def test_not_analysable_windows_are_counted_per_reason(self):
        state = State()
        for reason in ("too_few_bins", "repeated_failure", "too_few_bins"):
            state = state.recorded(last_window(outcome="not_analysable", reason=reason, timestamp=None))

        assert {"repeated_failure": 1, "too_few_bins": 2} == dict(state.counters.not_analysable)

    def test_unknown_counters_are_refused(self):
        with pytest.raises(TypeError, match="unknown counters"):
            State().counted(lost=1)


class TestLastDelivery:
    """The last result tix-api accepted, for ``status``: a posted window or a re-sent failed result."""

    def test_a_posted_window_is_the_last_delivery(self):
        state = State().recorded(last_window())

        assert LastDelivery(1_700_001_139, "2023-11-14T22:32:19+00:00") == state.last_delivery

    @pytest.mark.parametrize("outcome", ["backed_up", "not_analysable"])
    def test_a_window_not_posted_keeps_the_last_delivery(self, outcome):
        before = State().recorded(last_window())

        after = before.recorded(last_window(id="cd" * 32, outcome=outcome, reason=None, timestamp=1_700_002_000))

        assert before.last_delivery == after.last_delivery

    def test_a_re_sent_result_is_a_delivery_at_the_time_tix_api_accepted_it(self, tmp_path):
        state = State().recorded(last_window(outcome="backed_up")).delivered(1_700_000_539, now_s=1_700_003_000.0)
        write_state(tmp_path, state)

        document = json.loads((tmp_path / STATE_NAME).read_text("utf-8"))

        assert {"timestamp": 1_700_000_539, "delivered_at": "2023-11-14T23:03:20+00:00"} == document["last_delivery"]
        assert state == read_state(tmp_path)

    def test_a_file_written_before_last_delivery_existed_reads_as_none(self, tmp_path):
        (tmp_path / STATE_NAME).write_bytes(b'{"format": 1, "last_window": null, "attempt": null, "counters": {}}')

        assert None is read_state(tmp_path).last_delivery
