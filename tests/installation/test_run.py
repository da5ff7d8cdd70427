"""Tests of processor.installation.run: one complete run over an installation (windows spec §9.2, §10)."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from processor.config import Config
from processor.delivery import Delivery
from processor.delivery.failed_results import list_failed_results
from processor.delivery.ip_to_as import Pfx2asBackend, Resolver
from processor.delivery.tixapi import ApiClient
from processor.errors import NotAnalysable
from processor.installation import run as installation_module
from processor.installation import window as window_module
from processor.installation.dry_run import dry_run_installation
from processor.installation.lock import LOCK_NAME, Holder, LeaseLock
from processor.installation.run import run_installation
from processor.installation.state import STATE_NAME, State, read_state, write_state
from processor.observations import observations
from processor.reports.files import write_report
from processor.reports.windows import window_id
from tests import logfmt
from tests.fake_api import FakeApi
from tests.test_atomic import FsyncRecorder

T1 = 1_700_000_000
IP = "203.0.113.45"
USER, INSTALLATION = "7", "12"


def records(first_ts: int, n: int = 60) -> np.ndarray:
    ts = first_ts + np.arange(n, dtype=np.int64)
    t1 = (ts % 86_400) * 1_000_000_000
    return observations(ts, t1, t1 + 5_000_000, t1 + 5_100_000, t1 + 10_000_000)


def name(k: int) -> str:
    """File name of report f<k> of the worked example (windows spec §11): first record at T₁ + 60 (k − 1)."""
    return f"tix-report-{T1 + 60 * (k - 1)}.json"


def names(first: int, last: int) -> list[str]:
    return [name(k) for k in range(first, last + 1)]


@dataclass(frozen=True)
class FakeResult:
    """What processor.analysis.analyse returns, reduced to what the run uses."""

    timestamp: int

    def as_results_dict(self) -> dict:
        direction = {"usage": 0.25, "quality": 1.0, "hurst": {"wavelet": 0.6, "rs": 0.7}}
        return {"timestamp": self.timestamp, "upstream": direction, "downstream": dict(direction)}


@dataclass(frozen=True)
class FakeQueueingResult(FakeResult):
    """A result of the current analysis: each direction also carries ``usage_queueing`` (usage-queueing spec)."""

    def as_results_dict(self) -> dict:
        results = super().as_results_dict()
        results["upstream"] = {**results["upstream"], "usage_queueing": 0.75}
        results["downstream"] = {**results["downstream"], "usage_queueing": 0.5}
        return results


class FakeAnalysis:
    """A deterministic analysis: the result timestamp is the last ts; ``fail`` maps a first ts to an exception."""

    def __init__(self, fail: dict[int, BaseException] | None = None, result: type[FakeResult] = FakeResult) -> None:
        self.fail = fail or {}
        self.calls: list[int] = []
        self.result = result

    def __call__(self, window_observations: np.ndarray) -> FakeResult:
        first = int(window_observations["ts"][0])
        self.calls.append(first)
        if first in self.fail:
            raise self.fail[first]
        return self.result(int(window_observations["ts"][-1]))


class Installation:
    """A temporary reports tree with one installation 7/12."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.directory = base / USER / INSTALLATION
        self.directory.mkdir(parents=True)

    def add(self, first: int, last: int, *, ip: str = IP) -> None:
        for k in range(first, last + 1):
            path = write_report(
                self.directory, records(T1 + 60 * (k - 1)), from_address=f"{ip}:4501", user_id=7, installation_id=12
            )
            os.utime(path, (T1 + 60 * k, T1 + 60 * k))

    def reports(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir() if p.name.endswith(".json"))

    def failed(self) -> list[str]:
        return [item.path.name for item in list_failed_results(self.directory / "failed-results")]

    def invalid(self) -> list[str]:
        directory = self.directory / "invalid-reports"
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []

    def state(self) -> State:
        return read_state(self.directory)


@pytest.fixture
def tree(tmp_path) -> Installation:
    return Installation(tmp_path / "reports")


@pytest.fixture
def api():
    with FakeApi(admin_user="admin", admin_password="secret") as server:
        yield server


def client(server: FakeApi) -> ApiClient:
    return ApiClient(server.base_url, user="admin", password="secret", timeout_s=5, backoff_s=(0.0, 0.0), jitter_s=0)


def config(tree: Installation, **changes) -> Config:
    """The default configuration on the test tree, with ``changes`` (e.g. ``task_budget_s=1``)."""
    return dataclasses.replace(Config.from_env({}), reports_base_path=tree.base, **changes)


def delivery(server: FakeApi, resolver: Resolver | None = None) -> Delivery:
    return Delivery(api=client(server), resolver=resolver or Resolver(None))


