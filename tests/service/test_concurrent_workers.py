"""End to end: two worker processes given the same installations at the same moment (reliability.md F14, F16)."""

from __future__ import annotations

import re

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, report, wait_until

pytestmark = pytest.mark.service

#: Messages of ``process_installation`` published at once for every installation.
COPIES = 4

_DONE = re.compile(r"installation done user=(\d+) installation=(\d+) outcome=(\w+) windows=(\d+)")


def test_two_workers_with_duplicated_messages_and_two_fan_outs_post_nothing_twice(rig):
    """
    Two ``celery worker`` nodes (2 processes each) receive every installation four times in one burst plus two
    fan-outs (as from two beats): every window is posted once, and every extra run ends busy or finds nothing.
    """
    simulate_tree(rig.base, installations=3, minutes=40, seed=3105)
    expected = rig.expectations()
    total = sum(len(e.analysable) for e in expected.values())
    rig.api.control.set_behaviour(delay_s=0.3)
    workers = [rig.start_worker("a"), rig.start_worker("b")]

    for key in expected:
        user_id, installation_id = key.split("/")
        for _ in range(COPIES):
            rig.broker.installation(rig.base, user_id, installation_id)
    rig.broker.fan_out(rig.base)
    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=90, what=lambda: f"{total} posts")
    rig.drain()
    result = rig.tally(expected)
    report(result, "two workers, duplicated triggers")
    runs = [_DONE.search(line).groups() for line in log_lines(workers, "installation done user=")]
    busy = [run for run in runs if run[2] == "busy"]
    idle = [run for run in runs if run[2] == "done" and run[3] == "0"]
    worked = [run for run in runs if run[2] == "done" and run[3] != "0"]

    assert_accepted(result)
    assert total == result.total["posted"]
    assert len(expected) * (COPIES + 2) == len(runs)
    assert len(runs) == len(busy) + len(idle) + len(worked)
    assert busy, "no run found an installation busy although copies ran at the same moment"
    for key in expected:
        user_id, installation_id = key.split("/")
        assert 1 <= sum(1 for run in worked if run[:2] == (user_id, installation_id))
    assert all(log_lines([worker], "succeeded in") for worker in workers), "both nodes took tasks"
    assert len(busy) == len(log_lines(workers, "installation busy user="))
