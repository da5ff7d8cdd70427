"""The original's module names import without Celery, a broker or any environment variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Every name the compat spec lists, by the module the original exported it from.
NAMES = {
    "processor.reports": [
        "Observation", "Report", "ReportHandler", "ReportJSONEncoder", "ReportJSONDecoder", "JSON_REPORT_SCHEMA",
        "serialize_observations", "deserialize_observations", "NotEnoughObservationsError", "nanos_to_micros",
    ],
    "processor.analysis": [
        "Analyzer", "FixedSizeBinHistogram", "Bin", "ClockFixer", "UsageCalculator", "HurstCalculator",
        "QualityCalculator", "observation_rtt_key_function", "upstream_time_function", "downstream_time_function",
        "divide_observations_into_minutes",
    ],
    "processor.hurst": ["rs", "wavelet", "crs", "NBLK", "NLAG", "POWER1", "POWER2", "SHUFFEL", "OVERLAP", "NDIFF",
                        "LAG", "CONNECT_"],
    "processor.api_communication": [
        "TIX_API_SSL", "TIX_API_HOST", "TIX_API_PORT", "TIX_API_USER", "TIX_API_PASS", "TIX_API_URL_TEMPLATE",
        "prepare_results_for_api", "prepare_url", "post_results",
    ],
}  # fmt: skip

METHODS = [
    "fetch_reports", "max_gap_in_reports", "divide_gapped_reports", "delete_reports_files",
    "calculate_observations_quantity", "update_processable_reports", "get_ip_and_processable_observations",
    "collect_observations", "delete_unneeded_reports", "back_up_failed_results", "failed_results_dir_is_empty",
]  # fmt: skip


def run_isolated(code: str) -> str:
    """Run ``code`` in a fresh interpreter with an empty environment; its standard output."""
    done = subprocess.run([sys.executable, "-c", code], env={}, cwd=REPO, capture_output=True, text=True)
    assert 0 == done.returncode, done.stderr[-2000:]
    return done.stdout


FIRST_IMPORTS = [
    "processor.reports",
    "processor.analysis",
    "processor.compat.analysis",
    "processor.compat.reports",
    "processor.hurst",
    "processor.reports.files",
]


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_every_name_imports_without_celery_or_environment_in_any_order(first):
    code = (
        f"import {first}, importlib, sys\n"
        f"for module, names in {NAMES!r}.items():\n"
        "    loaded = importlib.import_module(module)\n"
        "    missing = [name for name in names if not hasattr(loaded, name)]\n"
        "    assert not missing, (module, missing)\n"
        "handler = sys.modules['processor.reports'].ReportHandler\n"
        f"assert all(hasattr(handler, method) for method in {METHODS!r})\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('celery', 'kombu', 'amqp')))"
    )

    assert "[]" == run_isolated(code).strip()


def test_reports_and_analysis_do_not_load_the_delivery_side():
    code = "import processor.reports, processor.analysis, sys; print('processor.delivery' in sys.modules)"

    assert "False" == run_isolated(code).strip()