def run(
    tree: Installation,
    server: FakeApi,
    analysis=None,
    *,
    user=USER,
    installation=INSTALLATION,
    interrupts=(),
    stop_requested=None,
    **changes,
):
    """One run of 7/12 with a deterministic analysis (the real one with ``analysis="real"``)."""
    arguments = (config(tree, **changes), user, installation, delivery(server))
    if analysis == "real":
        return run_installation(*arguments, interrupts=interrupts, stop_requested=stop_requested)
    with mock.patch.object(window_module, "analyse", analysis or FakeAnalysis()):
        return run_installation(*arguments, interrupts=interrupts, stop_requested=stop_requested)


def posted_timestamps(server: FakeApi) -> list[int]:
    return [record["json"]["timestamp"] for record in server.accepted()]


def events(caplog, event: str) -> list[dict]:
    """The fields of every log record of ``event``."""
    return [record.fields for record in caplog.records if getattr(record, "event", None) == event]


class TestNormalRun:
    def test_posts_every_complete_window_and_keeps_the_rest(self, tree, api, caplog):
        tree.add(1, 40)

        with caplog.at_level(logging.INFO):
            summary = run(tree, api)

        assert "done" == summary.outcome
        assert {"posted": 3} == summary.counts
        assert [T1 + 60 * 19 - 1, T1 + 60 * 28 - 1, T1 + 60 * 37 - 1] == posted_timestamps(api)
        assert names(28, 40) == tree.reports()
        assert [[USER, INSTALLATION, "posted", None]] * 3 == [
            [line["user"], line["installation"], line["outcome"], line["reason"]]
            for line in events(caplog, "window done")
        ]

    def test_the_payload_carries_the_window_ip_and_null_as_fields(self, tree, api):
        tree.add(1, 19)

        run(tree, api)

        [payload] = [record["json"] for record in api.accepted()]
        assert IP == payload["ip"]
        assert (None, None) == (payload["asn"], payload["asOwner"])
        assert 0.25 == payload["upUsage"]

    def test_the_payload_ends_with_both_queueing_shares_and_keeps_the_original_usage_by_default(self, tree, api):
        tree.add(1, 19)

        run(tree, api, FakeAnalysis(result=FakeQueueingResult))

        [payload] = [record["json"] for record in api.accepted()]
        assert ["asOwner", "upUsageQueueing", "downUsageQueueing"] == list(payload)[-3:]
        assert (0.75, 0.5) == (payload["upUsageQueueing"], payload["downUsageQueueing"])
        assert (0.25, 0.25) == (payload["upUsage"], payload["downUsage"])

    def test_the_queueing_estimator_fills_the_usage_fields(self, tree, api):
        tree.add(1, 19)

        summary = run(tree, api, FakeAnalysis(result=FakeQueueingResult), usage_estimator="queueing")

        [payload] = [record["json"] for record in api.accepted()]
        assert (0.75, 0.5) == (payload["upUsage"], payload["downUsage"])
        assert (0.75, 0.5) == (payload["upUsageQueueing"], payload["downUsageQueueing"])
        assert payload == summary.windows[0].payload

    def test_the_as_of_a_global_address_is_resolved_before_the_post(self, tree, api, tmp_path):
        (tmp_path / "pfx2as").write_text("181.44.0.0\t16\t64500\n")
        (tmp_path / "asnames").write_text("64500\tEXAMPLE-NET - Example Networks, AR\n")
        tree.add(1, 19, ip="181.44.10.20")

        resolver = Resolver(Pfx2asBackend(tmp_path / "pfx2as", tmp_path / "asnames"))
        with mock.patch.object(window_module, "analyse", FakeAnalysis()):
            summary = run_installation(config(tree), USER, INSTALLATION, delivery(api, resolver))

        [payload] = [record["json"] for record in api.accepted()]
        assert (64500, "EXAMPLE-NET - Example Networks, AR") == (payload["asn"], payload["asOwner"])
        assert "181.44.10.20" == payload["ip"]
        assert 64500 == summary.windows[0].asn

    def test_the_state_records_the_last_window_and_counts(self, tree, api):
        tree.add(1, 28)

        run(tree, api)

        state = tree.state()
        assert 2 == state.counters.posted
        assert tuple(names(10, 28)) == state.last_window.files
        assert tuple(names(10, 18)) == state.last_window.dispose
        assert window_id(names(10, 28)) == state.last_window.id
        assert ("posted", "delete", T1 + 60 * 28 - 1) == (
            state.last_window.outcome,
            state.last_window.disposal,
            state.last_window.timestamp,
        )
        assert state.attempt is None

    def test_creates_failed_results_with_mode_0750_and_leaves_no_lock(self, tree, api):
        tree.add(1, 5)

        summary = run(tree, api)

        assert () == summary.windows
        assert 0o750 == stat.S_IMODE((tree.directory / "failed-results").stat().st_mode)
        assert not (tree.directory / LOCK_NAME).exists()
        assert names(1, 5) == tree.reports()

    def test_a_run_with_nothing_left_posts_nothing(self, tree, api):
        tree.add(1, 40)
        run(tree, api)

        summary = run(tree, api)

        assert () == summary.windows
        assert 3 == len(api.records())

    def test_real_analysis_of_simulated_reports(self, tree, api):
        """The real processor.analysis.analyse on 40 simulated minutes: windows are posted with finite values."""
        from processor_tools.simulate import simulate_installation, split_into_reports

        rng = np.random.default_rng(20231114)
        data, _ = simulate_installation(rng, minutes=40)
        for part in split_into_reports(data, rng):
            write_report(tree.directory, part, from_address="181.44.10.20:4501", user_id=7, installation_id=12)

        summary = run(tree, api, "real")

        assert summary.windows
        assert all("posted" == window.outcome for window in summary.windows)
        assert [window.timestamp for window in summary.windows] == posted_timestamps(api)
        for record in api.accepted():
            assert all(np.isfinite(record["json"][key]) for key in ("upUsage", "downQuality", "hurstUpRs"))
            assert all(0.0 <= record["json"][key] <= 1.0 for key in ("upUsageQueueing", "downUsageQueueing"))


