"""End to end: reports still being written, and a report left empty (reliability.md F12, reports.md §5.2)."""

from __future__ import annotations

import os
import re
import time

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, report, report_names, wait_until

pytestmark = pytest.mark.service

_MOVED = re.compile(r"unusable report moved user=\d+ installation=\d+ name=(\S+) reason=(\w+)")


def test_no_window_uses_a_file_before_it_is_complete_and_a_file_left_empty_is_moved_once_old(rig):
    """
    A half-written report (young, not JSON yet) and, further on, an empty young report each end the window scan:
    nothing is posted or removed. Once the first is complete and the second has been empty for over a minute (its
    mtime is set back: the processor only compares lstat mtimes with now), the windows are exactly the dry run's
    with the empty file moved to invalid-reports/ with reason ``empty``.
    """
    simulate_tree(rig.base, installations=1, minutes=40, seed=3108)
    expected = rig.expectations()  # complete files, no empty one
    (key,) = expected
    directory = rig.base / key
    total = len(expected[key].analysable)
    names = sorted(report_names(directory))
    half_written = directory / names[4]
    complete = half_written.read_bytes()
    half_written.write_bytes(complete[: len(complete) // 2])
    empty = directory / f"tix-report-{int(names[9][len('tix-report-') : -len('.json')]) + 1}.json"
    empty.write_bytes(b"")
    present = report_names(directory)
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    wait_until(lambda: rig.activity().count("process_installation", "succeeded"), timeout_s=60, what="first run")
    rig.drain()

    assert [] == rig.api.records()
    assert present == report_names(directory)

    half_written.write_bytes(complete)
    rig.broker.fan_out(rig.base)
    wait_until(lambda: 2 == rig.activity().count("process_installation", "succeeded"), timeout_s=60, what="run 2")
    rig.drain()

    assert [] == rig.api.records()
    assert present == report_names(directory)

    old = time.time() - 61
    os.utime(empty, (old, old))
    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=60, what=lambda: f"{total} posts")
    rig.drain()
    result = rig.tally(expected)
    report(result, "young files")
    moved = [_MOVED.search(line).groups() for line in log_lines(rig.workers, "unusable report moved")]

    assert_accepted(result, invalid_reports=1)
    assert total == result.total["posted"]
    assert [(empty.name, "empty")] == moved
    assert [empty.name] == sorted(p.name for p in (directory / "invalid-reports").iterdir())
