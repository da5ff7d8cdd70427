"""Tests of processor.preflight: the run mode's directories and files, and ``config --check`` in one pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processor.config import MISSING_CREDENTIALS_WARNING, Config
from processor.preflight import check, check_environment

REPO = Path(__file__).resolve().parents[1]


class TestCheckEnvironment:
    def test_worker_needs_a_usable_reports_directory(self, tmp_path):
        config = Config.from_env({"PROCESSOR_TYPE": "WORKER", "TIX_REPORTS_BASE_PATH": str(tmp_path / "absent")})

        problems = check_environment(config)

        assert [p.split(":")[0] for p in problems] == ["TIX_REPORTS_BASE_PATH"]

    def test_worker_accepts_an_existing_reports_directory(self, tmp_path):
        config = Config.from_env({"PROCESSOR_TYPE": "WORKER", "TIX_REPORTS_BASE_PATH": str(tmp_path)})

        assert check_environment(config) == []

    def test_beat_does_not_check_the_reports_directory_and_creates_its_schedule_directory(self, tmp_path):
        schedule_dir = tmp_path / "beat" / "schedule.d"
        config = Config.from_env(
            {
                "PROCESSOR_TYPE": "BEAT",
                "TIX_REPORTS_BASE_PATH": str(tmp_path / "absent"),
                "CELERY_BEAT_SCHEDULE_DIR": str(schedule_dir),
            }
        )

        problems = check_environment(config)

        assert problems == []
        assert schedule_dir.is_dir()

    def test_beat_schedule_directory_that_cannot_be_created_is_a_problem(self, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        config = Config.from_env({"PROCESSOR_TYPE": "BEAT", "CELERY_BEAT_SCHEDULE_DIR": str(blocker / "sub")})

        assert [p.split(":")[0] for p in check_environment(config)] == ["CELERY_BEAT_SCHEDULE_DIR"]

    def test_unreadable_pfx2as_and_asnames_files_are_problems_for_a_worker(self, tmp_path):
        config = Config.from_env(
            {
                "PROCESSOR_TYPE": "WORKER",
                "TIX_REPORTS_BASE_PATH": str(tmp_path),
                "TIX_IPTOAS_BACKEND": "pfx2as",
                "TIX_IPTOAS_PFX2AS_FILE": str(tmp_path / "missing.pfx2as"),
                "TIX_IPTOAS_ASNAMES_FILE": str(tmp_path),
            }
        )

        problems = check_environment(config)

        assert [p.split(":")[0] for p in problems] == ["TIX_IPTOAS_PFX2AS_FILE", "TIX_IPTOAS_ASNAMES_FILE"]


def run_check(env: dict[str, str], *options: str, module: str = "processor") -> subprocess.CompletedProcess[str]:
    """``python -m processor config --check`` (or ``python -m processor.config --check``) in a clean environment."""
    command = [sys.executable, "-m", module, *(["config"] if module == "processor" else []), "--check", *options]
    clean = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env}
    return subprocess.run(command, env=clean, capture_output=True, text=True, cwd=REPO, timeout=60)


class TestCheckInOnePass:
    """Issue 15: a bad value no longer hides the file checks and the warnings until it is fixed."""

    def test_bad_value_missing_reports_path_and_warnings_come_together(self, tmp_path):
        env = {"PROCESSOR_TYPE": "WORKER", "TIX_API_PORT": "x", "TIX_REPORTS_BASE_PATH": str(tmp_path / "absent")}

        _, problems, warnings = check({**env, "TIX_API_SSL": "false"})

        assert [p.split(":")[0] for p in problems] == ["TIX_API_PORT", "TIX_REPORTS_BASE_PATH"]
        assert [w.split(":")[0] for w in warnings] == ["TIX_API_SSL", MISSING_CREDENTIALS_WARNING.split(":")[0]]

    def test_unknown_mode_is_checked_as_standalone(self, tmp_path):
        """STANDALONE's checks cover both other modes: the reports tree and the beat's schedule directory."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        env = {
            "PROCESSOR_TYPE": "scheduler",
            "TIX_REPORTS_BASE_PATH": str(tmp_path / "absent"),
            "CELERY_BEAT_SCHEDULE_DIR": str(blocker / "sub"),
        }

        _, problems, _ = check(env)

        names = ["PROCESSOR_TYPE", "TIX_REPORTS_BASE_PATH", "CELERY_BEAT_SCHEDULE_DIR"]
        assert names == [p.split(":")[0] for p in problems]

    def test_valid_environment_has_no_problem(self, tmp_path):
        env = {"PROCESSOR_TYPE": "worker", "TIX_REPORTS_BASE_PATH": str(tmp_path)}

        config, problems, warnings = check({**env, "TIX_API_USER": "admin", "TIX_API_PASSWORD": "secret"})

        assert (config.processor_type, problems, warnings) == ("WORKER", [], [])

    def test_beat_is_not_warned_about_api_credentials(self, tmp_path):
        _, _, warnings = check({"PROCESSOR_TYPE": "BEAT", "CELERY_BEAT_SCHEDULE_DIR": str(tmp_path)})

        assert MISSING_CREDENTIALS_WARNING not in warnings

    def test_reports_path_the_system_refuses_to_look_up_is_a_problem_not_a_crash(self, tmp_path):
        """``Path.is_dir()`` raises on ENAMETOOLONG; the check reports it like any unusable path."""
        config = Config.from_env({"PROCESSOR_TYPE": "WORKER", "TIX_REPORTS_BASE_PATH": str(tmp_path / ("a" * 300))})

        problems = check_environment(config)

        assert 1 == len(problems)
        assert problems[0].startswith("TIX_REPORTS_BASE_PATH: cannot list ")
        assert "File name too long" in problems[0]