class TestApiFailures:
    def test_an_api_answering_503_gets_every_window_backed_up(self, tree, api):
        tree.add(1, 40)
        api.set_behaviour(status=503)

        summary = run(tree, api)

        assert {"backed_up": 3} == summary.counts
        assert 3 == len(api.records())  # three attempts for the first window, none once the API is unusable
        assert [f"failed-report-{T1 + 60 * k - 1}.json" for k in (19, 28, 37)] == tree.failed()
        assert names(28, 40) == tree.reports()
        assert 3 == tree.state().counters.backed_up

    def test_results_tix_api_refuses_while_it_serves_others_are_retired_after_three_runs(self, tree, api, caplog):
        """
        H9, an IPv6 client: every POST of 7/12 gets a 500, but the process's client had a 2xx for another
        installation within the last period. Each window is tried and backed up; each later run strikes every one
        of them, and the third strike retires them to rejected/ (failed-results/ no longer grows without bound).
        """
        tree.add(1, 40)
        api.set_behaviour(status=500, installation=f"{USER}/{INSTALLATION}")
        shared = delivery(api)
        shared.api.post("8", "13", {"timestamp": T1})  # another installation of this process, served
        summaries, held = [], []
        with caplog.at_level(logging.ERROR), mock.patch.object(window_module, "analyse", FakeAnalysis()):
            for _ in range(4):
                summaries.append(run_installation(config(tree), USER, INSTALLATION, shared))
                held.append(len(tree.failed()))

        backed_up = [f"failed-report-{T1 + 60 * k - 1}.json" for k in (19, 28, 37)]
        mine = [r for r in api.records() if (r["user_id"], r["installation_id"]) == (USER, INSTALLATION)]
        assert {"backed_up": 3} == summaries[0].counts
        assert 4 * 3 * 3 == len(mine)  # every window, then every re-send, 3 attempts each: the API stays usable
        assert ([3, 3, 3, 0], [0, 0, 0, 3]) == (held, [summary.rejected for summary in summaries])
        assert [False, True, True, True] == [summary.api_failed for summary in summaries]  # first: windows backed up
        assert [] == tree.failed()
        assert backed_up == sorted(os.listdir(tree.directory / "failed-results" / "rejected"))
        assert ["refused_while_api_up"] * 3 == [fields["reason"] for fields in events(caplog, "failed result rejected")]

    def test_backed_up_results_are_resent_exactly_once_when_the_api_is_back(self, tree, api):
        tree.add(1, 40)
        api.set_behaviour(status=503)
        run(tree, api)
        api.set_behaviour(None)

        first = run(tree, api)
        second = run(tree, api)

        assert 3 == first.resent
        assert 0 == second.resent
        assert [T1 + 60 * k - 1 for k in (19, 28, 37)] == posted_timestamps(api)
        assert [] == tree.failed()
        assert 3 == tree.state().counters.resent

    def test_a_re_sent_result_is_recorded_as_the_last_delivery(self, tree, api):
        """``status`` reads the last delivery from the state: a re-send after an outage is one, though the last
        window recorded was backed up."""
        tree.add(1, 19)
        api.set_behaviour(status=503)
        run(tree, api)
        outage = tree.state()
        api.set_behaviour(None)

        began = time.time()
        summary = run(tree, api)
        state = tree.state()

        assert (1, 0) == (summary.resent, len(summary.windows))
        assert (None, "backed_up") == (outage.last_delivery, outage.last_window.outcome)
        assert "backed_up" == state.last_window.outcome
        assert T1 + 60 * 19 - 1 == state.last_delivery.timestamp
        assert began <= datetime.fromisoformat(state.last_delivery.delivered_at).timestamp() <= time.time()

    def test_backed_up_results_keep_the_queueing_shares_and_are_resent_under_the_estimator_they_had(self, tree, api):
        """A result backed up under ``queueing`` is re-sent as ``queueing`` after a switch back to ``v2``: each
        payload names the quantity it carries, whatever the estimator is when it finally reaches tix-api."""
        tree.add(1, 19)
        api.set_behaviour(status=503)
        run(tree, api, FakeAnalysis(result=FakeQueueingResult), usage_estimator="queueing")
        [backed_up] = tree.failed()
        stored = json.loads((tree.directory / "failed-results" / backed_up).read_text())
        api.set_behaviour(None)

        summary = run(tree, api, FakeAnalysis(result=FakeQueueingResult), usage_estimator="v2")

        assert (0.75, 0.5) == (
            stored["results"]["upstream"]["usage_queueing"],
            stored["results"]["downstream"]["usage_queueing"],
        )
        assert 0.25 == stored["results"]["upstream"]["usage"]
        assert "queueing" == stored["usageEstimator"]
        assert 1 == summary.resent
        [payload] = [record["json"] for record in api.accepted()]
        assert ("queueing", 0.75, 0.5, 0.75, 0.5) == (
            payload["usageEstimator"],
            payload["upUsage"],
            payload["downUsage"],
            payload["upUsageQueueing"],
            payload["downUsageQueueing"],
        )

    def test_without_credentials_results_are_backed_up_without_a_request(self, tree, api):
        tree.add(1, 19)

        anonymous = Delivery(ApiClient(api.base_url, user=None, password=None, timeout_s=5), Resolver(None))
        with mock.patch.object(window_module, "analyse", FakeAnalysis()):
            summary = run_installation(config(tree), USER, INSTALLATION, anonymous)

        assert {"backed_up": 1} == summary.counts
        assert [] == api.records()

    def test_a_content_rejection_backs_the_result_up(self, tree, api):
        """§9.2 step 4: any failure of the POST of a new window goes to failed-results."""
        tree.add(1, 19)
        api.set_behaviour(status=400)

        summary = run(tree, api)

        assert {"backed_up": 1} == summary.counts
        assert [f"failed-report-{T1 + 60 * 19 - 1}.json"] == tree.failed()

    def test_a_failed_backup_write_ends_the_run_and_restores_the_attempt(self, tree, api, monkeypatch):
        """Disk full while backing up: nothing recorded, nothing removed, the attempt does not count."""
        tree.add(1, 19)
        api.set_behaviour(status=503)

        def disk_full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(installation_module, "write_failed_result", disk_full)
        summary = run(tree, api)

        assert "write_failed" == summary.outcome
        assert names(1, 19) == tree.reports()
        assert tree.state().attempt is None


