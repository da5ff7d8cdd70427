"""Tests of processor.atomic: crash-safe replacement of a file."""

from __future__ import annotations

import errno
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from processor.atomic import TEMP_PREFIX, DeferredEffects, atomic_write_bytes, temp_name


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestAtomicWriteBytes:
    def test_creates_the_file_with_the_content_and_mode(self, tmp_path):
        target = tmp_path / "state.json"

        atomic_write_bytes(target, b'{"format": 1}', purpose="state")

        assert target.read_bytes() == b'{"format": 1}'
        assert _mode(target) == 0o640

    def test_replaces_an_existing_file_and_leaves_no_temporary_file(self, tmp_path):
        target = tmp_path / "state.json"
        target.write_bytes(b"old content that is longer than the new one")

        atomic_write_bytes(target, b"new", purpose="state")

        assert target.read_bytes() == b"new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]

    def test_mode_is_applied_exactly_whatever_the_umask(self, tmp_path):
        target = tmp_path / "f"
        old = os.umask(0o077)
        try:
            atomic_write_bytes(target, b"x", purpose="p", mode=0o644)
        finally:
            os.umask(old)

        assert _mode(target) == 0o644

    def test_exclusive_write_refuses_a_taken_name_and_cleans_up(self, tmp_path):
        target = tmp_path / "failed-report-1.json"
        target.write_bytes(b"first")

        with pytest.raises(FileExistsError):
            atomic_write_bytes(target, b"second", purpose="failed-result", exclusive=True)

        assert target.read_bytes() == b"first"
        assert [p.name for p in tmp_path.iterdir()] == ["failed-report-1.json"]

    def test_exclusive_write_creates_a_free_name(self, tmp_path):
        target = tmp_path / "failed-report-1.json"

        atomic_write_bytes(target, b"data", purpose="failed-result", exclusive=True)

        assert target.read_bytes() == b"data"
        assert [p.name for p in tmp_path.iterdir()] == ["failed-report-1.json"]

    def test_failure_leaves_the_target_untouched_and_removes_the_temporary_file(self, tmp_path):
        """Renaming over a directory fails; the old target and the directory listing stay as they were."""
        target = tmp_path / "busy"
        target.mkdir()
        (target / "inside").write_bytes(b"keep")

        with pytest.raises(OSError):
            atomic_write_bytes(target, b"data", purpose="state")

        assert [p.name for p in tmp_path.iterdir()] == ["busy"]
        assert (target / "inside").read_bytes() == b"keep"

    def test_missing_directory_raises(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            atomic_write_bytes(tmp_path / "absent" / "f", b"x", purpose="state")


class TestTempName:
    def test_has_the_documented_prefix_and_purpose(self):
        name = temp_name("state")

        assert name.startswith(TEMP_PREFIX + "state-")
        assert len(name) == len(".tix-tmp-state-") + 16

    def test_two_names_differ(self):
        assert temp_name("state") != temp_name("state")

    @pytest.mark.parametrize("purpose", ["", "a/b", "..", "with space"])
    def test_rejects_a_purpose_that_is_not_a_plain_word(self, purpose):
        with pytest.raises(ValueError, match="purpose"):
            temp_name(purpose)


class _SlowFsync:
    """Replaces ``os.fsync``: takes ``delay_s``, and records which descriptors were synced, by which thread."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.real = os.fsync
        self.done: list[tuple[str, str]] = []  # (path of the descriptor, thread name)
        self.in_flight = 0

    def __call__(self, fd: int) -> None:
        self.in_flight += 1
        try:
            time.sleep(self.delay_s)
            self.real(fd)
            self.done.append((os.readlink(f"/proc/self/fd/{fd}"), threading.current_thread().name))
        finally:
            self.in_flight -= 1


class TestDeferredEffects:
    def test_wait_returns_once_the_background_fsync_has_ended(self, tmp_path, monkeypatch):
        slow = _SlowFsync()
        monkeypatch.setattr(os, "fsync", slow)
        deferred = DeferredEffects()

        deferred.fsync_directory(tmp_path)
        deferred.wait()

        assert [(str(tmp_path), "effects_0")] == slow.done
        assert 0 == slow.in_flight

    def test_an_fsync_error_is_raised_by_wait_and_the_descriptor_is_closed(self):
        read_end, write_end = os.pipe()
        os.close(write_end)
        deferred = DeferredEffects()

        deferred.fsync(read_end)  # a pipe cannot be synced: EINVAL
        with pytest.raises(OSError) as raised:
            deferred.wait()

        assert errno.EINVAL == raised.value.errno
        with pytest.raises(OSError):
            os.fstat(read_end)
        deferred.wait()  # reported once

    def test_a_wait_interrupted_by_an_exception_forgets_no_job(self):
        release = threading.Event()
        deferred = DeferredEffects()
        deferred.call(lambda: release.wait(5))
        timer = threading.Timer(0.05, release.set)

        class Interrupted(Exception):
            pass

        def interrupt(signum, frame):
            raise Interrupted

        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            with pytest.raises(Interrupted):
                deferred.wait()  # interrupted like Celery's soft time limit interrupts a task
        finally:
            signal.signal(signal.SIGALRM, previous)
        assert deferred.pending
        timer.start()
        deferred.wait()
        assert release.is_set() and not deferred.pending

    def test_a_job_after_a_failed_one_is_skipped(self):
        read_end, write_end = os.pipe()
        os.close(write_end)
        ran, skipped = [], []
        deferred = DeferredEffects()

        deferred.fsync(read_end)  # fails: EINVAL
        deferred.call(lambda: ran.append("job"), if_skipped=lambda: skipped.append("job"))
        with pytest.raises(OSError):
            deferred.wait()
        deferred.call(lambda: ran.append("later"))
        deferred.wait()

        assert ["later"] == ran  # a job started after the wait runs again
        assert ["job"] == skipped

    def test_jobs_run_one_at_a_time_in_the_order_given(self, tmp_path, monkeypatch):
        slow = _SlowFsync(delay_s=0.02)
        monkeypatch.setattr(os, "fsync", slow)
        order: list[str] = []
        deferred = DeferredEffects()

        deferred.fsync_directory(tmp_path)
        deferred.call(lambda: order.append(f"job after {len(slow.done)} fsync"))
        deferred.wait()

        assert ["job after 1 fsync"] == order

    def test_atomic_write_renames_at_once_and_leaves_the_directory_fsync_to_wait(self, tmp_path, monkeypatch):
        target = tmp_path / "state.json"
        slow = _SlowFsync(delay_s=0.2)
        monkeypatch.setattr(os, "fsync", slow)
        deferred = DeferredEffects()

        atomic_write_bytes(target, b"new", purpose="state", deferred=deferred)

        assert b"new" == target.read_bytes()
        assert [(str(tmp_path), "effects_0")] != slow.done[-1:]  # the directory is still being synced
        deferred.wait()
        assert (str(tmp_path), "effects_0") == slow.done[-1]
        assert "MainThread" == slow.done[0][1]  # the file itself is synced before the rename, in the caller
