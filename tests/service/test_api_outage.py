"""End to end: tix-api answering 503, then recovering (reliability.md F5/F6)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import (
    assert_accepted,
    failed_result_files,
    report,
    report_names,
    results_differences,
    wait_until,
)

pytestmark = pytest.mark.service


def test_windows_wait_in_failed_results_while_the_api_is_down_and_are_delivered_once_after(rig):
    """
    With every POST answered 503, each window ends as one failed-results file with the dry run's unclamped results
    and its older half is removed; once the API is back, the next fan-out re-sends them oldest first, exactly once.
    """
    simulate_tree(rig.base, installations=4, minutes=40, seed=3103)
    expected = rig.expectations()
    windows = {key: e.analysable for key, e in expected.items()}
    total = sum(len(w) for w in windows.values())
    rig.api.control.set_behaviour(status=503)
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: sum(len(failed_result_files(rig.base / key)) for key in expected) >= total,
        timeout_s=90,
        what=lambda: f"{total} failed-results files",
    )
    rig.drain()
    outage = rig.tally(expected)
    report(outage, "API down")
    backed_up = {key: failed_result_files(rig.base / key) for key in expected}
    attempts = rig.api.records()

    assert [] == rig.api.accepted()
    assert attempts and all(503 == record["status"] for record in attempts)
    per_installation = Counter(f"{record['user_id']}/{record['installation_id']}" for record in attempts)
    assert set(expected) == set(per_installation)
    assert all(count <= 3 for count in per_installation.values()), per_installation  # S6: one POST, 3 attempts
    assert_accepted(outage, backed_up_allowed=True)
    for key, expectation in expected.items():
        assert [f"failed-report-{w.timestamp}.json" for w in windows[key]] == [p.name for p in backed_up[key]]
        for window, path in zip(windows[key], backed_up[key], strict=True):
            document = json.loads(path.read_text(encoding="utf-8"))
            assert [] == results_differences(document["results"], window.results)
            assert window.payload["ip"] == document["ip"]
        assert expectation.leftovers == report_names(rig.base / key)
        state = json.loads((rig.base / key / ".tix-processor-state").read_text(encoding="utf-8"))
        assert len(windows[key]) == state["counters"]["backed_up"]

    rig.api.control.set_behaviour(None)
    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=90, what=lambda: f"{total} re-sent results")
    rig.drain()
    recovered = rig.tally(expected)
    report(recovered, "API back")

    assert_accepted(recovered)
    assert total == recovered.total["posted"]
    for key in expected:
        sent = [r["json"]["timestamp"] for r in rig.api.accepted() if f"{r['user_id']}/{r['installation_id']}" == key]
        assert [w.timestamp for w in windows[key]] == sent  # oldest first
        assert [] == failed_result_files(rig.base / key)