class TestCrashSafety:
    def test_nothing_leaves_the_run_before_the_started_attempt_is_durable(self, tree, api, monkeypatch):
        """The lock file, then the started state (its file, then its directory) are synced before the POST."""
        tree.add(1, 19)
        synced = FsyncRecorder()
        monkeypatch.setattr(os, "fsync", synced)
        synced_at_post: list[list[str]] = []
        real_post = ApiClient.post

        def post(client, *args, **kwargs):
            synced_at_post.append([Path(path).name for path in synced.done])
            return real_post(client, *args, **kwargs)

        monkeypatch.setattr(ApiClient, "post", post)
        summary = run(tree, api)

        assert ["posted"] == [window.outcome for window in summary.windows]
        [(lock, state, directory)] = synced_at_post
        assert (LOCK_NAME, INSTALLATION) == (lock, directory)
        assert state.startswith(".tix-tmp-state-")
        assert 1 == len(api.records())

    def test_reports_are_deleted_only_after_the_recording_is_durable(self, tree, api, monkeypatch):
        tree.add(1, 19)
        synced = FsyncRecorder()
        monkeypatch.setattr(os, "fsync", synced)
        events: list[str] = []
        real_unlink = os.unlink

        def unlink(path, *args, **kwargs):
            events.append(f"unlink after {len(synced.done)} fsyncs")
            real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", unlink)
        summary = run(tree, api)

        assert ["posted"] == [window.outcome for window in summary.windows]
        assert names(10, 19) == tree.reports()
        # lock file, state file and directory, state file and directory: all five before the first report goes.
        assert ["unlink after 5 fsyncs"] * 9 == events[:9]
        assert not (tree.directory / LOCK_NAME).exists()

    def test_a_failing_fsync_of_the_recording_keeps_the_reports_and_the_next_run_finishes(self, tree, api, monkeypatch):
        """The recording renamed into place but its directory not synced: no disposal, and no second POST."""
        tree.add(1, 19)
        synced = FsyncRecorder()

        def fsync(fd):
            if len(synced.done) == 4:  # lock file, started state and directory, recording: its directory fails
                raise OSError(errno.EIO, "Input/output error")
            synced(fd)

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", fsync)
            summary = run(tree, api)

        assert "write_failed" == summary.outcome
        assert 1 == len(api.records())
        assert names(1, 19) == tree.reports()  # the disposal did not follow the failed write
        assert not (tree.directory / LOCK_NAME).exists()
        again = run(tree, api)
        assert "done" == again.outcome and 9 == again.recovered
        assert names(10, 19) == tree.reports()
        assert 1 == len(api.records())  # recorded as done: never posted again

    def test_a_failing_fsync_of_the_lock_stops_the_run_before_any_effect(self, tree, api, monkeypatch):
        tree.add(1, 19)

        def fsync(fd):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fsync", fsync)
        summary = run(tree, api)

        assert "io_error" == summary.outcome
        assert [] == api.records()
        assert names(1, 19) == tree.reports()
        assert [] == [path.name for path in tree.directory.iterdir() if not path.name.endswith(".json")]

    def test_a_failing_write_of_the_started_attempt_stops_the_run_before_the_post(self, tree, api, monkeypatch):
        """Disk trouble before the analysis: nothing posted, nothing removed, the attempt does not count."""
        tree.add(1, 19)
        synced = FsyncRecorder()

        def fsync(fd):
            if len(synced.done) == 1:  # the lock file is synced; the started state's file fails
                raise OSError(errno.EIO, "Input/output error")
            synced(fd)

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", fsync)
            summary = run(tree, api)

        assert "write_failed" == summary.outcome
        assert [] == api.records()
        assert names(1, 19) == tree.reports()
        assert not (tree.directory / LOCK_NAME).exists()
        assert tree.state().attempt is None

    def test_a_crash_between_recording_and_disposal_is_finished_by_the_next_run(self, tree, api, monkeypatch):
        """Step 5 written, step 6 not done: the next run removes the older half and never posts the window again."""
        tree.add(1, 28)

        class Killed(BaseException):
            pass

        def crash(self, names, disposal):
            raise Killed

        with monkeypatch.context() as patch:
            patch.setattr(installation_module._Run, "dispose", crash)
            with pytest.raises(Killed):
                run(tree, api)
        assert names(1, 28) == tree.reports()
        assert tuple(names(1, 19)) == tree.state().last_window.files

        summary = run(tree, api)

        assert 9 == summary.recovered
        assert [T1 + 60 * 19 - 1, T1 + 60 * 28 - 1] == posted_timestamps(api)
        assert names(19, 28) == tree.reports()

    def test_a_crash_after_the_post_before_recording_posts_the_window_again(self, tree, api, monkeypatch):
        """Worked example (g): the only duplicate case; the window is selected again with attempt count 2."""
        tree.add(1, 19)
        real_write = installation_module.write_state
        writes = []

        class Killed(BaseException):
            pass

        def write_then_die(directory, state):
            writes.append(state)
            if len(writes) == 2:  # the first write is the attempt, the second would record the window
                raise Killed
            real_write(directory, state)

        with monkeypatch.context() as patch:
            patch.setattr(installation_module, "write_state", write_then_die)
            with pytest.raises(Killed):
                run(tree, api)
        assert names(1, 19) == tree.reports()
        assert 1 == tree.state().attempt.count

        run(tree, api)

        assert [T1 + 60 * 19 - 1] * 2 == posted_timestamps(api)
        assert 1 == tree.state().counters.posted
        assert names(10, 19) == tree.reports()

    def test_a_redelivered_run_that_finds_the_window_done_never_posts_it_again(self, tree, api):
        tree.add(1, 19)
        run(tree, api)
        # As if the disposal had not happened: the files are back, the state says the window is done.
        tree.add(1, 9)

        summary = run(tree, api)

        assert 9 == summary.recovered
        assert () == summary.windows
        assert [T1 + 60 * 19 - 1] == posted_timestamps(api)

    def test_a_window_started_three_times_is_consumed_as_repeated_failure(self, tree, api):
        """S4: unexpected exceptions count; the fourth run does not analyse and quarantines the older half."""
        tree.add(1, 19)
        analysis = FakeAnalysis(fail={T1: RuntimeError("worker killed")})
        for count in (1, 2, 3):
            with pytest.raises(RuntimeError):
                run(tree, api, analysis)
            assert count == tree.state().attempt.count

        summary = run(tree, api, analysis)

        assert 3 == len(analysis.calls)
        assert [("not_analysable", "repeated_failure")] == [(w.outcome, w.reason) for w in summary.windows]
        assert names(1, 9) == tree.invalid()
        assert names(10, 19) == tree.reports()
        assert {"repeated_failure": 1} == dict(tree.state().counters.not_analysable)
        assert [] == api.records()

    def test_a_not_analysable_window_is_consumed_without_a_result(self, tree, api, caplog):
        tree.add(1, 28)
        analysis = FakeAnalysis(fail={T1: NotAnalysable("too_few_bins")})

        with caplog.at_level(logging.WARNING):
            summary = run(tree, api, analysis)

        assert [("not_analysable", "too_few_bins"), ("posted", None)] == [
            (w.outcome, w.reason) for w in summary.windows
        ]
        assert [] == tree.failed()
        assert {"too_few_bins": 1} == dict(tree.state().counters.not_analysable)
        assert [("too_few_bins", name(1), name(19))] == [
            (fields["reason"], fields["first"], fields["last"]) for fields in events(caplog, "window not analysable")
        ]

    def test_an_interrupt_restores_the_attempt_count(self, tree, api):
        """A controlled stop (soft time limit) does not count towards the S4 cap."""

        class SoftLimit(Exception):
            pass

        tree.add(1, 19)
        write_state(tree.directory, State().started(window_id(names(1, 19))))

        summary = run(tree, api, FakeAnalysis(fail={T1: SoftLimit()}), interrupts=(SoftLimit,))

        assert "interrupted" == summary.outcome
        assert 1 == tree.state().attempt.count
        assert not (tree.directory / LOCK_NAME).exists()

    def test_an_interrupt_during_the_post_restores_the_attempt_count(self, tree, api, monkeypatch):
        class SoftLimit(Exception):
            pass

        def interrupted_post(client, *args, **kwargs):
            raise SoftLimit

        tree.add(1, 19)
        monkeypatch.setattr(ApiClient, "post", interrupted_post)

        summary = run(tree, api, interrupts=(SoftLimit,))

        assert ("interrupted", "SoftLimit") == (summary.outcome, summary.detail)
        assert State() == tree.state()
        assert names(1, 19) == tree.reports()
        assert [] == tree.failed()

    def test_a_lost_lock_stops_the_run_before_the_post(self, tree, api):
        tree.add(1, 28)
        foreign = Holder("elsewhere", 1, "f" * 32, 0.0, 4e9).to_json()

        def steal_lock(window_observations):
            (tree.directory / LOCK_NAME).write_bytes(foreign)
            return FakeAnalysis()(window_observations)

        summary = run(tree, api, steal_lock)

        assert "lock_lost" == summary.outcome
        assert [] == api.records()
        assert names(1, 28) == tree.reports()
        assert foreign == (tree.directory / LOCK_NAME).read_bytes()
        assert 1 == tree.state().attempt.count

    def test_an_io_error_while_reading_reports_ends_the_run_without_changes(self, tree, api, monkeypatch):
        tree.add(1, 28)
        real_read = window_module.read_report

        def failing_read(path, info=None):
            if path.name == name(12):
                raise OSError(5, "Input/output error", str(path))
            return real_read(path, info)

        monkeypatch.setattr(window_module, "read_report", failing_read)
        summary = run(tree, api)

        assert "io_error" == summary.outcome
        assert [] == api.records()
        assert names(1, 28) == tree.reports()
        assert State() == tree.state()
        assert not (tree.directory / LOCK_NAME).exists()

    def test_a_busy_installation_returns_at_once(self, tree, api):
        tree.add(1, 19)

        with LeaseLock(tree.directory, renew=False):
            summary = run(tree, api)

        assert "busy" == summary.outcome
        assert [] == api.records()
        assert names(1, 19) == tree.reports()
        assert not (tree.directory / STATE_NAME).exists()

    def test_a_corrupt_state_file_is_set_aside_and_the_run_goes_on(self, tree, api):
        tree.add(1, 19)
        (tree.directory / STATE_NAME).write_bytes(b"{broken")

        before = int(time.time())
        summary = run(tree, api)
        after = int(time.time())

        assert {"posted": 1} == summary.counts
        [aside] = tree.directory.glob(f"{STATE_NAME}.corrupt-*")
        assert before <= int(aside.name.rpartition("-")[2]) <= after
        assert b"{broken" == aside.read_bytes()

    def test_old_crash_leftovers_are_removed_and_young_ones_kept(self, tree, api):
        tree.add(1, 3)
        now = time.time()
        leftovers = [".tix-tmp-state-old", ".tix-processor.lock.stale-old", "failed-results/.tix-tmp-x-old"]
        (tree.directory / "failed-results").mkdir()
        for leftover in leftovers:
            (tree.directory / leftover).write_bytes(b"")
            os.utime(tree.directory / leftover, (now - 3601, now - 3601))
        (tree.directory / ".tix-tmp-state-young").write_bytes(b"")
        os.utime(tree.directory / ".tix-tmp-state-young", (now - 100, now - 100))

        run(tree, api)

        assert [] == [leftover for leftover in leftovers if (tree.directory / leftover).exists()]
        assert (tree.directory / ".tix-tmp-state-young").exists()


