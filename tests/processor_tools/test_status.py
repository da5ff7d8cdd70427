"""Tests of processor_tools.status: the read-only status of the reports tree (issue 5, item 3)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from processor.config import Config, reports_base_path
from processor.delivery import Delivery
from processor.delivery.ip_to_as import Resolver
from processor.delivery.tixapi import ApiClient
from processor.errors import InstallationBusy
from processor.installation.lock import LOCK_NAME, Holder, LeaseLock
from processor.installation.run import run_installation
from processor.installation.state import (
    STATE_NAME,
    Attempt,
    Counters,
    LastDelivery,
    LastWindow,
    State,
    write_state,
)
from processor.observations import observations
from processor.reports.files import read_report, report_candidates, write_report
from processor.reports.tree import InstallationDir
from processor.reports.windows import select_window
from processor_tools import status, status_output
from processor_tools.simulate import simulate_tree
from tests.fake_api import FakeApi

#: A fixed "now" for tests that do not depend on file ages (Unix seconds, 2024-01-01 00:00:00 UTC).
NOW_S = 1_704_067_200.0

IP = "203.0.113.45"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A tree of 3 installations of 25 minutes (each makes a window) and its generator summary."""
    base = tmp_path_factory.mktemp("tree25")
    return base, simulate_tree(base, installations=3, minutes=25, seed=11)


def fresh_tree(tmp_path: Path, *, installations: int = 2, minutes: float = 25, seed: int = 5):
    base = tmp_path / "reports"
    return base, simulate_tree(base, installations=installations, minutes=minutes, seed=seed)


def directory_of(summary, index: int = 0) -> InstallationDir:
    detail = summary.detail[index]
    return InstallationDir(detail.user_id, detail.installation_id, detail.directory)