class TestCommandLine:
    @pytest.mark.parametrize("module", ["processor", "processor.config"])
    def test_check_prints_every_problem_and_warning_one_line_each_and_exits_2(self, tmp_path, module):
        env = {
            "PROCESSOR_TYPE": "WORKER",
            "TIX_API_PORT": "x",
            "TIX_API_TIMEOUT": "0",
            "TIX_REPORTS_BASE_PATH": str(tmp_path / "absent"),
            "TIX_API_SSL": "off",
        }

        done = run_check(env, module=module)

        assert 2 == done.returncode
        assert "" == done.stdout
        assert done.stderr.splitlines() == [
            "configuration error: TIX_API_PORT: not an integer: 'x'",
            "configuration error: TIX_API_TIMEOUT: must be a number > 0 and <= 120, got 0",
            f"configuration error: TIX_REPORTS_BASE_PATH: not an existing directory: '{tmp_path / 'absent'}'",
            "configuration warning: TIX_API_SSL: 'off' still means HTTPS: any non-empty value enables HTTPS",
            f"configuration warning: {MISSING_CREDENTIALS_WARNING}",
        ]

    def test_check_of_a_valid_worker_prints_warnings_and_exits_0(self, tmp_path):
        env = {"PROCESSOR_TYPE": "worker", "TIX_REPORTS_BASE_PATH": str(tmp_path), "TIX_API_SSL": "false"}

        done = run_check(env, "--print-env")

        assert 0 == done.returncode, done.stderr
        assert f"configuration warning: {MISSING_CREDENTIALS_WARNING}" in done.stderr.splitlines()
        assert any(line.startswith("configuration warning: TIX_API_SSL:") for line in done.stderr.splitlines())
        assert "PROCESSOR_TYPE=WORKER" in done.stdout.splitlines()

    def test_check_runs_as_a_module(self):
        done = run_check({"PROCESSOR_TYPE": "bogus"}, module="processor.config")

        assert done.returncode == 2
        assert "configuration error: PROCESSOR_TYPE: unknown processor type 'bogus'" in done.stderr
        assert "Traceback" not in done.stderr

    def test_unusable_path_ends_in_one_line_per_problem_not_a_traceback(self, tmp_path):
        env = {"PROCESSOR_TYPE": "worker", "TIX_REPORTS_BASE_PATH": str(tmp_path / ("r" * 300))}

        done = run_check(env)

        assert 2 == done.returncode
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines()[0].startswith("configuration error: TIX_REPORTS_BASE_PATH: cannot list ")

    def test_print_env_values_are_quoted_for_eval(self, tmp_path):
        env = {"PROCESSOR_TYPE": "beat", "CELERY_BEAT_SCHEDULE_DIR": str(tmp_path / "with space")}

        done = run_check({**env, "TIX_WORKER_CONCURRENCY": "3"}, "--print-env")

        lines = done.stdout.splitlines()
        assert 0 == done.returncode, done.stderr
        assert f"CELERY_BEAT_SCHEDULE_DIR='{tmp_path / 'with space'}'" in lines
        assert "TIX_WORKER_CONCURRENCY=3" in lines

    def test_config_is_listed_among_the_commands(self):
        done = subprocess.run(
            [sys.executable, "-m", "processor", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
        )

        assert "config" in done.stdout
