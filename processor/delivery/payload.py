"""The JSON payload POSTed to tix-api for one window (service.md §5.2), and its encoding."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from processor.config import USAGE_ESTIMATORS, UsageEstimator

#: Value of the payload's ``version`` field [Original].
PAYLOAD_VERSION = "1.0.0"


def clamp_usage(usage: float) -> float:
    """Usage clamped to [0, 1] for the payload (D4); the analysis and failed-results keep the unclamped value."""
    return min(max(float(usage), 0.0), 1.0)


def _queueing_usage(direction: Mapping[str, Any]) -> float | None:
    """A direction's ``usage_queueing`` as a float, or None when null or absent (files of the original)."""
    value = direction.get("usage_queueing")
    return None if value is None else float(value)


def build_payload(
    results: Mapping[str, Any],
    *,
    ip: str,
    asn: int | None,
    as_owner: str | None,
    usage_estimator: UsageEstimator = "v2",
) -> dict[str, Any]:
    """
    The JSON object POSTed to tix-api: §5.2's keys with ``usageEstimator`` after ``version``, then the shares.

    Parameters
    ----------
    results : mapping
        The results dict of analysis.md §7.7 (usage unclamped), with or without ``usage_queueing``: from the
        analysis, or from a failed-results file that :func:`~processor.delivery.failed_results.load_failed_result`
        checked. Not checked again here.
    ip : str
        The client address without port.
    asn, as_owner : int or None, str or None
        The resolved AS (D13), or None.
    usage_estimator : {"v2", "queueing"}
        What fills ``upUsage``/``downUsage`` (``TIX_USAGE_ESTIMATOR``): ``v2`` the original usage clamped to
        [0, 1] (D4); ``queueing`` both directions' ``usage_queueing``, or, when either is null or absent (a
        degenerate window, a failed-results file of the original), the clamped original usage of both.

    Returns
    -------
    dict
        ``timestamp, version, usageEstimator, upUsage, upQuality, downUsage, downQuality, hurstUpRs,
        hurstUpWavelet, hurstDownRs, hurstDownWavelet, ip, asn, asOwner, upUsageQueueing, downUsageQueueing``, as
        plain ints and floats. ``usageEstimator`` names the estimate that fills the usage fields, so that tix-api's
        history can tell the two quantities apart. The queueing shares are always there: in [0, 1], or null when
        unknown (tix-api ignores fields it does not know).

    Raises
    ------
    ValueError
        For an unknown ``usage_estimator`` (a caller bug).
    """
    if usage_estimator not in USAGE_ESTIMATORS:
        raise ValueError(f"`usage_estimator` must be one of {', '.join(USAGE_ESTIMATORS)}, got {usage_estimator!r}")
    up, down = results["upstream"], results["downstream"]
    up_queueing, down_queueing = _queueing_usage(up), _queueing_usage(down)
    up_usage, down_usage = clamp_usage(up["usage"]), clamp_usage(down["usage"])
    if usage_estimator == "queueing" and up_queueing is not None and down_queueing is not None:
        up_usage, down_usage = up_queueing, down_queueing
    else:  # one label for both fields: a null share turns the whole window back to the original estimate
        usage_estimator = "v2"
    return {
        "timestamp": int(results["timestamp"]),
        "version": PAYLOAD_VERSION,
        "usageEstimator": usage_estimator,
        "upUsage": up_usage,
        "upQuality": float(up["quality"]),
        "downUsage": down_usage,
        "downQuality": float(down["quality"]),
        "hurstUpRs": float(up["hurst"]["rs"]),
        "hurstUpWavelet": float(up["hurst"]["wavelet"]),
        "hurstDownRs": float(down["hurst"]["rs"]),
        "hurstDownWavelet": float(down["hurst"]["wavelet"]),
        "ip": ip,
        "asn": None if asn is None else int(asn),
        "asOwner": as_owner,
        "upUsageQueueing": up_queueing,
        "downUsageQueueing": down_queueing,
    }


def encode_json(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with the standard separators ``", "`` and ``": "``; floats as Python's shortest ``repr``."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