def last_window(**changes) -> LastWindow:
    fields = {
        "id": "ab" * 32,
        "files": ("f01", "f02", "f03"),
        "dispose": ("f01",),
        "disposal": "delete",
        "outcome": "posted",
        "reason": None,
        "timestamp": 1_704_066_000,
        "finished_at": "2024-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return LastWindow(**fields)


def write_lock(directory: Path, **changes) -> None:
    fields = {"host": "other-host", "pid": 4242, "token": "0" * 32, "acquired_at": NOW_S - 30, "expires_at": NOW_S + 90}
    fields.update(changes)
    (directory / LOCK_NAME).write_bytes(Holder(**fields).to_json())


def empty_report(directory: Path, *, age_s: float, now_s: float) -> Path:
    """An empty (so unusable) ``tix-report-1000000000.json`` in ``directory``, modified ``age_s`` before ``now_s``."""
    path = directory / "tix-report-1000000000.json"
    path.write_bytes(b"")
    os.utime(path, (now_s - age_s, now_s - age_s))
    return path


def hand_made_installation(base: Path, *, starts: list[int], user: int = 9, installation: int = 90) -> Path:
    """An installation of 60-record reports whose first records are at ``starts`` (Unix seconds)."""
    directory = base / str(user) / str(installation)
    directory.mkdir(parents=True)
    for first in starts:
        ts = np.arange(first, first + 60)
        t = (ts - first) * 10**9
        write_report(
            directory,
            observations(ts, t, t + 1000, t + 2000, t + 3000),
            from_address=f"{IP}:4501",
            user_id=user,
            installation_id=installation,
        )
    return directory


def run_command(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    status.add_arguments(parser)
    code = status.run(parser.parse_args(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(base: Path) -> dict[str, tuple]:
    """Every entry below ``base`` (dot files included): type, mode, size, mtime in ns, and the bytes of files."""
    entries: dict[str, tuple] = {}
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(root) / name
            info = os.lstat(path)
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            entries[str(path.relative_to(base))] = (info.st_mode, info.st_size, info.st_mtime_ns, content)
    info = os.lstat(base)
    entries["."] = (info.st_mode, info.st_mtime_ns)
    return entries


# --------------------------------------------------------------------------------------------------------------
# A small parser of the Prometheus text format, to read the output back
# --------------------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|\Z)')


def parse_prometheus(text: str) -> dict[str, dict]:
    """Families by name: ``{"help", "type", "samples": {frozenset(labels): value}}``; asserts the format rules."""
    families: dict[str, dict] = {}
    current = None
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"family {name} declared twice"
            families[name] = {"help": help_text, "type": None, "samples": {}, "label_names": None}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and families[name]["type"] is None
            assert kind in ("gauge", "counter")
            families[name]["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label_text, value = match.groups()
            assert name == current and families[name]["type"] is not None, f"sample before HELP/TYPE: {line!r}"
            labels = dict(_LABEL.findall(label_text or ""))
            names = frozenset(labels)
            if families[name]["label_names"] is None:
                families[name]["label_names"] = names
            assert names == families[name]["label_names"], f"inconsistent labels in {name}"
            key = frozenset(labels.items())
            assert key not in families[name]["samples"], f"duplicate sample {line!r}"
            families[name]["samples"][key] = float(value)
    return families


def per_installation(families: dict, name: str) -> dict[tuple[str, str], float]:
    return {
        (dict(key)["user"], dict(key)["installation"]): value
        for key, value in families[f"tix_processor_{name}"]["samples"].items()
    }


# --------------------------------------------------------------------------------------------------------------
# Counts
# --------------------------------------------------------------------------------------------------------------


class TestCounts:
    def test_pending_files_and_observations_are_what_the_generator_wrote(self, generated):
        base, summary = generated

        tree = status.tree_status(base, now_s=time.time())

        assert [(d.user_id, d.installation_id) for d in summary.detail] == [
            (item.user, item.installation) for item in tree.installations
        ]
        assert [len(d.files) for d in summary.detail] == [item.pending_files for item in tree.installations]
        assert [d.observations for d in summary.detail] == [item.pending_observations for item in tree.installations]
        assert summary.files == tree.summary()["pending_report_files"]
        assert summary.observations == tree.summary()["pending_observations"]

    def test_files_of_the_last_window_still_to_dispose_are_left_out_of_the_backlog(self, tmp_path):
        """The next run's recovery removes them first (windows spec §9.2), so they are not pending."""
        _base, summary = fresh_tree(tmp_path, installations=1)
        installation = directory_of(summary)
        names = report_candidates(installation.path)
        left = names[:3]
        write_state(installation.path, State(last_window=last_window(files=tuple(names[:6]), dispose=tuple(left))))
        left_count = sum(read_report(installation.path / name).count for name in left)

        item = status.installation_status(installation, now_s=time.time())

        assert 3 == item.awaiting_disposal
        assert len(names) - 3 == item.pending_files
        assert summary.detail[0].observations - left_count == item.pending_observations

    def test_failed_results_count_re_sendable_names_only_and_rejected_ones_apart(self, tmp_path):
        _base, summary = fresh_tree(tmp_path, installations=1)
        failed = directory_of(summary).path / "failed-results"
        (failed / "rejected").mkdir(parents=True)
        for name in ("failed-report-1700001139.json", "failed-report-1700001139-1.json", "failed-report-17.json"):
            (failed / name).write_text("{}")
        for name in (".tix-tmp-failed-abc", "notes.txt", "failed-report-x.json"):
            (failed / name).write_text("{}")
        (failed / "failed-report-5.json.d").mkdir()
        os.symlink(failed / "failed-report-17.json", failed / "failed-report-18.json")
        (failed / "rejected" / "failed-report-1.json").write_text("{}")

        item = status.installation_status(directory_of(summary), now_s=time.time())

        assert 3 == item.failed_results
        assert 1 == item.rejected_results

    def test_invalid_reports_count_every_entry_of_the_quarantine(self, tmp_path):
        _base, summary = fresh_tree(tmp_path, installations=1)
        invalid = directory_of(summary).path / "invalid-reports"
        invalid.mkdir()
        for name in ("tix-report-1.json", "tix-report-1.json.1", "tix-report-2.json"):
            (invalid / name).write_text("")

        item = status.installation_status(directory_of(summary), now_s=time.time())

        assert 3 == item.invalid_reports
        assert 0 == item.failed_results

    def test_missing_processor_directories_count_zero(self, generated):
        _base, summary = generated

        item = status.installation_status(directory_of(summary), now_s=time.time())

        assert (0, 0, 0) == (item.failed_results, item.rejected_results, item.invalid_reports)
        assert ("missing", None, None) == (item.state, item.last_window, item.lock)


# --------------------------------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------------------------------


class TestReadiness:
    def test_25_minutes_of_reports_make_a_ready_window_equal_to_the_pure_selection(self, generated):
        _base, summary = generated
        installation = directory_of(summary, 1)
        reports = [read_report(installation.path / name) for name in report_candidates(installation.path)]
        expected = select_window(reports, now_s=time.time()).window

        item = status.installation_status(installation, now_s=time.time())

        assert "ready" == item.readiness
        assert expected is not None
        assert (len(expected.reports), expected.count) == (item.next_window.files, item.next_window.observations)
        assert (expected.first.name, expected.last.name, expected.id) == (
            item.next_window.first,
            item.next_window.last,
            item.next_window.id,
        )
        assert 1 == item.windows_ready
        assert (0, 0, None) == (item.would_quarantine, item.would_discard, item.young_file)

    def test_10_minutes_of_reports_are_waiting(self, tmp_path):
        """About 600 observations: fewer than the 1084 a window needs."""
        base, _summary = fresh_tree(tmp_path, installations=2, minutes=10)

        tree = status.tree_status(base, now_s=time.time())

        assert ["waiting", "waiting"] == [item.readiness for item in tree.installations]
        assert [None, None] == [item.next_window for item in tree.installations]
        assert 0 == tree.summary()["windows_ready"]
        assert {"ready": 0, "waiting": 2, "blocked_young": 0, "error": 0} == tree.readiness_counts()

    def test_a_young_empty_file_blocks_the_scan(self, tmp_path):
        """An empty file modified 5 s ago may still be being written: it ends the scan (change S5)."""
        _base, summary = fresh_tree(tmp_path, installations=1)
        installation = directory_of(summary)
        now_s = time.time()
        empty_report(installation.path, age_s=5, now_s=now_s)

        item = status.installation_status(installation, now_s=now_s)

        assert "blocked_young" == item.readiness
        assert "tix-report-1000000000.json" == item.young_file
        assert (1, 0) == (item.unusable_young, item.unusable_old)
        assert (None, 0, 0) == (item.next_window, item.windows_ready, item.would_quarantine)
        assert len(summary.detail[0].files) + 1 == item.pending_files

    def test_the_same_file_a_minute_later_would_be_quarantined_and_the_window_is_ready(self, tmp_path):
        _base, summary = fresh_tree(tmp_path, installations=1)
        installation = directory_of(summary)
        now_s = time.time()
        empty_report(installation.path, age_s=5, now_s=now_s)

        item = status.installation_status(installation, now_s=now_s + 60)

        assert "ready" == item.readiness
        assert (0, 1) == (item.unusable_young, item.unusable_old)
        assert 1 == item.would_quarantine
        assert item.young_file is None
        assert summary.detail[0].observations == item.pending_observations

    def test_reports_before_a_gap_would_be_discarded(self, tmp_path):
        """Worked example (b): f11 starts 420 s after f10, so f01 … f10 are deleted and f11 … f29 are a window."""
        t1 = 1_700_000_000
        starts = [t1 + 60 * k for k in range(10)] + [t1 + 540 + 420 + 60 * k for k in range(19)]
        hand_made_installation(tmp_path, starts=starts)

        (item,) = status.tree_status(tmp_path, now_s=NOW_S).installations

        assert "ready" == item.readiness
        assert 10 == item.would_discard
        assert (19, 19 * 60) == (item.next_window.files, item.next_window.observations)
        assert f"tix-report-{starts[10]}.json" == item.next_window.first

    def test_two_windows_of_backlog_count_as_two_ready_windows(self, tmp_path):
        """Worked example (a) with f01 … f28: window 1 is f01 … f19, then f10 … f28 make window 2."""
        hand_made_installation(tmp_path, starts=[1_700_000_000 + 60 * k for k in range(28)])

        (item,) = status.tree_status(tmp_path, now_s=NOW_S).installations

        assert ("ready", 2) == (item.readiness, item.windows_ready)
        assert (28, 28 * 60) == (item.pending_files, item.pending_observations)

    def test_the_attempts_of_the_next_window_come_from_the_state_file(self, tmp_path):
        base, summary = fresh_tree(tmp_path, installations=1)
        installation = directory_of(summary)
        window_id = status.installation_status(installation, now_s=time.time()).next_window.id
        write_state(installation.path, State(attempt=Attempt(window_id, 2)))

        item = status.installation_status(installation, now_s=time.time())

        assert 2 == item.next_window.attempts
        assert 2 == item.attempt_count
        assert "ready(attempt 2)" in status_output.render_table(status.tree_status(base, now_s=time.time()))


# --------------------------------------------------------------------------------------------------------------
# Lock holder
# --------------------------------------------------------------------------------------------------------------


def lock_seen(directory: Path, *, now_s: float, host: str = "this-host"):
    """The lock as ``status`` shows it for ``directory`` (an installation without reports)."""
    return status.installation_status(InstallationDir(1, 1, directory), now_s=now_s, host=host).lock


def worker_takes_it(directory: Path, *, now_s: float, host: str = "this-host") -> bool:
    """True when a worker of ``host`` at ``now_s`` acquires the lock (and gives it back), False when busy."""
    lock = LeaseLock(directory, host=host, renew=False, clock=lambda: now_s)
    try:
        lock.acquire()
    except InstallationBusy:
        return False
    lock.release()
    return True


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class TestLockHolder:
    def test_no_lock_file_is_no_holder(self, tmp_path):
        assert lock_seen(tmp_path, now_s=NOW_S) is None

    def test_a_live_lock_names_host_pid_and_expiry(self, tmp_path):
        write_lock(tmp_path, expires_at=NOW_S + 90)

        lock = lock_seen(tmp_path, now_s=NOW_S)

        assert ("other-host", 4242, NOW_S + 90, False, None) == (
            lock.holder.host,
            lock.holder.pid,
            lock.expires_at,
            lock.stale,
            lock.stale_reason,
        )

    def test_a_lock_expired_less_than_the_30_s_skew_ago_is_still_held(self, tmp_path):
        """The lock waits 30 s of allowed clock skew past ``expires_at`` before a takeover (windows spec §8)."""
        write_lock(tmp_path, expires_at=NOW_S - 30)

        lock = lock_seen(tmp_path, now_s=NOW_S)

        assert (False, None) == (lock.stale, lock.stale_reason)

    def test_a_lock_expired_more_than_30_s_ago_is_stale(self, tmp_path):
        write_lock(tmp_path, expires_at=NOW_S - 30.5)

        lock = lock_seen(tmp_path, now_s=NOW_S)

        assert (True, "expired") == (lock.stale, lock.stale_reason)

    def test_a_lock_of_a_gone_process_of_this_host_is_stale_at_once(self, tmp_path):
        write_lock(tmp_path, host="this-host", pid=dead_pid(), expires_at=NOW_S + 90)

        lock = lock_seen(tmp_path, now_s=NOW_S)

        assert (True, "dead_process") == (lock.stale, lock.stale_reason)

    def test_a_lock_of_a_live_process_of_this_host_is_held(self, tmp_path):
        write_lock(tmp_path, host="this-host", pid=os.getpid(), expires_at=NOW_S + 90)

        lock = lock_seen(tmp_path, now_s=NOW_S)

        assert (False, None) == (lock.stale, lock.stale_reason)

    def test_an_empty_lock_expires_at_its_mtime_plus_the_default_lease(self, tmp_path):
        """A holder that died between create and write (windows spec §8): expiry = mtime + 120 s, then 30 s skew."""
        (tmp_path / LOCK_NAME).write_bytes(b"")
        os.utime(tmp_path / LOCK_NAME, (NOW_S - 100, NOW_S - 100))

        held = lock_seen(tmp_path, now_s=NOW_S + 50)
        stale = lock_seen(tmp_path, now_s=NOW_S + 51)

        assert (None, NOW_S + 20, False) == (held.holder, held.expires_at, held.stale)
        assert (True, "expired") == (stale.stale, stale.stale_reason)

    @pytest.mark.parametrize(
        ("holder", "expires_in_s"),
        [
            ("other-host", 90),
            ("other-host", -29),
            ("other-host", -31),
            ("this-host", 90),
            ("this-host, gone", 90),
            ("empty", -100),
            ("empty", -160),
        ],
    )
    def test_stale_is_exactly_when_a_worker_would_take_the_lock_over(self, tmp_path, holder, expires_in_s):
        """status and the lock judge with one rule: what status calls stale, a worker's acquire takes over."""
        if holder == "empty":
            (tmp_path / LOCK_NAME).write_bytes(b"")
            # The expiry of an empty lock is its mtime plus the default lease of 120 s.
            os.utime(tmp_path / LOCK_NAME, (NOW_S + expires_in_s - 120, NOW_S + expires_in_s - 120))
        else:
            pid = dead_pid() if holder.endswith("gone") else os.getpid()
            write_lock(tmp_path, host=holder.split(",")[0], pid=pid, expires_at=NOW_S + expires_in_s)

        stale = lock_seen(tmp_path, now_s=NOW_S).stale

        assert stale == worker_takes_it(tmp_path, now_s=NOW_S)

    def test_a_lock_path_that_is_a_link_is_an_error_of_the_installation(self, tmp_path):
        """The worker does not follow it either: its run fails on the lock."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        write_lock(elsewhere)
        os.symlink(elsewhere / LOCK_NAME, tmp_path / LOCK_NAME)

        item = status.installation_status(InstallationDir(1, 1, tmp_path), now_s=NOW_S)

        assert item.lock is None
        assert item.error is not None and item.error.startswith("lock: ")

    def test_the_lock_appears_in_json_table_and_prometheus(self, tmp_path, capsys):
        base, summary = fresh_tree(tmp_path, installations=2)
        write_lock(directory_of(summary, 0).path, expires_at=time.time() + 90)
        write_lock(directory_of(summary, 1).path, host="old-host", pid=7, expires_at=time.time() - 40)

        document = json.loads(run_command(["--reports", str(base), "--json"], capsys)[1])
        table = run_command(["--reports", str(base)], capsys)[1]
        families = parse_prometheus(run_command(["--reports", str(base), "--prometheus"], capsys)[1])

        locks = [item["lock"] for item in document["installations"]]
        assert [("other-host", 4242, False), ("old-host", 7, True)] == [
            (k["host"], k["pid"], k["stale"]) for k in locks
        ]
        assert (2, 1) == (document["summary"]["locks"], document["summary"]["stale_locks"])
        assert "other-host:4242" in table and "old-host:7 stale" in table
        assert [1.0, 0.0] == list(per_installation(families, "lock_held").values())
        assert [0.0, 1.0] == list(per_installation(families, "lock_stale").values())
        assert 1.0 == families["tix_processor_tree_stale_locks"]["samples"][frozenset()]


# --------------------------------------------------------------------------------------------------------------
# State file: last window and last delivery
# --------------------------------------------------------------------------------------------------------------


class TestLastDelivery:
    def test_a_posted_last_window_gives_the_last_delivery_and_its_age(self, tmp_path):
        base, summary = fresh_tree(tmp_path, installations=1)
        counters = Counters(posted=5, backed_up=1).plus_not_analysable("too_few_bins")
        write_state(directory_of(summary).path, State(last_window=last_window(), counters=counters))

        document = status.tree_status(base, now_s=NOW_S + 300).as_dict()

        (item,) = document["installations"]
        assert {"finished_at": "2024-01-01T00:00:00+00:00", "timestamp": 1_704_066_000, "age_s": 300.0} == item[
            "last_delivery"
        ]
        assert ("posted", 300.0) == (item["last_window"]["outcome"], item["last_window"]["age_s"])
        assert (5, 1, {"too_few_bins": 1}) == (
            item["counters"]["posted"],
            item["counters"]["backed_up"],
            item["counters"]["not_analysable"],
        )
        assert 300.0 == document["summary"]["last_delivery"]["age_s"]

    def test_a_result_re_sent_after_an_outage_is_the_last_delivery(self, tmp_path):
        """The last window was backed up during the outage, but tix-api accepted its result on a later run's re-send:
        the delivery is known, so an alert on its age does not fire."""
        base, summary = fresh_tree(tmp_path, installations=1)
        resent = LastDelivery(1_704_066_000, "2024-01-01T00:05:00+00:00")
        state = State(last_window=last_window(outcome="backed_up"), counters=Counters(resent=1), last_delivery=resent)
        write_state(directory_of(summary).path, state)

        tree = status.tree_status(base, now_s=NOW_S + 600)
        families = parse_prometheus(status_output.render_prometheus(tree))

        (item,) = tree.as_dict()["installations"]
        assert {"finished_at": "2024-01-01T00:05:00+00:00", "timestamp": 1_704_066_000, "age_s": 300.0} == item[
            "last_delivery"
        ]
        assert ("backed_up", 600.0) == (item["last_window"]["outcome"], item["last_window"]["age_s"])
        assert [300.0] == list(per_installation(families, "last_delivery_age_seconds").values())
        assert [1_704_066_000.0] == list(per_installation(families, "last_delivery_result_timestamp_seconds").values())
        assert [1.0] == list(per_installation(families, "resent_total").values())
        assert 300.0 == families["tix_processor_tree_last_delivery_age_seconds"]["samples"][frozenset()]
        assert "last delivery 5m00s ago" in status_output.summary_line(tree)

    def test_a_real_run_s_re_send_after_an_outage_makes_the_delivery_known(self, tmp_path):
        """The service's own run against a stand-in tix-api: down for the first run (the window is backed up),
        back for the second, whose re-send is the only delivery."""
        base, summary = fresh_tree(tmp_path, installations=1, minutes=25)
        detail = summary.detail[0]
        config = dataclasses.replace(Config.from_env({}), reports_base_path=base)
        with FakeApi(admin_user="admin", admin_password="secret") as api:
            client = ApiClient(api.base_url, user="admin", password="secret", timeout_s=5, backoff_s=(0.0, 0.0))
            delivery = Delivery(api=client, resolver=Resolver(None))
            api.set_behaviour(status=503)
            run_installation(config, str(detail.user_id), str(detail.installation_id), delivery)
            during = status.tree_status(base).as_dict()["installations"][0]
            api.set_behaviour(None)
            resent = run_installation(config, str(detail.user_id), str(detail.installation_id), delivery)
            accepted = [record["json"]["timestamp"] for record in api.accepted()]
        tree = status.tree_status(base)
        families = parse_prometheus(status_output.render_prometheus(tree))

        (item,) = tree.as_dict()["installations"]
        assert (None, "backed_up", 1) == (during["last_delivery"], during["last_window"]["outcome"], resent.resent)
        assert ("backed_up", accepted) == (item["last_window"]["outcome"], [item["last_delivery"]["timestamp"]])
        assert 0 <= item["last_delivery"]["age_s"] < 60
        assert [1.0] == list(per_installation(families, "resent_total").values())
        assert 1 == len(per_installation(families, "last_delivery_age_seconds"))

    def test_a_backed_up_last_window_without_a_recorded_delivery_has_no_known_delivery(self, tmp_path):
        """A state file written before the run recorded its deliveries: the last window tells only while posted."""
        base, summary = fresh_tree(tmp_path, installations=1)
        write_state(directory_of(summary).path, State(last_window=last_window(outcome="backed_up")))

        tree = status.tree_status(base, now_s=NOW_S + 60)
        families = parse_prometheus(status_output.render_prometheus(tree))

        (item,) = tree.as_dict()["installations"]
        assert item["last_delivery"] is None
        assert ("backed_up", 60.0) == (item["last_window"]["outcome"], item["last_window"]["age_s"])
        assert {} == families["tix_processor_last_delivery_age_seconds"]["samples"]
        assert {} == families["tix_processor_tree_last_delivery_age_seconds"]["samples"]
        assert [60.0] == list(per_installation(families, "last_window_age_seconds").values())
        assert "no delivery known" in status_output.summary_line(tree)

    def test_the_tree_s_last_delivery_is_the_most_recent_one(self, tmp_path):
        base, summary = fresh_tree(tmp_path, installations=3)
        write_state(directory_of(summary, 0).path, State(last_window=last_window()))
        write_state(
            directory_of(summary, 2).path, State(last_window=last_window(finished_at="2024-01-01T00:04:00+00:00"))
        )

        tree = status.tree_status(base, now_s=NOW_S + 600)

        last = tree.summary()["last_delivery"]
        detail = summary.detail[2]
        assert (detail.user_id, detail.installation_id, 360.0) == (last["user"], last["installation"], last["age_s"])
        assert f"last delivery 6m00s ago (user {detail.user_id} installation {detail.installation_id})" in (
            status_output.summary_line(tree)
        )

    def test_a_corrupt_state_file_is_reported_and_left_in_place(self, tmp_path):
        """read_state would rename it; status must not."""
        base, summary = fresh_tree(tmp_path, installations=1)
        path = directory_of(summary).path / STATE_NAME
        path.write_bytes(b"{not json")

        tree = status.tree_status(base, now_s=time.time())

        (item,) = tree.installations
        assert ("corrupt", None) == (item.state, item.last_window)
        assert b"{not json" == path.read_bytes()
        assert [] == [p.name for p in path.parent.iterdir() if ".corrupt-" in p.name]
        assert 1 == tree.summary()["corrupt_states"]
        assert "state corrupt" in status_output.render_table(tree)


# --------------------------------------------------------------------------------------------------------------
# Output formats
# --------------------------------------------------------------------------------------------------------------


class TestJson:
    def test_prints_one_document_of_installations_and_summary(self, generated, capsys):
        base, summary = generated

        code, out, err = run_command(["--reports", str(base), "--json"], capsys)

        document = json.loads(out)
        assert (0, "") == (code, err)
        assert ["installations", "summary"] == list(document)
        assert 3 == len(document["installations"]) == document["summary"]["installations"]
        assert {
            "user",
            "installation",
            "path",
            "readiness",
            "pending_report_files",
            "pending_observations",
            "unusable_reports",
            "next_window",
            "windows_ready",
            "would_quarantine",
            "would_discard",
            "young_file",
            "awaiting_disposal",
            "failed_results",
            "rejected_results",
            "invalid_reports",
            "state",
            "last_window",
            "last_delivery",
            "attempt_count",
            "counters",
            "lock",
            "error",
        } == set(document["installations"][0])
        assert (
            sum(i["pending_report_files"] for i in document["installations"])
            == document["summary"]["pending_report_files"]
        )
        assert summary.observations == document["summary"]["pending_observations"]
        assert str(base) == document["summary"]["reports"]


class TestPrometheus:
    def test_parses_back_to_the_same_figures_as_the_json(self, tmp_path):
        base, summary = fresh_tree(tmp_path, installations=3)
        first = directory_of(summary, 0).path
        (first / "failed-results").mkdir()
        (first / "failed-results" / "failed-report-1704066000.json").write_text("{}")
        (first / "invalid-reports").mkdir()
        (first / "invalid-reports" / "tix-report-1.json").write_text("")
        write_state(first, State(last_window=last_window(), counters=Counters(posted=4)))
        tree = status.tree_status(base, now_s=NOW_S + 120)
        document = tree.as_dict()

        families = parse_prometheus(status_output.render_prometheus(tree))

        assert all(name.startswith("tix_processor_") for name in families)
        assert all(family["help"] for family in families.values())
        for key, metric in (
            ("pending_report_files", "pending_report_files"),
            ("pending_observations", "pending_observations"),
            ("failed_results", "failed_results"),
            ("invalid_reports", "invalid_reports"),
            ("windows_ready", "ready_windows"),
        ):
            expected = {(str(i["user"]), str(i["installation"])): float(i[key]) for i in document["installations"]}
            assert expected == per_installation(families, metric), metric
            assert float(document["summary"][key]) == families[f"tix_processor_tree_{key}"]["samples"][frozenset()]
        ready = {(str(i["user"]), str(i["installation"])): 1.0 for i in document["installations"]}
        assert ready == per_installation(families, "window_ready")
        user, installation = str(summary.detail[0].user_id), str(summary.detail[0].installation_id)
        assert {(user, installation): 120.0} == per_installation(families, "last_delivery_age_seconds")
        assert {(user, installation): 1_704_066_000.0} == per_installation(
            families, "last_delivery_result_timestamp_seconds"
        )
        assert 120.0 == families["tix_processor_tree_last_delivery_age_seconds"]["samples"][frozenset()]
        installations = {dict(k)["readiness"]: v for k, v in families["tix_processor_installations"]["samples"].items()}
        assert {"ready": 3.0, "waiting": 0.0, "blocked_young": 0.0, "error": 0.0} == installations
        windows = {
            dict(k)["outcome"]: v
            for k, v in families["tix_processor_windows_total"]["samples"].items()
            if dict(k)["installation"] == installation
        }
        assert {"posted": 4.0, "backed_up": 0.0, "not_analysable": 0.0} == windows
        assert "counter" == families["tix_processor_windows_total"]["type"]
        assert "gauge" == families["tix_processor_pending_report_files"]["type"]

    def test_every_counter_of_the_json_is_a_prometheus_counter_with_the_same_value(self, tmp_path):
        """The state file's counters as ``status --json`` shows them, one by one in the Prometheus output."""
        base, summary = fresh_tree(tmp_path, installations=1)
        counters = Counters(
            posted=4, backed_up=3, resent=2, rejected=1, invalid_reports=6, discarded_gap=7, discarded_ip_change=8
        )
        counters = counters.plus_not_analysable("too_few_bins").plus_not_analysable("too_few_bins")
        counters = counters.plus_not_analysable("repeated_failure")
        write_state(directory_of(summary).path, State(last_window=last_window(), counters=counters))
        tree = status.tree_status(base, now_s=NOW_S)
        (item,) = tree.as_dict()["installations"]

        families = parse_prometheus(status_output.render_prometheus(tree))

        def samples(family: str) -> dict[str, float]:
            return {
                ",".join(value for name, value in sorted(key) if name not in ("user", "installation")): value
                for key, value in families[f"tix_processor_{family}"]["samples"].items()
            }

        assert {
            "posted": 4,
            "backed_up": 3,
            "resent": 2,
            "rejected": 1,
            "invalid_reports": 6,
            "discarded_gap": 7,
            "discarded_ip_change": 8,
            "not_analysable": {"too_few_bins": 2, "repeated_failure": 1},
        } == item["counters"]
        assert {"posted": 4.0, "backed_up": 3.0, "not_analysable": 3.0} == samples("windows_total")
        assert {"too_few_bins": 2.0, "repeated_failure": 1.0} == samples("not_analysable_windows_total")
        assert {"": 2.0} == samples("resent_total")
        assert {"": 1.0} == samples("rejected_total")
        assert {"": 6.0} == samples("unusable_reports_moved_total")
        assert {"gap": 7.0, "ip_change": 8.0} == samples("discarded_reports_total")

    def test_families_keep_their_names_types_and_order_without_created_samples(self, generated):
        """The names of the hand-written exposition stay, and a counter has no ``_created`` series added."""
        tree = status.tree_status(generated[0], now_s=time.time())

        families = parse_prometheus(status_output.render_prometheus(tree))

        gauges = [name for name, _ in status_output.INSTALLATION_GAUGES]
        counters = [
            "windows_total",
            "not_analysable_windows_total",
            "resent_total",
            "rejected_total",
            "unusable_reports_moved_total",
            "discarded_reports_total",
        ]
        totals = [f"tree_{key}" for key, _ in status_output.TREE_TOTALS] + ["tree_last_delivery_age_seconds"]
        expected = [*gauges, *counters, "installations", *totals, "status_duration_seconds"]
        assert [f"tix_processor_{name}" for name in expected] == list(families)
        assert {f"tix_processor_{name}" for name in counters} == {
            name for name, family in families.items() if family["type"] == "counter"
        }
        assert {"gauge"} == {f["type"] for name, f in families.items() if not name.endswith("_total")}
        assert (
            "Windows recorded as done since the state file was created, by outcome."
            == (families["tix_processor_windows_total"]["help"])
        )

    def test_textfile_is_written_whole_with_the_same_families_as_stdout(self, generated, tmp_path, capsys):
        """--textfile writes by rename from a temporary file beside it, so a collector never reads half a file."""
        path = tmp_path / "textfile" / "tix.prom"
        path.parent.mkdir()
        path.write_text("old content\n")

        code, out, err = run_command(["--reports", str(generated[0]), "--textfile", str(path)], capsys)
        printed = parse_prometheus(run_command(["--reports", str(generated[0]), "--prometheus"], capsys)[1])

        written = parse_prometheus(path.read_text())
        assert (0, "", "") == (code, out, err)
        assert ["tix.prom"] == [p.name for p in path.parent.iterdir()]
        del written["tix_processor_status_duration_seconds"], printed["tix_processor_status_duration_seconds"]
        assert printed == written

    def test_a_textfile_that_cannot_be_written_exits_1_and_leaves_nothing(self, generated, tmp_path, capsys):
        missing = tmp_path / "no-such-directory" / "tix.prom"

        code, out, err = run_command(["--reports", str(generated[0]), "--textfile", str(missing)], capsys)

        assert (1, "") == (code, out)
        assert err.startswith(f"status: cannot write --textfile {missing}: ")
        assert [] == list(tmp_path.iterdir())


class TestTable:
    def test_one_row_per_installation_then_the_summary_line(self, generated, capsys):
        base, summary = generated

        code, out, _ = run_command(["--reports", str(base)], capsys)

        lines = out.splitlines()
        assert 0 == code
        assert lines[0].split()[:4] == ["USER", "INST", "NEXT", "FILES"]
        assert 1 + 3 + 1 == len(lines)
        for line, detail in zip(lines[1:4], summary.detail, strict=True):
            cells = line.split()
            assert [str(detail.user_id), str(detail.installation_id), "ready", str(len(detail.files))] == cells[:4]
        assert lines[-1].startswith("3 installations: 3 ready, 0 waiting, 0 blocked_young, 0 error;")
        assert "\x1b[" not in out  # not a terminal: no escape sequences

    def test_help_explains_every_column_of_the_table(self, generated):
        """``status --help`` names each column of the header, in order, each with its meaning on its own line."""
        tree = status.tree_status(generated[0], now_s=time.time())
        header = status_output.render_table(tree).splitlines()[0]

        done = subprocess.run(
            [sys.executable, "-m", "processor", "status", "--help"], capture_output=True, text=True, check=True
        )

        section = done.stdout.split("columns of the table:\n")[1].split("\n\n")[0]
        explained = [m[1] for m in re.finditer(r"^  (\S+(?: \S+)?)  +\S", section, re.MULTILINE)]
        assert re.split(r"  +", header.strip()) == explained
        assert "WIN" in explained and "QUAR" in explained
        assert all(len(line) <= 120 for line in section.splitlines())

    def test_a_terminal_gets_a_bold_header(self, generated):
        tree = status.tree_status(generated[0], now_s=time.time())

        assert status_output.render_table(tree, tty=True).startswith("\x1b[1mUSER")

    @pytest.mark.parametrize(
        ("age_s", "text"),
        [(None, "-"), (-3, "0s"), (42.9, "42s"), (192, "3m12s"), (7500, "2h05m"), (273600, "3d04h")],
    )
    def test_ages_read_as_short_text(self, age_s, text):
        assert text == status_output.age_text(age_s)


# --------------------------------------------------------------------------------------------------------------
# Command line and read-only behaviour
# --------------------------------------------------------------------------------------------------------------


class TestCommand:
    def test_a_missing_reports_directory_exits_2(self, tmp_path, capsys):
        code, out, err = run_command(["--reports", str(tmp_path / "absent")], capsys)

        assert (2, "") == (code, out)
        assert "is not a directory" in err

    def test_a_file_as_reports_directory_exits_2(self, tmp_path, capsys):
        (tmp_path / "file").write_text("x")

        assert 2 == run_command(["--reports", str(tmp_path / "file"), "--json"], capsys)[0]

    def test_reports_defaults_to_the_environment_variable(self, generated, capsys, monkeypatch):
        monkeypatch.setenv("TIX_REPORTS_BASE_PATH", str(generated[0]))
        monkeypatch.setenv("TIX_PROCESSING_PERIOD", "not a number")  # an unrelated bad variable does not matter

        code, out, _ = run_command(["--json"], capsys)

        assert 0 == code
        assert str(generated[0]) == json.loads(out)["summary"]["reports"]

    def test_an_unset_or_empty_variable_means_tmp_reports(self):
        """The service's own rule (processor.config), which reads no other variable."""
        assert (
            Path("/tmp/reports")
            == reports_base_path({"TIX_PROCESSING_PERIOD": "not a number"})
            == reports_base_path({"TIX_REPORTS_BASE_PATH": ""})
        )

    @pytest.mark.parametrize(
        "flags", [["--json", "--prometheus"], ["--json", "--textfile", "x.prom"], ["--prometheus", "--textfile", "x"]]
    )
    def test_the_output_options_exclude_each_other(self, flags):
        parser = argparse.ArgumentParser()
        status.add_arguments(parser)

        with pytest.raises(SystemExit):
            parser.parse_args(flags)

    def test_an_empty_tree_has_no_installations(self, tmp_path, capsys):
        code, out, _ = run_command(["--reports", str(tmp_path), "--json"], capsys)

        document = json.loads(out)
        assert (0, [], 0) == (code, document["installations"], document["summary"]["installations"])
        assert document["summary"]["last_delivery"] is None


class TestReadOnly:
    def test_the_tree_is_byte_identical_with_unchanged_mtimes_after_every_output(self, tmp_path, capsys):
        """Lock, corrupt state, leftover disposal, young and old unusable files: nothing moves, nothing is written."""
        base, summary = fresh_tree(tmp_path, installations=4)
        now_s = time.time()
        first, second, third, fourth = (directory_of(summary, i).path for i in range(4))
        write_lock(first, expires_at=now_s - 1000)  # stale: a real acquisition would take it over
        (second / STATE_NAME).write_bytes(b"{corrupt")  # read_state would set it aside
        names = report_candidates(third)
        write_state(third, State(last_window=last_window(files=tuple(names[:4]), dispose=tuple(names[:2]))))
        empty_report(fourth, age_s=3600, now_s=now_s)  # old unusable: a run would quarantine it
        (first / "tix-report-1000000001.json").write_bytes(b"")  # young unusable
        (fourth / "failed-results").mkdir()
        (fourth / "failed-results" / "failed-report-1.json").write_text("{}")
        before = snapshot(base)

        flags = ([], ["--json"], ["--prometheus"], ["--textfile", str(tmp_path / "tix.prom")])
        outputs = [run_command(["--reports", str(base), *flag], capsys) for flag in flags]

        assert [0, 0, 0, 0] == [code for code, _, _ in outputs]
        assert before == snapshot(base)
        document = json.loads(outputs[1][1])
        by_path = {item["path"]: item for item in document["installations"]}
        assert "blocked_young" == by_path[str(first)]["readiness"]
        assert by_path[str(first)]["lock"]["stale"]
        assert "corrupt" == by_path[str(second)]["state"]
        assert 2 == by_path[str(third)]["awaiting_disposal"]
        assert 1 == by_path[str(fourth)]["would_quarantine"]
