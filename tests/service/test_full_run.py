"""End to end: a generated tree through the fan-out and a real worker on RabbitMQ to the fake tix-api."""

from __future__ import annotations

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, failed_result_files, report, wait_until

pytestmark = pytest.mark.service


def test_fan_out_posts_every_window_of_the_dry_run_exactly_once(rig):
    """Five installations × 40 minutes: every expected window posted once with the dry run's values."""
    simulate_tree(rig.base, installations=5, minutes=40, seed=3101)
    expected = rig.expectations()
    total = sum(len(e.analysable) for e in expected.values())
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=90, what=lambda: f"{total} posts")
    rig.drain()
    result = rig.tally(expected)
    report(result, "full run")

    assert total == result.total["posted"]
    assert_accepted(result)
    assert all(not failed_result_files(rig.base / key) for key in expected)
    assert 1 == rig.activity().count("process_users_data", "succeeded")
