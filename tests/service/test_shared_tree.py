"""End to end over the real condenser tree of user 23 / installation 41 (shared data, reliability.md F20)."""

from __future__ import annotations

import json
import math

import pytest

from processor.delivery.payload import clamp_usage
from tests.service.harness import (
    HURST_TOL,
    VALUE_TOL,
    assert_accepted,
    copy_tree,
    report,
    results_differences,
    wait_until,
)

pytestmark = pytest.mark.service

#: Windows of the original's recorded service run that are comparable (the fifth crosses midnight and failed).
PARITY_WINDOWS = 4


@pytest.fixture
def tree_23_41(rig, shared_data):
    """A copy of ``reports-tree/23/41`` under the rig's base; ``copy2`` keeps the files' old mtimes."""
    copy_tree(shared_data / "reports-tree", rig.base)
    return rig.base / "23" / "41"


@pytest.fixture
def pipeline_reference(shared_data):
    return json.loads((shared_data / "reference" / "pipeline-23-41.json").read_text(encoding="utf-8"))


def expected_payload_values(results: dict) -> dict[str, float]:
    """The payload numbers of a reference results dict: usage clamped to [0, 1] (D4), the rest as is."""
    up, down = results["upstream"], results["downstream"]
    return {
        "upUsage": clamp_usage(up["usage"]),
        "upQuality": up["quality"],
        "downUsage": clamp_usage(down["usage"]),
        "downQuality": down["quality"],
        "hurstUpRs": up["hurst"]["rs"],
        "hurstUpWavelet": up["hurst"]["wavelet"],
        "hurstDownRs": down["hurst"]["rs"],
        "hurstDownWavelet": down["hurst"]["wavelet"],
    }


def test_first_four_windows_match_the_original_run_and_processing_goes_past_midnight(
    rig, tree_23_41, pipeline_reference
):
    """
    The first four posted windows equal the original's recorded service run (files and values within the parity
    tolerances); the fifth, where the original stopped on midnight, is analysed and posted too (F20).
    """
    reference = pipeline_reference["windows"]
    rig.settings["TIX_USAGE_ESTIMATOR"] = "v2"  # the original's usage fills upUsage/downUsage
    expected = rig.expectations()["23/41"]
    dry = expected.windows
    for index in range(PARITY_WINDOWS):
        assert reference[index]["error"] is None and not reference[index]["crosses_midnight"]
        assert tuple(reference[index]["report_files"]) == dry[index].files
        assert [] == results_differences(dry[index].results, reference[index]["results"])
    assert tuple(reference[PARITY_WINDOWS]["report_files"]) == dry[PARITY_WINDOWS].files
    assert dry[PARITY_WINDOWS].analysable, dry[PARITY_WINDOWS].reason
    assert len(dry) > PARITY_WINDOWS + 1
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    total = len(expected.analysable)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=120, what=lambda: f"{total} posts for 23/41")
    rig.drain()
    result = rig.tally({"23/41": expected})
    report(result, "23/41")
    posted = [record["json"] for record in rig.api.accepted()]

    assert_accepted(result)
    assert total == result.total["posted"]
    assert [w.timestamp for w in expected.analysable] == [payload["timestamp"] for payload in posted]
    for index in range(PARITY_WINDOWS):
        want = reference[index]["results"]
        assert want["timestamp"] == posted[index]["timestamp"]
        assert reference[index]["ip"] == posted[index]["ip"]
        for key, value in expected_payload_values(want).items():
            tolerance = HURST_TOL if key.startswith("hurst") else VALUE_TOL
            assert math.isclose(value, posted[index][key], rel_tol=0, abs_tol=tolerance), key
    assert dry[PARITY_WINDOWS].timestamp == posted[PARITY_WINDOWS]["timestamp"]
    assert 0 == rig.activity().failures
