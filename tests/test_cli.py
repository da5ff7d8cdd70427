"""``python -m processor analyze`` and ``process``: what an operator types, run as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from processor.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from processor.observations import observations
from processor.reports.files import write_report
from tests.commands import processor_command as processor
from tests.fake_api import FakeApi


def lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def tree_snapshot(base: Path) -> dict[str, bytes]:
    return {str(path.relative_to(base)): path.read_bytes() for path in sorted(base.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """A simulated tree of three installations of 25 minutes: one complete window each."""
    base = tmp_path_factory.mktemp("reports")
    done = processor("simulate", "--out", str(base), "--installations", "3", "--minutes", "25", "--seed", "11")
    assert EXIT_OK == done.returncode, done.stderr
    return base


@pytest.fixture
def installations(reports) -> list[Path]:
    return sorted(path for path in reports.glob("*/*") if path.is_dir())


class TestAnalyze:
    def test_each_path_gives_one_line_with_the_original_results_shape(self, installations):
        done = processor("analyze", *map(str, installations))

        assert EXIT_OK == done.returncode
        printed = lines(done)
        assert [str(path) for path in installations] == [line["path"] for line in printed]
        for line in printed:
            assert line["ok"]
            assert ["timestamp", "upstream", "downstream"] == list(line["results"])
            assert ["wavelet", "rs"] == list(line["results"]["upstream"]["hurst"])

    def test_one_file_is_analysed_alone(self, tmp_path):
        """A hand-made report of 1200 records, one a second, is a window on its own."""
        seconds = np.arange(1200)
        t1 = 40_000_000_000_000 + seconds * 1_000_000_000
        jitter = np.random.default_rng(2).integers(0, 3_000_000, size=(2, 1200))
        records = observations(1_700_000_000 + seconds, t1, t1 + 9_000_000 + jitter[0], t1 + 9_100_000 + jitter[0],
                               t1 + 20_000_000 + jitter[0] + jitter[1])  # fmt: skip
        path = write_report(tmp_path, records, from_address="203.0.113.9:4501", user_id=1, installation_id=1)

        done = processor("analyze", str(path))

        assert EXIT_OK == done.returncode
        assert 1_700_001_199 == lines(done)[0]["results"]["timestamp"]

    def test_malformed_and_degenerate_inputs_give_a_reason_and_exit_1(self, tmp_path, installations):
        not_json = tmp_path / "broken"
        not_json.mkdir()
        (not_json / "tix-report-1.json").write_text("{half a report")
        empty_dir = tmp_path / "empty"
        empty_dir.mkdir()
        short = tmp_path / "short"
        short.mkdir()
        shutil.copy(sorted(installations[0].glob("*.json"))[0], short)

        done = processor(
            "analyze", str(installations[0]), str(not_json), str(empty_dir), str(short), str(tmp_path / "x")
        )

        assert EXIT_FAILED == done.returncode
        assert [True, False, False, False, False] == [line["ok"] for line in lines(done)]
        assert ["tix-report-1.json: not_json", "no_report_files", "span_too_short", "not_found"] == [
            line["error"] for line in lines(done)[1:]
        ]

    def test_no_path_is_a_usage_error(self):
        assert EXIT_USAGE == processor("analyze").returncode


class TestProcess:
    def test_dry_run_prints_payloads_and_changes_nothing(self, reports):
        before = tree_snapshot(reports)

        done = processor("process", "--reports", str(reports), "--dry-run")

        assert EXIT_OK == done.returncode, done.stderr
        printed = lines(done)
        payloads = [line["payload"] for line in printed if "payload" in line]
        assert 3 == len(payloads)
        assert {
            "installations": 3,
            "windows": {"dry_run": 3},
            "dry_run": True,
            "failed_runs": 0,
            "exit": "ok",
        } == printed[-1]["summary"]
        assert before == tree_snapshot(reports)

    def test_dry_run_payloads_name_the_usage_estimator_right_after_the_version(self, reports):
        """What an operator reads before switching: the payloads say which quantity fills the usage fields."""
        default = processor("process", "--reports", str(reports), "--dry-run")
        queueing = processor("process", "--reports", str(reports), "--dry-run", env={"TIX_USAGE_ESTIMATOR": "queueing"})

        for done, estimator in ((default, "v2"), (queueing, "queueing")):
            assert EXIT_OK == done.returncode, done.stderr
            payload_lines = [line for line in done.stdout.splitlines() if '"payload"' in line]
            assert 3 == len(payload_lines)
            assert all(
                f'"version": "1.0.0", "usageEstimator": "{estimator}", "upUsage": ' in line for line in payload_lines
            )

    def test_without_credentials_it_is_a_dry_run(self, reports):
        before = tree_snapshot(reports)

        done = processor("process", env={"TIX_REPORTS_BASE_PATH": str(reports)})

        assert EXIT_OK == done.returncode
        assert lines(done)[-1]["summary"]["dry_run"]
        assert "no API credentials" in done.stderr
        assert before == tree_snapshot(reports)

    def test_with_credentials_it_posts_each_window_once_and_consumes_it(self, reports, tmp_path):
        tree = tmp_path / "reports"
        shutil.copytree(reports, tree)
        expected = [line["payload"] for line in lines(processor("process", "--reports", str(tree), "--dry-run"))[:-1]]

        with FakeApi(admin_user="admin", admin_password="secret") as api:
            env = {"TIX_API_HOST": "127.0.0.1", "TIX_API_PORT": str(api.port), "TIX_API_USER": "admin",
                   "TIX_API_PASSWORD": "secret", "TIX_REPORTS_BASE_PATH": str(tree)}  # fmt: skip
            done = processor("process", env=env)
            again = processor("process", env=env)
            received = api.records()

        assert EXIT_OK == done.returncode, done.stderr
        assert {"posted": 3} == lines(done)[-1]["summary"]["windows"]
        assert {} == lines(again)[-1]["summary"]["windows"]
        assert 3 == len(received)
        assert {(p["ip"], p["timestamp"]): p for p in expected} == {
            (r["json"]["ip"], r["json"]["timestamp"]): r["json"] for r in received
        }
        assert all(not list((path / "failed-results").iterdir()) for path in tree.glob("*/*"))

    def test_missing_reports_directory_is_a_usage_error(self, tmp_path):
        done = processor("process", "--reports", str(tmp_path / "missing"), "--dry-run")

        assert EXIT_USAGE == done.returncode
        assert "not a directory" in done.stderr

    def test_bad_configuration_stops_with_the_variable_named(self, reports):
        done = processor("process", "--dry-run", env={"TIX_PROCESSING_PERIOD": "ten"})

        assert EXIT_USAGE == done.returncode
        assert "configuration error: TIX_PROCESSING_PERIOD:" in done.stderr