def make_bad_files(directory: Path) -> dict[str, str]:
    """One old unusable candidate per reason of reports spec §5.1, named to sort before every report."""
    good = json.loads((directory / name(1)).read_bytes())
    bad = {}

    def document(**changes) -> bytes:
        return json.dumps({**good, **changes}).encode()

    contents = {
        "empty": b"",
        "too_large": b" " * (1 << 20) + b"{}",
        "not_json": b"\xef\xbb\xbf{}",
        "schema": document(type="SHORT"),
        "bad_address": document(**{"from": "not an address"}),
        "bad_base64": document(message="@@@"),
        "bad_record_length": document(message="AAAA"),
        "no_records": document(message=""),
    }
    for index, (reason, content) in enumerate(contents.items()):
        path = directory / f"tix-report-1600000{index:03d}.json"
        path.write_bytes(content)
        bad[path.name] = reason
    (directory / "tix-report-1600000100.json").mkdir()
    bad["tix-report-1600000100.json"] = "not_regular_file"
    (directory / "tix-report-1600000200.json").symlink_to(directory / name(2))
    bad["tix-report-1600000200.json"] = "symlink"
    for entry in bad:
        os.utime(directory / entry, (T1, T1), follow_symlinks=False)
    return bad


class TestBadReports:
    def test_old_unusable_files_of_every_reason_are_moved_to_invalid_reports(self, tree, api, caplog):
        tree.add(1, 19)
        bad = make_bad_files(tree.directory)

        with caplog.at_level(logging.WARNING):
            summary = run(tree, api)

        assert sorted(bad) == tree.invalid()
        assert 0o750 == stat.S_IMODE((tree.directory / "invalid-reports").stat().st_mode)
        moved = {fields["name"]: fields["reason"] for fields in events(caplog, "unusable report moved")}
        assert bad == moved
        assert {f"invalid-reports/{bad_name}" for bad_name in bad} == {
            fields["moved_to"] for fields in events(caplog, "unusable report moved")
        }
        assert 10 == summary.invalid_reports == tree.state().counters.invalid_reports
        assert {"posted": 1} == summary.counts

    def test_a_taken_name_in_invalid_reports_gets_a_numbered_suffix(self, tree, api):
        tree.add(1, 3)
        bad = tree.directory / "tix-report-1600000000.json"
        for _ in range(3):
            bad.write_bytes(b"")
            os.utime(bad, (T1, T1))
            run(tree, api)

        assert [bad.name, bad.name + ".1", bad.name + ".2"] == tree.invalid()

    def test_a_young_file_stops_the_scan_until_it_is_old(self, tree, api):
        """Worked example (e): f15 empty and 5 s old, then 60 s old."""
        tree.add(1, 25)
        young = tree.directory / name(15)
        young.write_bytes(b"")
        os.utime(young, (time.time() - 5, time.time() - 5))

        first = run(tree, api)
        untouched = tree.reports()
        os.utime(young, (time.time() - 60, time.time() - 60))
        second = run(tree, api)

        assert () == first.windows
        assert names(1, 25) == untouched
        assert [name(15)] == tree.invalid()
        assert [(names(1, 14) + names(16, 20))[0]] == [w.first for w in second.windows]
        assert [name(20)] == [w.last for w in second.windows]

    def test_gap_and_ip_change_removals_are_logged_and_counted(self, tree, api, caplog):
        tree.add(1, 5)
        tree.add(6, 30, ip="198.51.100.7")

        with caplog.at_level(logging.INFO):
            summary = run(tree, api)

        assert 5 == summary.discarded_ip_change == tree.state().counters.discarded_ip_change
        [line] = events(caplog, "reports discarded")
        assert {"user": USER, "installation": INSTALLATION, "reason": "ip_change", "files": 5} == {
            key: line[key] for key in ("user", "installation", "reason", "files")
        }
        assert ",".join(names(1, 5)) == line["names"]
        assert (name(6), name(24)) == (summary.windows[0].first, summary.windows[0].last)


