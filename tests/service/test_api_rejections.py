"""End to end: tix-api refusing one installation's content, or the worker's credentials (reliability.md F10, F7)."""

from __future__ import annotations

import base64

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import (
    API_PASSWORD,
    API_USER,
    assert_accepted,
    failed_result_files,
    log_lines,
    rejected_files,
    report,
    wait_until,
)

pytestmark = pytest.mark.service


def test_content_rejected_for_one_installation_ends_in_rejected_and_leaves_the_others_alone(rig):
    """
    tix-api answers 400 for installation 1/2 only: its windows are backed up, and the re-send of the next run moves
    them to failed-results/rejected/; every other installation is posted as usual.
    """
    simulate_tree(rig.base, installations=3, minutes=40, seed=3109)
    expected = rig.expectations()
    refused = sorted(expected)[1]
    others = sum(len(e.analysable) for key, e in expected.items() if key != refused)
    refused_windows = [w.timestamp for w in expected[refused].analysable]
    rig.api.control.set_behaviour(status=400, installation=refused)
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= others, timeout_s=60, what=lambda: f"{others} posts")
    rig.drain()

    assert refused_windows == [int(p.name[14:-5]) for p in failed_result_files(rig.base / refused)]

    rig.broker.fan_out(rig.base)
    wait_until(lambda: rejected_files(rig.base / refused), timeout_s=60, what="rejected results")
    rig.drain()
    result = rig.tally(expected)
    report(result, f"content rejected for {refused}")
    statuses = [r["status"] for r in rig.api.records() if f"{r['user_id']}/{r['installation_id']}" == refused]

    assert_accepted(result, rejected=len(refused_windows))
    assert others == result.total["posted"]
    assert [f"failed-report-{ts}.json" for ts in refused_windows] == [
        p.name for p in rejected_files(rig.base / refused)
    ]
    assert [400] * (2 * len(refused_windows)) == statuses  # one POST per window, one re-send each; no retry


def test_rejected_credentials_keep_results_until_the_right_ones_come_and_never_reach_a_log(rig):
    """
    A worker with a wrong password gets 401: one ERROR per run, results backed up. A worker restarted with the
    right password re-sends them all once. Neither password, nor its Basic header, appears in any worker log.
    """
    simulate_tree(rig.base, installations=2, minutes=40, seed=3110)
    expected = rig.expectations()
    total = sum(len(e.analysable) for e in expected.values())
    wrong = "Wr0ng-Pa55-c41d"
    worker = rig.start_worker("wrong", TIX_API_PASSWORD=wrong)

    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: sum(len(failed_result_files(rig.base / key)) for key in expected) >= total,
        timeout_s=60,
        what=lambda: f"{total} backed-up results",
    )
    rig.drain()
    worker.stop()
    errors = log_lines([worker], "tix-api rejected the credentials")

    assert [] == rig.api.accepted()
    assert len(expected) == len(errors)
    assert all("ERROR/" in line for line in errors)

    rig.start_worker("right")
    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=60, what=lambda: f"{total} re-sent results")
    rig.drain()
    result = rig.tally(expected)
    report(result, "credentials rejected, then accepted")
    logs = "".join(w.log() for w in rig.workers)
    secrets = [wrong, API_PASSWORD]
    secrets += [base64.b64encode(f"{API_USER}:{password}".encode()).decode() for password in (wrong, API_PASSWORD)]

    assert_accepted(result)
    assert total == result.total["posted"]
    assert [] == [secret for secret in secrets if secret in logs]
