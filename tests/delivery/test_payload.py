"""Tests of processor.delivery.payload: the JSON object POSTed to tix-api (service.md §5.2)."""

from __future__ import annotations

import json

import pytest

from processor.delivery.payload import build_payload, clamp_usage, encode_json

RESULTS = {
    "timestamp": 1700001139,
    "upstream": {"usage": 1.25, "quality": 0.75, "hurst": {"wavelet": 0.81, "rs": 0.64612805}},
    "downstream": {"usage": -0.125, "quality": 1.0, "hurst": {"wavelet": 0.5, "rs": 0.55}},
}

#: RESULTS as the analysis gives them now: each direction also carries ``usage_queueing`` (usage-queueing spec).
RESULTS_WITH_QUEUEING = {
    "timestamp": 1700001139,
    "upstream": {**RESULTS["upstream"], "usage_queueing": 0.0625},
    "downstream": {**RESULTS["downstream"], "usage_queueing": 0.875},
}


def payload() -> dict:
    return build_payload(RESULTS, ip="203.0.113.45", asn=64500, as_owner="EXAMPLE-NET - Example Networks, AR")


class TestPayload:
    def test_keys_are_in_the_order_of_the_specification(self):
        assert list(payload()) == [
            "timestamp",
            "version",
            "usageEstimator",
            "upUsage",
            "upQuality",
            "downUsage",
            "downQuality",
            "hurstUpRs",
            "hurstUpWavelet",
            "hurstDownRs",
            "hurstDownWavelet",
            "ip",
            "asn",
            "asOwner",
            "upUsageQueueing",
            "downUsageQueueing",
        ]

    def test_values_come_from_the_results_with_usage_clamped(self):
        """D4: usage is clamped to [0, 1] in the payload only."""
        body = payload()

        assert body["timestamp"] == 1700001139
        assert body["version"] == "1.0.0"
        assert body["usageEstimator"] == "v2"
        assert (body["upUsage"], body["downUsage"]) == (1.0, 0.0)
        assert (body["upQuality"], body["downQuality"]) == (0.75, 1.0)
        assert (body["hurstUpRs"], body["hurstUpWavelet"]) == (0.64612805, 0.81)
        assert (body["hurstDownRs"], body["hurstDownWavelet"]) == (0.55, 0.5)
        assert (body["ip"], body["asn"], body["asOwner"]) == (
            "203.0.113.45",
            64500,
            "EXAMPLE-NET - Example Networks, AR",
        )
        assert RESULTS["upstream"]["usage"] == 1.25

    def test_queueing_shares_are_always_carried_after_the_original_keys(self):
        body = build_payload(RESULTS_WITH_QUEUEING, ip="203.0.113.45", asn=None, as_owner=None)

        assert (body["upUsageQueueing"], body["downUsageQueueing"]) == (0.0625, 0.875)
        assert (body["upUsage"], body["downUsage"]) == (1.0, 0.0)  # v2, the default, fills the original fields
        assert b'"asOwner": null, "upUsageQueueing": 0.0625, "downUsageQueueing": 0.875}' in encode_json(body)

    def test_results_without_queueing_shares_post_them_as_null(self):
        """A failed-results file of the original (or of an earlier version) has no ``usage_queueing``."""
        body = payload()

        assert (body["upUsageQueueing"], body["downUsageQueueing"]) == (None, None)

    def test_queueing_estimator_fills_the_usage_fields_with_the_queueing_shares(self):
        v2 = build_payload(RESULTS_WITH_QUEUEING, ip="203.0.113.45", asn=None, as_owner=None, usage_estimator="v2")

        body = build_payload(
            RESULTS_WITH_QUEUEING, ip="203.0.113.45", asn=None, as_owner=None, usage_estimator="queueing"
        )

        assert (body["upUsage"], body["downUsage"]) == (0.0625, 0.875)
        assert (body["upUsageQueueing"], body["downUsageQueueing"]) == (0.0625, 0.875)
        assert (body["usageEstimator"], v2["usageEstimator"]) == ("queueing", "v2")
        assert list(body) == list(v2)
        assert {k: v for k, v in body.items() if k not in ("upUsage", "downUsage", "usageEstimator")} == {
            k: v for k, v in v2.items() if k not in ("upUsage", "downUsage", "usageEstimator")
        }

    def test_the_estimator_is_named_right_after_the_version(self):
        """tix-api stores only the usages: the name tells a history which quantity they are."""
        body = build_payload(
            RESULTS_WITH_QUEUEING, ip="203.0.113.45", asn=None, as_owner=None, usage_estimator="queueing"
        )

        assert encode_json(body).startswith(
            b'{"timestamp": 1700001139, "version": "1.0.0", "usageEstimator": "queueing", '
        )

    def test_queueing_estimator_falls_back_to_the_clamped_original_usage_of_both_when_a_share_is_null(self):
        """The label covers both usage fields, so a window with a null share is posted whole as ``v2``."""
        results = json.loads(json.dumps(RESULTS_WITH_QUEUEING))
        results["downstream"]["usage_queueing"] = None

        body = build_payload(results, ip="203.0.113.45", asn=None, as_owner=None, usage_estimator="queueing")
        old = build_payload(RESULTS, ip="203.0.113.45", asn=None, as_owner=None, usage_estimator="queueing")

        assert (body["upUsage"], body["downUsage"], body["usageEstimator"]) == (1.0, 0.0, "v2")
        assert (body["upUsageQueueing"], body["downUsageQueueing"]) == (0.0625, None)
        assert (old["upUsage"], old["downUsage"], old["usageEstimator"]) == (1.0, 0.0, "v2")

    def test_unknown_usage_estimator_is_a_caller_error(self):
        with pytest.raises(ValueError, match="usage_estimator"):
            build_payload(RESULTS, ip="1.2.3.4", asn=None, as_owner=None, usage_estimator="v3")  # type: ignore[arg-type]

    def test_unknown_as_is_sent_as_null(self):
        body = build_payload(RESULTS, ip="2001:db8::1", asn=None, as_owner=None)

        assert (body["asn"], body["asOwner"]) == (None, None)
        assert b'"asn": null, "asOwner": null' in encode_json(body)

    def test_encoding_uses_standard_separators_and_shortest_float_repr(self):
        text = encode_json({"timestamp": 1, "x": 0.1 + 0.2, "name": "Telefónica"}).decode("utf-8")

        assert text == '{"timestamp": 1, "x": 0.30000000000000004, "name": "Telefónica"}'

    def test_numpy_numbers_are_accepted(self):
        import numpy as np

        results = json.loads(json.dumps(RESULTS))
        results["timestamp"] = np.int64(5)
        results["upstream"]["usage"] = np.float64(0.5)

        body = build_payload(results, ip="1.2.3.4", asn=None, as_owner=None)

        assert encode_json(body).startswith(
            b'{"timestamp": 5, "version": "1.0.0", "usageEstimator": "v2", "upUsage": 0.5,'
        )

    @pytest.mark.parametrize(("usage", "clamped"), [(-0.5, 0.0), (0.0, 0.0), (0.25, 0.25), (1.0, 1.0), (7.0, 1.0)])
    def test_clamp_usage_keeps_zero_one(self, usage, clamped):
        """D4."""
        assert clamped == clamp_usage(usage)
