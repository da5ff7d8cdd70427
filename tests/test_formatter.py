"""Tests of reports_batch_formatter: batches exactly as the service's windows, a read-only source, the archive."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from processor.reports.files import report_json
from processor_tools.calibration.batches import plan_batches
from reports_batch_formatter.formatter import DEFAULT_OUTPUT_FILENAME, EXIT_FAILED, EXIT_OK, main
from tests.processor_tools.test_calibration import START_S, probes, write_log, write_logs
from tests.shared_data import CALIBRATION_EXPERIMENTS

REPO = Path(__file__).resolve().parents[1]
FORMATTER = REPO / "reports_batch_formatter" / "formatter.py"

EXPERIMENTS = CALIBRATION_EXPERIMENTS


def tree_digest(directory: Path) -> dict[str, tuple[str, str, int]]:
    """Every entry of ``directory`` (recursively, links not followed): kind, content digest or link target, mtime."""
    digest = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            digest[str(path.relative_to(directory))] = ("link", os.readlink(path), info.st_mtime_ns)
        elif path.is_dir():
            digest[str(path.relative_to(directory))] = ("dir", "", info.st_mtime_ns)
        else:
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest[str(path.relative_to(directory))] = ("file", content, info.st_mtime_ns)
    return digest


def archive_layout(archive: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Member names in order, the batch directories with their files, and the top-level files."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    batches: dict[str, list[str]] = {}
    left_over = []
    for member in members:
        if member.isdir():
            batches[member.name] = []
        elif "/" in member.name:
            directory, name = member.name.split("/")
            batches[directory].append(name)
        else:
            left_over.append(member.name)
    return [member.name for member in members], batches, left_over


def run_formatter(source: Path, output: Path, *extra: str) -> int:
    return main([f"--source_directory={source}", f"--output_directory={output}", *extra])


@pytest.fixture
def source(tmp_path) -> Path:
    """40 one-minute client logs of 60 records from START_S (names in epoch milliseconds)."""
    directory = tmp_path / "tix-time-client-logs"
    write_logs(directory, START_S, 40, np.random.default_rng(5))
    return directory


@pytest.fixture
def output(tmp_path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def log_name(minute: int) -> str:
    return f"{(START_S + 60 * minute) * 1000 + 417}-tix-log.json"


class TestBatches:
    def test_windows_of_19_logs_step_by_9_and_are_named_after_their_first_second(self, source, output, capsys):
        """60 records a log: 19 logs make 1140 ≥ 1084; each window then gives up its older 9 (windows.md §5)."""
        status = run_formatter(source, output)

        _, batches, left_over = archive_layout(output / DEFAULT_OUTPUT_FILENAME)
        assert EXIT_OK == status
        assert {str(START_S + 60 * first): [log_name(first + i) for i in range(19)] for first in (0, 9, 18)} == batches
        assert [log_name(minute) for minute in range(27, 40)] == left_over
        assert f"3 batches, 13 files left over: {output / DEFAULT_OUTPUT_FILENAME}" == capsys.readouterr().out.strip()

    def test_windows_follow_name_order_and_batches_are_archived_in_numeric_order(self, tmp_path, output, capsys):
        """
        Logs named in nanoseconds of the day (the 2017 client, tools.md §1.2): a log of 23:35 sorts after those of
        00:16 the next day, so the batch of 00:16 is formed first, yet the archive lists 23:35 first.
        """
        source = tmp_path / "logs"
        source.mkdir()
        rng = np.random.default_rng(6)
        midnight_s = START_S + 57_600  # START_S is 08:00 UTC

        def write_nanos_of_day_log(records):
            name = f"{int(records['ts'][0]) % 86_400 * 10**9}-tix-log.json"
            (source / name).write_bytes(
                report_json(records, from_address="192.0.2.7:4501", user_id=0, installation_id=0, rng=rng)
            )

        late, early = midnight_s - 1500, midnight_s + 1000
        write_nanos_of_day_log(probes(late, 1084, rng))  # 84900000000000-tix-log.json, exactly 1084 records
        for minute in range(19):
            write_nanos_of_day_log(probes(early + 60 * minute, 60, rng))  # 1000000000000-… to 2080000000000-…

        assert EXIT_OK == run_formatter(source, output, "-o", "two.tar.gz")

        names, batches, left_over = archive_layout(output / "two.tar.gz")
        assert [str(late), str(early)] == list(batches)
        assert [str(late), f"{late}/84900000000000-tix-log.json", str(early)] == names[:3]
        assert [f"{early}/{name}" for name in sorted(batches[str(early)])] == names[3:22]
        assert 22 == len(names)  # the 10 newer logs of the first batch fell to the gap rule before the long log
        assert [] == left_over
        assert "dropped by the gap rule: 10 files" in capsys.readouterr().err

    def test_empty_files_directories_and_links_are_skipped(self, source, output, capsys):
        (source / "0000-tix-log.json").write_bytes(b"")
        (source / "nested").mkdir()
        write_log(source / "nested", probes(START_S, 60, np.random.default_rng(1)), np.random.default_rng(1))
        (source / "link-tix-log.json").symlink_to(source / log_name(0))

        assert EXIT_OK == run_formatter(source, output)

        names, batches, _ = archive_layout(output / DEFAULT_OUTPUT_FILENAME)
        assert not any(part in name for name in names for part in ("0000-tix-log", "nested", "link-tix-log"))
        assert 3 == len(batches)
        err = capsys.readouterr().err
        assert "skipped (empty or not a regular file): 0000-tix-log.json" in err
        assert "skipped (empty or not a regular file): nested" in err

    def test_unusable_file_is_set_aside_listed_and_not_archived(self, source, output, capsys):
        (source / f"{(START_S + 150) * 1000}-tix-log.json").write_text("{not json")

        assert EXIT_OK == run_formatter(source, output)

        names, batches, _ = archive_layout(output / DEFAULT_OUTPUT_FILENAME)
        assert not any(f"{(START_S + 150) * 1000}-tix-log.json" in name for name in names)
        assert [str(START_S + 60 * first) for first in (0, 9, 18)] == list(batches)
        assert f"set aside unusable file: {(START_S + 150) * 1000}-tix-log.json: not_json" in capsys.readouterr().err

    def test_logs_before_a_gap_that_cannot_make_a_window_are_dropped(self, tmp_path, output, capsys):
        """5 logs, then 10 minutes of silence, then 19 logs: the first 5 are dropped by the gap rule."""
        source = tmp_path / "logs"
        rng = np.random.default_rng(7)
        write_logs(source, START_S, 5, rng)
        write_logs(source, START_S + 900, 19, rng)

        assert EXIT_OK == run_formatter(source, output)

        _, batches, left_over = archive_layout(output / DEFAULT_OUTPUT_FILENAME)
        assert [str(START_S + 900)] == list(batches)
        assert 10 == len(left_over)
        assert f"dropped by the gap rule: 5 files, {log_name(0)} … {log_name(4)}" in capsys.readouterr().err

    def test_two_windows_starting_in_the_same_second_stop_with_status_1(self, tmp_path, output, capsys):
        """Two logs of exactly 1084 records from the same second: two one-file windows with one name."""
        source = tmp_path / "logs"
        source.mkdir()
        rng = np.random.default_rng(8)
        for suffix in ("a", "b"):
            document = report_json(probes(START_S, 1084, rng), from_address="192.168.1.34:4501", user_id=0,
                                   installation_id=0, rng=rng)  # fmt: skip
            (source / f"{START_S}000-{suffix}-tix-log.json").write_bytes(document)

        status = run_formatter(source, output)

        assert EXIT_FAILED == status
        assert f"batch directory {START_S} already exists" in capsys.readouterr().err
        assert [] == list(output.iterdir())


class TestSourceIsReadOnly:
    def test_source_directory_is_unchanged_byte_for_byte(self, source, output):
        (source / "0000-tix-log.json").write_bytes(b"")
        (source / "broken-tix-log.json").write_text("[]")
        (source / "nested").mkdir()
        (source / "link").symlink_to(source / log_name(3))
        os.utime(source / log_name(0), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        before = tree_digest(source)

        assert EXIT_OK == run_formatter(source, output)

        assert before == tree_digest(source)

    def test_output_directory_inside_the_source_is_refused(self, source, capsys):
        (source / "out").mkdir()
        before = tree_digest(source)

        assert EXIT_FAILED == run_formatter(source, source / "out")

        assert before == tree_digest(source)
        assert "inside the source directory" in capsys.readouterr().err


class TestCommandLine:
    def test_missing_option_is_a_usage_error(self, output):
        with pytest.raises(SystemExit) as caught:
            main([f"--output_directory={output}"])

        assert 2 == caught.value.code

    def test_source_that_is_not_a_directory_fails_with_one_line(self, tmp_path, output, capsys):
        assert EXIT_FAILED == run_formatter(tmp_path / "missing", output)

        assert 1 == len(capsys.readouterr().err.strip().splitlines())

    def test_missing_output_directory_fails(self, source, tmp_path, capsys):
        assert EXIT_FAILED == run_formatter(source, tmp_path / "missing")

        assert "does not exist" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("command", "cwd"),
        [
            ([sys.executable, "formatter.py"], REPO / "reports_batch_formatter"),
            ([sys.executable, "reports_batch_formatter/formatter.py"], REPO),
            ([sys.executable, "-m", "reports_batch_formatter"], REPO),
        ],
        ids=["script-in-its-directory", "script-from-root", "module"],
    )
    def test_runs_in_every_documented_way(self, command, cwd, source, output):
        """Without PYTHONPATH: the script finds the project's processor package itself (tools.md §1.1)."""
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

        done = subprocess.run(
            [*command, f"--source_directory={source}", f"--output_directory={output}"],
            cwd=cwd, env=environment, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

        assert 0 == done.returncode, done.stderr
        assert done.stdout.startswith("3 batches, 13 files left over")
        assert "reading" not in done.stderr  # stderr is a pipe: no progress bar
        assert 3 == len(archive_layout(output / DEFAULT_OUTPUT_FILENAME)[1])


class TestProgressBar:
    def test_bar_is_drawn_when_asked_and_counts_every_file(self, source, capsys):
        """tqdm draws it; ``progress=True`` stands in for a terminal."""
        plan_batches(source, progress=True)

        err = capsys.readouterr().err
        assert "reading: 100%" in err
        assert "40/40" in err

    def test_nothing_is_written_when_stderr_is_not_a_terminal(self, source, output, capsys):
        assert EXIT_OK == run_formatter(source, output)

        assert "%|" not in capsys.readouterr().err


class TestArchiveMode:
    @pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
    def test_archive_gets_the_mode_of_any_new_file(self, source, output, umask, mode):
        """Not 0600: the archive is a result to share, created like any file under the caller's umask."""
        previous = os.umask(umask)
        try:
            assert EXIT_OK == run_formatter(source, output)
        finally:
            os.umask(previous)

        assert mode == stat.S_IMODE((output / DEFAULT_OUTPUT_FILENAME).stat().st_mode)
        assert [DEFAULT_OUTPUT_FILENAME] == os.listdir(output)  # no partial file left beside it


class TestOriginalBatches:
    @pytest.mark.parametrize("experiment", EXPERIMENTS)
    def test_reproduces_the_original_batches_of_a_calibration_experiment(self, experiment, shared_data, tmp_path):
        """
        The experiment's batch directories are the original formatter's output: the union of their files plus the
        top-level left-over logs is its input (up to files it consumed by the gap rule). The formatter must give
        the same batch names with the same files, and leave exactly the original's top-level files over.
        """
        original = shared_data / "calibration" / experiment
        source = tmp_path / "source"
        source.mkdir()
        expected_batches = {}
        for directory in sorted(path for path in original.iterdir() if path.is_dir()):
            expected_batches[directory.name] = sorted(path.name for path in directory.iterdir())
            for path in directory.iterdir():
                shutil.copyfile(path, source / path.name)
        strays = sorted(path.name for path in original.iterdir() if path.is_file() and path.name.endswith(".json"))
        for name in strays:
            shutil.copyfile(original / name, source / name)
        (tmp_path / "out").mkdir()
        before = tree_digest(source)

        assert EXIT_OK == run_formatter(source, tmp_path / "out")

        _, batches, left_over = archive_layout(tmp_path / "out" / DEFAULT_OUTPUT_FILENAME)
        assert expected_batches == batches
        if strays:  # 3b-6b kept the original's left-over files at the top level
            assert strays == left_over
        assert before == tree_digest(source)
