"""End to end: a lock holder stalled beyond its lease, taken over, then resumed (reliability.md F15, I7)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, report, wait_until

pytestmark = pytest.mark.service

#: Seconds between the messages that keep offering the installation to the other worker.
OFFER_EVERY_S = 4.0


def test_stalled_holder_is_taken_over_after_its_lease_and_does_nothing_once_resumed(rig):
    """
    SIGSTOP the pool process holding the only installation's lock (lease 30 s) in the middle of its run. The
    other worker finds it busy until the lease plus the 30 s skew allowance ran out, takes it over (WARNING) and
    finishes the windows; the resumed process finds its lock lost (ERROR) and posts and removes nothing more.
    The only tolerated duplicate is the window whose POST was in flight when the holder stopped.
    """
    simulate_tree(rig.base, installations=1, minutes=60, seed=3107)
    expected = rig.expectations()
    (key,) = expected
    user_id, installation_id = key.split("/")
    total = len(expected[key].analysable)
    rig.api.control.set_behaviour(delay_s=1.5)
    workers = [rig.start_worker("a", concurrency=1), rig.start_worker("b", concurrency=1)]
    lock_path = rig.base / key / ".tix-processor.lock"

    rig.broker.installation(rig.base, user_id, installation_id)

    def holder_after_first_post():
        if not rig.api.accepted():
            return None
        try:
            pid = json.loads(lock_path.read_text(encoding="utf-8"))["pid"]
        except (FileNotFoundError, ValueError, KeyError):
            return None
        return next(((pid, w) for w in workers if pid in w.children()), None)

    pid, stalled_worker = wait_until(holder_after_first_post, timeout_s=60, interval_s=0.05, what="a holder")
    os.kill(pid, signal.SIGSTOP)
    try:
        offered = 0.0

        def all_posted() -> bool:
            nonlocal offered
            if time.monotonic() - offered >= OFFER_EVERY_S:
                rig.broker.installation(rig.base, user_id, installation_id)
                offered = time.monotonic()
            return len({r["json"]["timestamp"] for r in rig.api.accepted()}) >= total

        wait_until(all_posted, timeout_s=150, interval_s=0.5, what=lambda: f"{total} windows after the takeover")
    finally:
        resumed_at = time.time()
        os.kill(pid, signal.SIGCONT)
    wait_until(
        lambda: log_lines([stalled_worker], "installation run stopped, lock lost"),
        timeout_s=30,
        what="the resumed holder noticing its lost lock",
    )
    rig.drain()
    result = rig.tally(expected)
    report(result, "stalled holder")
    accepted = rig.api.accepted()
    taker = next(w for w in workers if w is not stalled_worker)
    first_post = {}
    for record in accepted:
        first_post.setdefault(record["json"]["timestamp"], record)
    duplicated = [ts for ts in first_post if sum(r["json"]["timestamp"] == ts for r in accepted) > 1]

    assert_accepted(result, duplicates_allowed=1)
    assert total == result.total["posted"]
    # Explained: its first copy was sent by the stalled holder (its keep-alive connection, before the takeover).
    stalled_port = accepted[0]["client_port"]
    assert all(first_post[ts]["client_port"] == stalled_port for ts in duplicated), "duplicate not explained"
    assert [] == [r for r in accepted if r["time"] > resumed_at], "the resumed holder posted again"
    assert log_lines([taker], "installation busy user=")
    assert any(f"holder_pid={pid}" in line for line in log_lines([taker], "lock taken over"))
    assert log_lines([stalled_worker], "lock lost directory=")
    assert 0 == rig.activity().failures
