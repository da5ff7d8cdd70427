"""
End to end: a warm shutdown (SIGTERM to the worker's main process, as ``docker stop`` sends it) during a backlog.

The installation task stops between two windows instead of working through its whole budget: the worker exits
within about one window and one POST, the state file is consistent (windows spec §9), and the next worker goes on
where it stopped, with no window lost or posted twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, read_state_file, report, report_names, wait_until

pytestmark = pytest.mark.service

#: Seconds the stand-in tix-api takes to answer each POST: the backlog then takes minutes.
POST_DELAY_S = 2.0

LOCK_NAME = ".tix-processor.lock"


def test_a_warm_shutdown_stops_the_installation_task_between_windows_and_the_next_worker_goes_on(rig):
    simulate_tree(rig.base, installations=1, minutes=240, seed=1511)
    expected = rig.expectations()
    (key,) = expected
    total = len(expected[key].analysable)
    directory = rig.base / key
    rig.api.control.set_behaviour(delay_s=POST_DELAY_S)
    first = rig.start_worker("first", concurrency=1)

    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= 2, timeout_s=60, interval_s=0.05, what="two windows posted")
    stopping = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    try:
        first.process.wait(3 * POST_DELAY_S + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker still runs {time.monotonic() - stopping:.0f} s after SIGTERM:\n{first.log()[-3000:]}")
    stopped_after_s = time.monotonic() - stopping
    posted_before = len(rig.api.accepted())
    state = read_state_file(directory)
    last = state["last_window"]
    print(f"\nwarm shutdown: exit {stopped_after_s:.1f} s after SIGTERM, {posted_before} of {total} windows posted")

    assert 0 == first.process.returncode
    assert total - posted_before >= 5, "the task would have gone on for minutes"
    assert 1 == len(log_lines([first], "installation run stopped for shutdown"))
    assert 1 == len(log_lines([first], f"installation done user={key.split('/')[0]}"))
    assert 0 == rig.activity().failures
    assert (None, "posted") == (state["attempt"], last["outcome"])
    assert posted_before == state["counters"]["posted"]
    assert last["timestamp"] == max(record["json"]["timestamp"] for record in rig.api.accepted())
    assert set(last["dispose"]).isdisjoint(report_names(directory))  # disposal done before the stop
    assert not (directory / LOCK_NAME).exists()  # released

    rig.api.control.set_behaviour(delay_s=0)
    rig.start_worker("second")
    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: len(rig.api.accepted()) >= total,
        timeout_s=120,
        what=lambda: f"{total} windows posted, {len(rig.api.accepted())} so far",
    )
    rig.drain()
    result = rig.tally(expected)
    report(result, f"warm shutdown after {posted_before} windows")

    assert_accepted(result)
    assert total == result.total["posted"]
    assert total == json.loads((directory / ".tix-processor-state").read_text())["counters"]["posted"]
