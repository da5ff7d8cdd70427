"""
Hostile bookkeeping entries, through real one-shot cycles (reliability spec §6: H1, H2, H5; windows spec §8-§9).

Whoever may write into an installation directory can replace ``failed-results/``, ``failed-results/rejected/``,
``invalid-reports/``, ``.tix-processor-state`` or ``.tix-processor.lock`` by a symbolic link, a FIFO or a huge
file. The processor must never follow such an entry, never hang on it and never read it whole: it renames it
aside as ``.<name>.unsafe-<ts>``, logs an ERROR, and goes on with a fresh entry.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.hostile.rig import age, failed_result

#: Result timestamp of the failed results planted by the tests, Unix seconds.
PLANTED_TIMESTAMP = 1_600_000_000


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: tix-api is down (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_aside(directory: Path, name: str) -> list[str]:
    """Entries of ``directory`` that are ``name`` renamed aside as unsafe (``.<name>.unsafe-<ts>``)."""
    pattern = re.compile(rf"\.+{re.escape(name.lstrip('.'))}\.unsafe-[0-9]+\Z")
    return [entry for entry in os.listdir(directory) if pattern.match(entry)]


def unsafe_errors(cycle) -> list:
    return [line for line in cycle.log() if line.level == "ERROR" and "unsafe" in line.event]


def posted_timestamps(api) -> list[int]:
    return [record["json"]["timestamp"] for record in api.accepted()]


class TestLinkedDirectories:
    def test_failed_results_linking_outside_is_set_aside_and_nothing_there_is_posted(self, rig, api):
        """The result planted behind the link was POSTed and then deleted; now it is never touched."""
        (rig.outside / "results" / f"failed-report-{PLANTED_TIMESTAMP}.json").write_text(
            failed_result(PLANTED_TIMESTAMP)
        )
        rig.remember_outside()
        directory = rig.installation("1")
        (directory / "failed-results").symlink_to(rig.outside / "results")

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert PLANTED_TIMESTAMP not in posted_timestamps(api)
        assert 3 == len(api.accepted())
        assert 1 == len(set_aside(directory, "failed-results"))
        assert (directory / "failed-results").is_dir() and not (directory / "failed-results").is_symlink()
        assert 1 == len(unsafe_errors(cycle))
        rig.assert_outside_untouched()

    def test_results_of_an_outage_go_to_a_fresh_failed_results_inside_the_installation(self, rig):
        directory = rig.installation("1")
        (directory / "failed-results").symlink_to(rig.outside / "results")

        cycle = rig.process(closed_port())

        assert 1 == len(list((directory / "failed-results").glob("failed-report-*.json"))), cycle.stderr
        assert 1 == len(set_aside(directory, "failed-results"))
        rig.assert_outside_untouched()

    def test_rejected_linking_outside_is_set_aside_before_a_result_moves_there(self, rig, api):
        directory = rig.installation("1")
        (directory / "failed-results").mkdir(mode=0o750)
        (directory / "failed-results" / f"failed-report-{PLANTED_TIMESTAMP}.json").write_text("{not json")
        (directory / "failed-results" / "rejected").symlink_to(rig.outside / "results")

        cycle = rig.process(api.port)

        rejected = directory / "failed-results" / "rejected"
        assert [f"failed-report-{PLANTED_TIMESTAMP}.json"] == os.listdir(rejected), cycle.stderr
        assert not rejected.is_symlink()
        assert 1 == len(unsafe_errors(cycle))
        rig.assert_outside_untouched()

    def test_invalid_reports_linking_outside_is_set_aside_before_a_report_moves_there(self, rig, api):
        directory = rig.installation("1")
        (directory / "invalid-reports").symlink_to(rig.outside / "results")
        bad = age(rig.plant("1", 2, b"{not json"))

        cycle = rig.process(api.port)

        assert [bad.name] == rig.invalid("1"), cycle.stderr
        assert not (directory / "invalid-reports").is_symlink()
        assert 1 == len(set_aside(directory, "invalid-reports"))
        assert 3 == len(api.accepted())
        rig.assert_outside_untouched()

    def test_failed_results_that_is_a_fifo_is_set_aside(self, rig, api):
        directory = rig.installation("1")
        os.mkfifo(directory / "failed-results")

        cycle = rig.process(api.port, timeout_s=60)

        assert (directory / "failed-results").is_dir(), cycle.stderr
        assert 1 == len(set_aside(directory, "failed-results"))
        assert 3 == len(api.accepted())


class TestStateAndLockFiles:
    @pytest.mark.parametrize("name", [".tix-processor-state", ".tix-processor.lock"])
    def test_a_fifo_never_holds_the_cycle(self, rig, api, name):
        """A FIFO hung the run for ever: the one-shot cycle never ended."""
        directory = rig.installation("1")
        os.mkfifo(directory / name)

        cycle = rig.process(api.port, timeout_s=60)

        assert 0 == cycle.returncode, cycle.stderr
        assert 1 == len(set_aside(directory, name))
        assert 3 == len(api.accepted())
        assert 1 == len(unsafe_errors(cycle))

    def test_a_state_file_linking_to_a_5_gib_file_outside_is_not_followed(self, rig, api):
        """It ended in MemoryError, and the one-shot cycle abandoned every later installation."""
        huge = rig.outside / "huge"
        subprocess.run(["truncate", "-s", "5G", str(huge)], check=True)
        rig.remember_outside()
        directory = rig.installation("1")
        (directory / ".tix-processor-state").symlink_to(huge)

        cycle = rig.process(api.port, timeout_s=60)

        assert 0 == cycle.returncode, cycle.stderr
        assert 1 == len(set_aside(directory, ".tix-processor-state"))
        assert 3 == len(api.accepted())
        assert cycle.max_rss_kib < 512 * 1024
        rig.assert_outside_untouched()

    def test_a_sparse_5_gib_state_file_is_corrupt_and_read_no_further_than_64_kib(self, rig, api):
        """H2: set aside as ``.tix-processor-state.corrupt-<ts>``, like any unreadable state file."""
        directory = rig.installation("1")
        subprocess.run(["truncate", "-s", "5G", str(directory / ".tix-processor-state")], check=True)

        cycle = rig.process(api.port, timeout_s=60)

        assert 0 == cycle.returncode, cycle.stderr
        assert 1 == len([name for name in os.listdir(directory) if name.startswith(".tix-processor-state.corrupt-")])
        assert 3 == len(api.accepted())
        assert cycle.max_rss_kib < 512 * 1024

    def test_an_old_lock_file_above_64_kib_is_corrupt_and_taken_over(self, rig, api):
        """H2: unreadable content; its expiry is its mtime plus the lease (windows spec §8), long past here."""
        lock = rig.installation("1") / ".tix-processor.lock"
        lock.write_bytes(json.dumps({"host": "elsewhere", "pid": 1, "pad": "x" * 100_000}).encode())
        age(lock)

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert ["1/1", "2/2", "3/3"] == sorted(f"{r['user_id']}/{r['installation_id']}" for r in api.accepted())

    def test_a_lock_expiring_in_ten_years_is_invalid_and_taken_over_with_a_warning(self, rig, api):
        """H5: no lease is longer than 600 s; such a lock kept its installation busy for years."""
        now_s = time.time()
        lock = rig.installation("1") / ".tix-processor.lock"
        holder = {"host": "elsewhere", "pid": 4242, "token": "ab" * 16, "acquired_at": now_s,
                  "expires_at": now_s + 10 * 365 * 86_400}  # fmt: skip
        lock.write_text(json.dumps(holder))

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert 3 == len(api.accepted())
        taken = [line for line in cycle.log() if line.level == "WARNING" and "lock" in line.event]
        assert 1 == len(taken), cycle.stderr
        assert "elsewhere" in json.dumps(taken[0].fields)

    def test_a_lock_within_the_largest_lease_still_holds(self, rig, api):
        """The other side of H5: 600 s + 30 s ahead is a live holder on another host: busy."""
        now_s = time.time()
        lock = rig.installation("1") / ".tix-processor.lock"
        holder = {"host": "elsewhere", "pid": 4242, "token": "ab" * 16, "acquired_at": now_s,
                  "expires_at": now_s + 600}  # fmt: skip
        lock.write_text(json.dumps(holder))

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert ["2/2", "3/3"] == sorted(f"{r['user_id']}/{r['installation_id']}" for r in api.accepted())

    def test_an_unreadable_lock_dated_a_year_ahead_is_not_young(self, rig, api):
        """H5: its expiry would be its mtime plus the lease; a future mtime is no trustworthy age."""
        lock = rig.installation("1") / ".tix-processor.lock"
        lock.write_bytes(b"")
        age(lock, time.time() + 365 * 86_400)

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert 3 == len(api.accepted())


def test_a_crash_leftover_dated_a_year_ahead_is_removed_as_old(rig, api):
    """H5: a future mtime does not keep a ``.tix-tmp-*`` file young for a year."""
    leftover = rig.installation("1") / ".tix-tmp-state-planted"
    leftover.write_bytes(b"x")
    age(leftover, time.time() + 365 * 86_400)

    cycle = rig.process(api.port)

    assert not leftover.exists(), cycle.stderr


class TestFailedResultFiles:
    """Entries inside ``failed-results/`` that are not regular files, or too large to read (H1, H2)."""

    def test_a_linked_or_fifo_failed_result_is_neither_posted_nor_removed(self, rig, api):
        target = rig.outside / "results" / f"failed-report-{PLANTED_TIMESTAMP}.json"
        target.write_text(failed_result(PLANTED_TIMESTAMP))
        rig.remember_outside()
        results = rig.installation("1") / "failed-results"
        results.mkdir(mode=0o750)
        (results / f"failed-report-{PLANTED_TIMESTAMP}.json").symlink_to(target)
        os.mkfifo(results / f"failed-report-{PLANTED_TIMESTAMP + 1}.json")

        cycle = rig.process(api.port, timeout_s=60)

        assert 0 == cycle.returncode, cycle.stderr
        assert PLANTED_TIMESTAMP not in posted_timestamps(api)
        assert 3 == len(api.accepted())
        rig.assert_outside_untouched()

    def test_a_sparse_5_gib_failed_result_is_rejected_without_being_read(self, rig, api):
        results = rig.installation("1") / "failed-results"
        results.mkdir(mode=0o750)
        subprocess.run(["truncate", "-s", "5G", str(results / f"failed-report-{PLANTED_TIMESTAMP}.json")], check=True)

        cycle = rig.process(api.port, timeout_s=60)

        assert [f"failed-report-{PLANTED_TIMESTAMP}.json"] == os.listdir(results / "rejected"), cycle.stderr
        assert 3 == len(api.accepted())
        assert cycle.max_rss_kib < 512 * 1024
