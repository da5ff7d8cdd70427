"""Tests of processor.installation.cycle: the fan-out over the reports tree and the one-shot cycle."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest

from processor.config import Config
from processor.installation.cycle import fan_out, process_tree


def events(caplog, event: str) -> list[dict]:
    return [record.fields for record in caplog.records if getattr(record, "event", None) == event]


def config(base, **changes) -> Config:
    return dataclasses.replace(Config.from_env({}), reports_base_path=base, **changes)


@pytest.fixture
def base(tmp_path):
    for user, installation in (("10", "2"), ("9", "30"), ("9", "4")):
        (tmp_path / user / installation).mkdir(parents=True)
    return tmp_path


class TestFanOut:
    def test_publishes_every_installation_in_numeric_order(self, base):
        published = []

        count = fan_out(config(base), str(base), published.append)

        assert 3 == count
        assert [("9", "4"), ("9", "30"), ("10", "2")] == [(i.user_id, i.installation_id) for i in published]

    def test_the_workers_own_base_path_wins_over_the_message(self, base, tmp_path_factory, caplog):
        other = tmp_path_factory.mktemp("other")

        with caplog.at_level(logging.WARNING):
            count = fan_out(config(base), str(other), lambda installation: None)

        assert 3 == count
        [fields] = events(caplog, "fan-out path differs from TIX_REPORTS_BASE_PATH")
        assert (str(other), base) == (fields["given"], fields["used"])

    def test_an_unreadable_base_is_logged_and_publishes_nothing(self, tmp_path, caplog):
        with caplog.at_level(logging.ERROR):
            count = fan_out(config(tmp_path / "missing"), None, lambda installation: None)

        assert 0 == count
        assert [tmp_path / "missing"] == [
            fields["base"] for fields in events(caplog, "cannot list the reports base directory")
        ]


class TestProcessTree:
    def test_a_dry_run_cycle_reports_one_summary_per_installation_and_changes_nothing(self, base):
        before = sorted(os.walk(base))
        summaries = []

        count = process_tree(config(base), dry_run=True, done=summaries.append)

        assert 3 == count
        assert [("9", "4"), ("9", "30"), ("10", "2")] == [(s.user_id, s.installation_id) for s in summaries]
        assert all(("done", True, ()) == (s.outcome, s.dry_run, s.windows) for s in summaries)
        assert before == sorted(os.walk(base))
