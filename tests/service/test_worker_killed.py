"""End to end: a worker child killed with SIGKILL in the middle of an installation (reliability.md F1)."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, report, wait_until

pytestmark = pytest.mark.service

LOCK_NAME = ".tix-processor.lock"


def lock_holder(directory):
    """The pid in an installation's lock file, or None when there is no (complete) lock."""
    try:
        return json.loads((directory / LOCK_NAME).read_text(encoding="utf-8"))["pid"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def windows_posted(rig):
    """Windows the fake tix-api accepted, each (user, installation, result timestamp) counted once."""
    return len({(r["user_id"], r["installation_id"], r["json"]["timestamp"]) for r in rig.api.accepted()})


def test_killed_child_loses_no_window_and_its_task_is_redelivered(rig):
    """
    Kill -9 the pool process holding an installation's lock after its first window was posted, with every POST
    taking a second: the message comes back (task_reject_on_worker_lost), a new process takes the dead holder's
    lock over at once, and every window ends posted — at most one duplicate per kill.
    """
    simulate_tree(rig.base, installations=3, minutes=50, seed=3104)
    expected = rig.expectations()
    total = sum(len(e.analysable) for e in expected.values())
    rig.api.control.set_behaviour(delay_s=1.0)
    worker = rig.start_worker("w1")
    kills: list[tuple[str, int]] = []

    rig.broker.fan_out(rig.base)
    for _ in range(2):

        def victim():
            posted = Counter(f"{r['user_id']}/{r['installation_id']}" for r in rig.api.accepted())
            # Half done: a window posted and another still to come, so the holder is not about to let go.
            half_done = {key for key, count in posted.items() if count < len(expected[key].analysable)}
            for key in sorted(half_done - {k for k, _ in kills}):
                pid = lock_holder(rig.base / key)
                if pid is not None and pid in worker.children():
                    return key, pid
            return None

        key, pid = wait_until(victim, timeout_s=60, interval_s=0.05, what="an installation half done")
        os.kill(pid, signal.SIGKILL)
        kills.append((key, pid))
    wait_until(
        lambda: windows_posted(rig) >= total,
        timeout_s=120,
        what=lambda: f"{total} windows posted after the kills",
    )
    rig.drain()
    result = rig.tally(expected)
    report(result, f"SIGKILL of {kills}")
    activity = rig.activity()

    assert_accepted(result, duplicates_allowed=len(kills))
    assert total == result.total["posted"]
    assert len(kills) == activity.worker_lost
    assert activity.redeliveries >= len(kills)
    taken_over = log_lines(rig.workers, "lock taken over")
    for key, pid in kills:
        assert any(f"/{key}" in line and f"holder_pid={pid}" in line for line in taken_over), (key, pid, taken_over)
    assert worker.process.poll() is None


def test_killed_worker_main_process_loses_no_window_once_a_new_worker_runs(rig):
    """
    Kill -9 the whole worker (its main process) while it runs installations; its pool processes die with it. A
    worker started afterwards gets the unacknowledged messages again, takes the dead holders' locks over at once
    (same host, dead pid) and, with the next period's fan-out, every window ends posted (F2).
    """
    simulate_tree(rig.base, installations=3, minutes=50, seed=3111)
    expected = rig.expectations()
    total = sum(len(e.analysable) for e in expected.values())
    rig.api.control.set_behaviour(delay_s=1.0)
    first = rig.start_worker("first")

    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= 2, timeout_s=60, interval_s=0.05, what="two windows posted")
    children = first.children()
    os.kill(first.pid, signal.SIGKILL)
    first.process.wait(10)
    wait_until(
        lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children),
        timeout_s=30,
        what=f"the orphaned pool processes {children} ending",
    )
    held = {key: lock_holder(rig.base / key) for key in expected}
    held = {key: pid for key, pid in held.items() if pid is not None}
    second = rig.start_worker("second")
    wait_until(rig.idle, timeout_s=60, what="the redelivered messages done")
    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: windows_posted(rig) >= total,
        timeout_s=120,
        what=lambda: f"{total} windows posted after the restart",
    )
    rig.drain()
    result = rig.tally(expected)
    report(result, "worker main process killed")
    taken_over = log_lines([second], "lock taken over")

    assert_accepted(result, duplicates_allowed=len(children))
    assert total == result.total["posted"]
    assert rig.activity().redeliveries >= 1
    for key, pid in held.items():
        assert any(f"/{key} " in line and f"holder_pid={pid}" in line for line in taken_over), (key, pid)
