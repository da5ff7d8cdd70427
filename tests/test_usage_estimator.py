"""
The queueing-share usage through the commands an operator types (usage-queueing spec, ``TIX_USAGE_ESTIMATOR``).

``python -m processor analyze`` prints ``usage_queueing`` beside the original ``usage``; ``python -m processor
process --dry-run`` goes through :func:`processor.installation.dry_run.dry_run_installation` (the task's selection
and analysis) and prints the payloads with the configured estimator in ``upUsage``/``downUsage``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processor.config import Config
from processor.delivery.ip_to_as import resolver_from_config
from processor.installation.dry_run import dry_run_installation
from tests.commands import processor_command


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """A simulated reports tree: two installations of 25 minutes (windows of old, complete files)."""
    base = tmp_path_factory.mktemp("reports")
    done = processor_command("simulate", "--out", str(base), "--installations", "2", "--minutes", "25", "--seed", "3")
    assert 0 == done.returncode, done.stderr
    return base


def dry_run_payloads(reports: Path, estimator: str | None) -> list[dict]:
    env = {"TIX_REPORTS_BASE_PATH": str(reports)}
    if estimator is not None:
        env["TIX_USAGE_ESTIMATOR"] = estimator
    done = processor_command("process", "--dry-run", env=env)
    assert 0 == done.returncode, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return [line["payload"] for line in lines if "payload" in line]


def test_analyze_prints_the_queueing_share_after_the_original_keys(reports):
    installation = next(path for path in reports.glob("*/*") if path.is_dir())

    done = processor_command("analyze", str(installation))

    line = json.loads(done.stdout)
    assert line["ok"], line
    for direction in ("upstream", "downstream"):
        assert ["usage", "quality", "hurst", "usage_queueing"] == list(line["results"][direction])
        assert 0.0 <= line["results"][direction]["usage_queueing"] <= 1.0


def test_default_estimator_posts_the_original_usage_and_both_shares(reports):
    payloads = dry_run_payloads(reports, None)

    assert payloads
    for payload in payloads:
        assert ["timestamp", "version", "usageEstimator", "upUsage"] == list(payload)[:4]
        assert "v2" == payload["usageEstimator"]
        assert ["asOwner", "upUsageQueueing", "downUsageQueueing"] == list(payload)[-3:]
        assert all(0.0 <= payload[key] <= 1.0 for key in ("upUsageQueueing", "downUsageQueueing"))
    assert payloads == dry_run_payloads(reports, "v2")


def test_queueing_estimator_fills_the_usage_fields_names_itself_and_changes_nothing_else(reports):
    """The payload says which quantity fills the usage fields: tix-api's history mixes them after a switch."""
    original = dry_run_payloads(reports, "v2")

    queueing = dry_run_payloads(reports, "QUEUEING")

    assert len(original) == len(queueing)
    for before, after in zip(original, queueing, strict=True):
        assert (after["upUsage"], after["downUsage"]) == (after["upUsageQueueing"], after["downUsageQueueing"])
        assert ("v2", "queueing") == (before["usageEstimator"], after["usageEstimator"])
        assert list(before) == list(after)
        assert {k: v for k, v in before.items() if not k.endswith(("Usage", "Estimator"))} == {
            k: v for k, v in after.items() if not k.endswith(("Usage", "Estimator"))
        }


def test_service_passes_the_configured_estimator_to_the_run(reports):
    """The run's own dry run, with a configuration built from a plain dict."""
    config = Config.from_env({"TIX_REPORTS_BASE_PATH": str(reports), "TIX_USAGE_ESTIMATOR": "queueing"})
    user, installation = next(path for path in reports.glob("*/*") if path.is_dir()).parts[-2:]

    summary = dry_run_installation(config, user, installation, resolver_from_config(config))

    payloads = [window.payload for window in summary.windows if window.payload is not None]
    assert payloads
    assert all(p["downUsage"] == p["downUsageQueueing"] and p["upUsage"] == p["upUsageQueueing"] for p in payloads)