class TestLogLines:
    def test_a_window_is_one_logfmt_line_with_empty_values_for_none(self, tree, api, caplog):
        tree.add(1, 19)

        with caplog.at_level(logging.INFO):
            run(tree, api)

        [line] = [record.getMessage() for record in caplog.records if getattr(record, "event", None) == "window done"]
        event, fields = logfmt.parse(line)
        assert "window done" == event
        assert {"user": USER, "installation": INSTALLATION, "outcome": "posted", "reason": "", "asn": ""} == {
            key: fields[key] for key in ("user", "installation", "outcome", "reason", "asn")
        }
        assert (name(1), name(19), "19", IP, "200") == (
            fields["first"],
            fields["last"],
            fields["files"],
            fields["ip"],
            fields["status"],
        )

    def test_a_busy_installation_names_its_holder(self, tree, api, caplog):
        tree.add(1, 3)

        with caplog.at_level(logging.INFO), LeaseLock(tree.directory, renew=False):
            run(tree, api)

        [fields] = events(caplog, "installation busy")
        assert (USER, INSTALLATION) == (fields["user"], fields["installation"])
        assert f"pid={os.getpid()}" in fields["holder"]


class TestBudgetAndDryRun:
    def test_no_window_starts_once_the_budget_is_used(self, tree, api):
        """Each analysis takes 0.6 s of a 1 s budget: the second window starts at 0.6 s, the third never."""
        tree.add(1, 40)
        analysis = FakeAnalysis()

        def slow(window_observations):
            time.sleep(0.6)
            return analysis(window_observations)

        summary = run(tree, api, slow, task_budget_s=1)

        assert 2 == len(summary.windows)
        assert summary.budget_exhausted
        assert names(19, 40) == tree.reports()

    def test_a_worker_shutdown_stops_the_run_between_two_windows_and_the_next_run_goes_on(self, tree, api, caplog):
        """The shutdown comes while the first window is analysed: that window is finished (posted, recorded,
        disposed), no other starts, and the next run posts the rest: no window lost or posted twice."""
        tree.add(1, 40)
        analysis = FakeAnalysis()
        shutting_down = []

        def shutdown_during(window_observations):
            shutting_down.append(True)
            return analysis(window_observations)

        with caplog.at_level(logging.INFO, logger="processor.installation"):
            stopped = run(tree, api, shutdown_during, stop_requested=lambda: bool(shutting_down))
        state = tree.state()
        after_stop = tree.reports()
        rest = run(tree, api)

        assert ("done", 1, True) == (stopped.outcome, len(stopped.windows), stopped.budget_exhausted)
        assert 1 == len(events(caplog, "installation run stopped for shutdown"))
        assert (None, "posted") == (state.attempt, state.last_window.outcome)
        assert tuple(names(1, 9)) == state.last_window.dispose
        assert names(10, 40) == after_stop
        assert 2 == len(rest.windows)
        assert [T1 + 60 * k - 1 for k in (19, 28, 37)] == posted_timestamps(api)

    def test_a_worker_shutting_down_before_the_run_re_sends_nothing_and_starts_no_window(self, tree, api):
        tree.add(1, 40)
        api.set_behaviour(status=503)
        run(tree, api)
        api.set_behaviour(None)
        before = (tree.reports(), tree.failed())

        summary = run(tree, api, stop_requested=lambda: True)

        assert ("done", 0, 0) == (summary.outcome, summary.resent, len(summary.windows))
        assert before == (tree.reports(), tree.failed())
        assert [] == api.accepted()

    def test_dry_run_changes_nothing_and_posts_nothing(self, tree, api):
        tree.add(1, 40)
        tree.add(41, 45, ip="198.51.100.7")
        bad = tree.directory / "tix-report-1600000000.json"
        bad.write_bytes(b"")
        os.utime(bad, (T1, T1))
        before = sorted((p.name, p.stat().st_mtime) for p in tree.directory.iterdir())

        with mock.patch.object(window_module, "analyse", FakeAnalysis()):
            summary = dry_run_installation(config(tree), USER, INSTALLATION, Resolver(None))

        assert before == sorted((p.name, p.stat().st_mtime) for p in tree.directory.iterdir())
        assert [] == api.records()
        assert summary.dry_run
        assert {"dry_run": 3} == summary.counts
        assert [T1 + 60 * k - 1 for k in (19, 28, 37)] == [w.payload["timestamp"] for w in summary.windows]
        assert 1 == summary.invalid_reports
        assert 13 == summary.discarded_ip_change  # f28 … f40, left after window 3, when f41 changes the IP

    def test_dry_run_lists_a_window_started_three_times_without_analysing_it(self, tree):
        tree.add(1, 28)
        write_state(tree.directory, State().started(window_id(names(1, 19))).started(window_id(names(1, 19))))
        write_state(tree.directory, tree.state().started(window_id(names(1, 19))))
        state = (tree.directory / STATE_NAME).read_bytes()
        analysis = FakeAnalysis()

        with mock.patch.object(window_module, "analyse", analysis):
            summary = dry_run_installation(config(tree), USER, INSTALLATION, Resolver(None))

        assert [("not_analysable", "repeated_failure"), ("dry_run", None)] == [
            (window.outcome, window.reason) for window in summary.windows
        ]
        assert [T1 + 60 * 9] == analysis.calls  # the second window starts after the quarantined half, f10
        assert state == (tree.directory / STATE_NAME).read_bytes()

    def test_dry_run_leaves_a_corrupt_state_file_in_place(self, tree, caplog):
        tree.add(1, 19)
        (tree.directory / STATE_NAME).write_bytes(b"{broken")

        with caplog.at_level(logging.WARNING), mock.patch.object(window_module, "analyse", FakeAnalysis()):
            summary = dry_run_installation(config(tree), USER, INSTALLATION, Resolver(None))

        assert {"dry_run": 1} == summary.counts
        assert b"{broken" == (tree.directory / STATE_NAME).read_bytes()
        assert events(caplog, "state file corrupt, left in place")

    def test_dry_run_skips_what_the_recovery_would_remove(self, tree, api):
        tree.add(1, 19)
        run(tree, api)
        tree.add(1, 9)  # as if the disposal of the recorded window had not happened

        with mock.patch.object(window_module, "analyse", FakeAnalysis()):
            summary = dry_run_installation(config(tree), USER, INSTALLATION, Resolver(None))

        assert (9, ()) == (summary.recovered, summary.windows)
        assert names(1, 19) == tree.reports()


class TestValidation:
    @pytest.mark.parametrize(("user", "installation"), [("07", "12"), ("7", "+12"), ("x", "12"), ("7", "0")])
    def test_ids_that_are_not_canonical_decimals_are_refused(self, tree, api, user, installation):
        summary = run(tree, api, user=user, installation=installation)

        assert "invalid" == summary.outcome

    def test_a_symbolic_link_as_installation_directory_is_refused(self, tree, api):
        (tree.base / USER / "13").symlink_to(tree.directory)

        summary = run(tree, api, installation="13")

        assert "invalid" == summary.outcome
