"""Tests of processor.atomic: crash-safe replacement of a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from processor.atomic import TEMP_PREFIX, atomic_write_bytes, temp_name


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


class FsyncRecorder:
    """Replaces ``os.fsync``: records the path of every descriptor synced, in order, then syncs it."""

    def __init__(self) -> None:
        self.real = os.fsync
        self.done: list[str] = []

    def __call__(self, fd: int) -> None:
        self.real(fd)
        self.done.append(os.readlink(f"/proc/self/fd/{fd}"))


class TestDurability:
    def test_the_file_is_synced_before_the_rename_and_the_directory_after_it(self, tmp_path, monkeypatch):
        target = tmp_path / "state.json"
        target.write_bytes(b"old")
        synced = FsyncRecorder()
        monkeypatch.setattr(os, "fsync", synced)
        syncs_at_rename: list[int] = []
        real_replace = os.replace

        def replace(source, destination):
            syncs_at_rename.append(len(synced.done))
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace)

        atomic_write_bytes(target, b"new", purpose="state")

        [temporary, directory] = synced.done
        assert Path(temporary).name.startswith(TEMP_PREFIX + "state-")
        assert str(tmp_path) == directory
        assert [1] == syncs_at_rename  # after the file's fsync, before the directory's
        assert b"new" == target.read_bytes()
