"""Tests of processor.delivery.failed_results: backed-up results (service.md §6), real files, a real fake tix-api."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.delivery.failed_results import (
    check_results,
    delete_failed_result,
    ensure_failed_results_dir,
    failed_result_document,
    list_failed_results,
    load_failed_result,
    reject_failed_result,
    resend_failed_results,
    write_failed_result,
)
from processor.delivery.ip_to_as import AsInfo
from processor.delivery.payload import build_payload, encode_json
from processor.delivery.tixapi import ApiClient
from processor.errors import BadFailedResult
from tests.fake_api import Behaviour, FakeApi

USER, PASSWORD = "admin", "secret"


def results(timestamp: int = 1700001139, up_usage: float = 1.25) -> dict:
    return {
        "timestamp": timestamp,
        "upstream": {"usage": up_usage, "quality": 0.75, "hurst": {"wavelet": 0.81, "rs": 0.64612805}},
        "downstream": {"usage": 0.25, "quality": 1.0, "hurst": {"wavelet": 0.5, "rs": 0.55}},
    }


def results_with_queueing(timestamp: int = 1700001139, up: float | None = 0.0625, down: float | None = 0.875) -> dict:
    """``results()`` as the analysis gives them now, with each direction's ``usage_queueing``."""
    document = results(timestamp)
    document["upstream"]["usage_queueing"] = up
    document["downstream"]["usage_queueing"] = down
    return document


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def failed_dir(tmp_path: Path) -> Path:
    return ensure_failed_results_dir(tmp_path)


class TestContent:
    def test_keys_in_the_documented_order_with_unclamped_usage(self):
        data = encode_json(failed_result_document(results(), ip="200.40.1.2", asn=6057, as_owner="ANTEL, UY"))

        document = json.loads(data)
        assert list(document) == [
            "results",
            "ip",
            "asn",
            "asOwner",
            "usageEstimator",
            "upUsageQueueing",
            "downUsageQueueing",
        ]
        assert document["usageEstimator"] == "v2"
        assert list(document["results"]) == ["timestamp", "upstream", "downstream"]
        assert list(document["results"]["upstream"]) == ["usage", "quality", "hurst"]
        assert list(document["results"]["upstream"]["hurst"]) == ["wavelet", "rs"]
        assert document["results"]["upstream"]["usage"] == 1.25
        assert (document["ip"], document["asn"], document["asOwner"]) == ("200.40.1.2", 6057, "ANTEL, UY")
        assert data.startswith(b'{"results": {"timestamp": 1700001139, "upstream": {"usage": 1.25, ')

    def test_queueing_shares_are_kept_after_the_original_keys(self):
        data = encode_json(
            failed_result_document(results_with_queueing(down=None), ip="200.40.1.2", asn=None, as_owner=None)
        )

        document = json.loads(data)
        assert list(document["results"]["upstream"]) == ["usage", "quality", "hurst", "usage_queueing"]
        assert document["results"]["upstream"]["usage_queueing"] == 0.0625
        assert (document["upUsageQueueing"], document["downUsageQueueing"]) == (0.0625, None)
        assert document["results"]["downstream"]["usage_queueing"] is None


class TestDirectory:
    def test_is_created_with_mode_0750(self, tmp_path):
        directory = ensure_failed_results_dir(tmp_path)

        assert directory == tmp_path / "failed-results"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750

    def test_existing_directory_is_kept(self, tmp_path):
        (tmp_path / "failed-results").mkdir()
        (tmp_path / "failed-results" / "x").write_text("keep")

        ensure_failed_results_dir(tmp_path)

        assert (tmp_path / "failed-results" / "x").read_text() == "keep"


class TestWrite:
    def test_writes_the_file_named_after_the_timestamp_with_mode_0640(self, failed_dir):
        stored = write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None)

        assert stored.created is True
        assert stored.path == failed_dir / "failed-report-1700001139.json"
        assert stored.path.read_bytes() == encode_json(
            failed_result_document(results(), ip="200.40.1.2", asn=None, as_owner=None)
        )
        assert stat.S_IMODE(stored.path.stat().st_mode) == 0o640
        assert names(failed_dir) == ["failed-report-1700001139.json"]

    def test_same_window_again_writes_nothing(self, failed_dir):
        write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=6057, as_owner="ANTEL")

        again = write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=6057, as_owner="ANTEL")

        assert again.created is False
        assert names(failed_dir) == ["failed-report-1700001139.json"]

    def test_same_window_with_another_as_answer_writes_nothing(self, failed_dir):
        """The resolver may fail in one run and answer in the next; a second file would post the window twice."""
        write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=6057, as_owner="ANTEL")

        again = write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None)

        assert again.created is False
        assert names(failed_dir) == ["failed-report-1700001139.json"]

    def test_file_written_before_queueing_shares_existed_is_the_same_window(self, failed_dir):
        """After an upgrade the same window's result gains usage_queueing; a second file would post it twice."""
        write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None)

        again = write_failed_result(failed_dir, results_with_queueing(), ip="200.40.1.2", asn=None, as_owner=None)

        assert again.created is False
        assert names(failed_dir) == ["failed-report-1700001139.json"]

    def test_different_content_under_a_taken_name_gets_the_smallest_free_suffix(self, failed_dir):
        """S6: the original overwrote the file."""
        write_failed_result(failed_dir, results(up_usage=0.1), ip="200.40.1.2", asn=None, as_owner=None)
        (failed_dir / "failed-report-1700001139-2.json").write_bytes(b"other")

        first = write_failed_result(failed_dir, results(up_usage=0.2), ip="200.40.1.2", asn=None, as_owner=None)
        second = write_failed_result(failed_dir, results(up_usage=0.3), ip="200.40.1.2", asn=None, as_owner=None)

        assert first.path.name == "failed-report-1700001139-1.json"
        assert second.path.name == "failed-report-1700001139-3.json"
        assert json.loads((failed_dir / "failed-report-1700001139.json").read_bytes())["results"]["upstream"][
            "usage"
        ] == pytest.approx(0.1)

    def test_same_window_under_a_suffixed_name_is_recognised(self, failed_dir):
        write_failed_result(failed_dir, results(up_usage=0.1), ip="200.40.1.2", asn=None, as_owner=None)
        write_failed_result(failed_dir, results(up_usage=0.2), ip="200.40.1.2", asn=None, as_owner=None)

        again = write_failed_result(failed_dir, results(up_usage=0.2), ip="200.40.1.2", asn=None, as_owner=None)

        assert (again.path.name, again.created) == ("failed-report-1700001139-1.json", False)
        assert len(names(failed_dir)) == 2

    def test_fence_runs_before_the_file_is_created(self, failed_dir):
        class LockLost(Exception):
            pass

        def fence() -> None:
            raise LockLost

        with pytest.raises(LockLost):
            write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None, fence=fence)

        assert names(failed_dir) == []

    def test_write_failure_raises_and_leaves_nothing(self, tmp_path):
        """A failed-results path that cannot hold files (a file in its place) raises; nothing appears (F17)."""
        not_a_dir = tmp_path / "failed-results"
        not_a_dir.write_bytes(b"in the way")

        with pytest.raises(OSError):
            write_failed_result(not_a_dir, results(), ip="200.40.1.2", asn=None, as_owner=None)

        assert ["failed-results"] == [p.name for p in tmp_path.iterdir()]
        assert b"in the way" == not_a_dir.read_bytes()

    def test_write_failure_on_a_full_disk_raises_and_leaves_nothing(self, failed_dir, monkeypatch):
        """An injected ENOSPC at the write: no temporary file stays behind, the target does not appear (F17)."""
        import errno
        import types

        import processor.atomic

        def full_disk(fd: int, data) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        # Only processor.atomic sees the failing write; everything else keeps the real os module.
        failing_os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
        failing_os.write = full_disk
        monkeypatch.setattr(processor.atomic, "os", failing_os)

        with pytest.raises(OSError, match="No space"):
            write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None)

        assert names(failed_dir) == []


class TestList:
    def test_lists_matching_regular_files_oldest_first(self, failed_dir):
        for name in [
            "failed-report-20.json",
            "failed-report-10-2.json",
            "failed-report-10.json",
            "failed-report-10-1.json",
            "failed-report-9.json",
            ".tix-tmp-failed-result-abc",
            "failed-report-x.json",
            "notes.txt",
        ]:
            (failed_dir / name).write_text("{}")
        (failed_dir / "rejected").mkdir()
        (failed_dir / "rejected" / "failed-report-1.json").write_text("{}")
        os.symlink(failed_dir / "failed-report-9.json", failed_dir / "failed-report-5.json")
        (failed_dir / "failed-report-7.json").mkdir()

        listed = list_failed_results(failed_dir)

        assert [item.path.name for item in listed] == [
            "failed-report-9.json",
            "failed-report-10.json",
            "failed-report-10-1.json",
            "failed-report-10-2.json",
            "failed-report-20.json",
        ]
        assert [(item.timestamp, item.n) for item in listed][:3] == [(9, 0), (10, 0), (10, 1)]

    def test_missing_directory_lists_nothing(self, tmp_path):
        assert list_failed_results(tmp_path / "failed-results") == []


class TestLoad:
    def test_reads_a_file_written_by_the_processor(self, failed_dir):
        stored = write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=6057, as_owner="ANTEL")

        loaded = load_failed_result(stored.path)

        assert (loaded.ip, loaded.asn, loaded.as_owner, loaded.has_as) == ("200.40.1.2", 6057, "ANTEL", True)
        assert loaded.results == results()

    def test_reads_the_queueing_shares_back(self, failed_dir):
        stored = write_failed_result(
            failed_dir, results_with_queueing(up=None), ip="200.40.1.2", asn=None, as_owner=None
        )

        loaded = load_failed_result(stored.path)

        assert loaded.results == results_with_queueing(up=None)

    def test_reads_the_estimator_back_and_a_file_without_one_as_v2(self, failed_dir):
        """A file of the original, or of a version before ``usageEstimator``, held the original usage."""
        stored = write_failed_result(
            failed_dir, results_with_queueing(), ip="200.40.1.2", asn=None, as_owner=None, usage_estimator="queueing"
        )
        old = failed_dir / "failed-report-1.json"
        old.write_text(json.dumps({"results": results_with_queueing(), "ip": "200.40.1.2", "asn": None}))

        assert "queueing" == load_failed_result(stored.path).usage_estimator
        assert "v2" == load_failed_result(old).usage_estimator

    def test_file_of_the_original_has_no_as(self, failed_dir):
        path = failed_dir / "failed-report-1700001139.json"
        path.write_text(json.dumps({"results": results(), "ip": "200.40.1.2"}))

        loaded = load_failed_result(path)

        assert (loaded.has_as, loaded.asn, loaded.as_owner) == (False, None, None)

    def test_links_fifos_and_files_over_1_mib_are_unreadable_without_being_followed_or_waited_on(self, failed_dir):
        """reliability.md H1, H2: a FIFO opened without O_NONBLOCK would block the run forever."""
        target = write_failed_result(failed_dir, results(), ip="200.40.1.2", asn=None, as_owner=None).path
        os.symlink(target, failed_dir / "failed-report-1.json")
        os.mkfifo(failed_dir / "failed-report-2.json")
        (failed_dir / "failed-report-3.json").write_bytes(b" " * ((1 << 20) + 1))

        reasons = []
        for name in ("failed-report-1.json", "failed-report-2.json", "failed-report-3.json"):
            with pytest.raises(BadFailedResult) as caught:
                load_failed_result(failed_dir / name)
            reasons.append(caught.value.reason)

        assert ["unreadable"] * 3 == reasons

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            (b"", "not_json"),
            (b"{not json", "not_json"),
            (b"\xff\xfe", "not_json"),
            (b"[1, 2]", "not_json"),
            (b'{"ip": "200.40.1.2"}', "bad_results"),
            (json.dumps({"results": {**results(), "timestamp": "x"}, "ip": "1.2.3.4"}).encode(), "bad_results"),
            (json.dumps({"results": results()}).encode(), "bad_ip"),
            (json.dumps({"results": results(), "ip": 16909060}).encode(), "bad_ip"),
            (json.dumps({"results": results_with_queueing(down=2.0), "ip": "1.2.3.4"}).encode(), "bad_results"),
            (json.dumps({"results": results(), "ip": "1.2.3.4", "usageEstimator": "v3"}).encode(), "bad_estimator"),
            (json.dumps({"results": results(), "ip": "1.2.3.4", "usageEstimator": None}).encode(), "bad_estimator"),
        ],
    )
    def test_bad_files_are_refused_with_a_reason(self, failed_dir, content, reason):
        path = failed_dir / "failed-report-1.json"
        path.write_bytes(content)

        with pytest.raises(BadFailedResult) as caught:
            load_failed_result(path)

        assert caught.value.reason == reason


class TestCheckResults:
    """Results are checked once, where they enter from disk: the analysis's own go to the payload unchecked."""

    def test_queueing_shares_may_be_absent_null_or_in_zero_one(self):
        document = results_with_queueing(up=None, down=1)

        assert document == check_results(document)
        assert results() == check_results(results())

    @pytest.mark.parametrize(
        ("mutate", "fragment"),
        [
            (lambda r: r.pop("timestamp"), "timestamp"),
            (lambda r: r.update(timestamp="1700001139"), "timestamp"),
            (lambda r: r.update(timestamp=True), "timestamp"),
            (lambda r: r.pop("downstream"), "downstream"),
            (lambda r: r["upstream"].update(usage=None), "upstream.usage"),
            (lambda r: r["upstream"].update(quality=float("nan")), "upstream.quality"),
            (lambda r: r["downstream"]["hurst"].pop("rs"), "downstream.hurst.rs"),
            (lambda r: r["downstream"].update(hurst=[0.5, 0.5]), "downstream.hurst"),
            (lambda r: r["upstream"].update(usage_queueing=1.5), "upstream.usage_queueing"),
            (lambda r: r["downstream"].update(usage_queueing="0.5"), "downstream.usage_queueing"),
            (lambda r: r["downstream"].update(usage_queueing=float("nan")), "downstream.usage_queueing"),
        ],
    )
    def test_results_of_the_wrong_shape_are_refused(self, mutate, fragment):
        document = results()
        mutate(document)

        with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
            check_results(document)


class TestRejectAndDelete:
    def test_reject_moves_into_rejected_created_with_mode_0750(self, failed_dir):
        path = failed_dir / "failed-report-5.json"
        path.write_text("x")

        moved = reject_failed_result(path)

        assert moved == failed_dir / "rejected" / "failed-report-5.json"
        assert moved.read_text() == "x"
        assert not path.exists()
        assert stat.S_IMODE((failed_dir / "rejected").stat().st_mode) == 0o750

    def test_reject_never_overwrites_a_file_already_rejected(self, failed_dir):
        (failed_dir / "rejected").mkdir()
        (failed_dir / "rejected" / "failed-report-5.json").write_text("old")
        (failed_dir / "rejected" / "failed-report-5-1.json").write_text("old 1")
        path = failed_dir / "failed-report-5.json"
        path.write_text("new")

        moved = reject_failed_result(path)

        assert moved.name == "failed-report-5-2.json"
        assert (failed_dir / "rejected" / "failed-report-5.json").read_text() == "old"
        assert moved.read_text() == "new"

    def test_delete_is_fenced_and_tolerates_a_missing_file(self, failed_dir):
        path = failed_dir / "failed-report-5.json"
        path.write_text("x")
        calls = []

        delete_failed_result(path, fence=lambda: calls.append(1))
        delete_failed_result(path)

        assert not path.exists()
        assert calls == [1]


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with FakeApi(admin_user=USER, admin_password=PASSWORD) as api:
        yield api


def client_for(api: FakeApi, **kw) -> ApiClient:
    return ApiClient(api.base_url, user=USER, password=PASSWORD, timeout_s=5, sleep=lambda s: None, **kw)


class StaticResolver:
    def __init__(self, answer: AsInfo) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def resolve(self, ip: str) -> AsInfo:
        self.asked.append(ip)
        return self.answer


def resend(directory: Path, client, **kw):
    return resend_failed_results(directory, user_id="23", installation_id="41", client=client, **kw)


class TestResend:
    def test_resends_oldest_first_deletes_and_posts_clamped_payloads(self, failed_dir, fake_api, caplog):
        for timestamp in (300, 100, 200):
            write_failed_result(failed_dir, results(timestamp), ip="200.40.1.2", asn=6057, as_owner="ANTEL")

        with caplog.at_level(logging.INFO, logger="processor.delivery.failed_results"):
            summary = resend(failed_dir, client_for(fake_api))

        posted = [r["json"] for r in fake_api.accepted()]
        assert (summary.resent, summary.rejected, summary.remaining, summary.api_unusable) == (3, 0, 0, False)
        assert [p["timestamp"] for p in posted] == [100, 200, 300]
        assert posted[0]["upUsage"] == 1.0
        assert fake_api.records()[0]["body"] == encode_json(
            build_payload(results(100), ip="200.40.1.2", asn=6057, as_owner="ANTEL")
        ).decode("utf-8")
        assert names(failed_dir) == []
        assert sum(r.getMessage().startswith("failed result re-sent ") for r in caplog.records) == 3

    def test_file_of_the_original_is_resolved_before_sending(self, failed_dir, fake_api):
        (failed_dir / "failed-report-100.json").write_text(json.dumps({"results": results(100), "ip": "200.40.1.2"}))
        resolver = StaticResolver(AsInfo(6057, "ANTEL, UY"))

        resend(failed_dir, client_for(fake_api), resolver=resolver)

        (posted,) = [r["json"] for r in fake_api.accepted()]
        assert resolver.asked == ["200.40.1.2"]
        assert (posted["asn"], posted["asOwner"]) == (6057, "ANTEL, UY")

    def test_each_file_is_re_sent_under_the_estimator_it_was_written_with(self, failed_dir, fake_api):
        """Files of the original or of earlier versions have no ``usageEstimator`` and are re-sent as ``v2``."""
        for timestamp in (100, 200):
            write_failed_result(
                failed_dir,
                results_with_queueing(timestamp),
                ip="200.40.1.2",
                asn=None,
                as_owner=None,
                usage_estimator="queueing",
            )
        (failed_dir / "failed-report-300.json").write_text(json.dumps({"results": results(300), "ip": "200.40.1.2"}))
        old = {"results": results_with_queueing(400), "ip": "200.40.1.2", "asn": None, "asOwner": None}
        (failed_dir / "failed-report-400.json").write_text(json.dumps(old))
        delivered: list[int] = []

        summary = resend(failed_dir, client_for(fake_api), on_resent=delivered.append)

        posted = [r["json"] for r in fake_api.accepted()]
        assert summary.resent == 4
        assert [100, 200, 300, 400] == delivered
        assert [p["usageEstimator"] for p in posted] == ["queueing", "queueing", "v2", "v2"]
        assert [(p["upUsage"], p["downUsage"]) for p in posted] == [
            (0.0625, 0.875),
            (0.0625, 0.875),
            (1.0, 0.25),
            (1.0, 0.25),
        ]
        assert [(p["upUsageQueueing"], p["downUsageQueueing"]) for p in posted] == [
            (0.0625, 0.875),
            (0.0625, 0.875),
            (None, None),
            (0.0625, 0.875),
        ]

    def test_default_estimator_posts_the_original_usage_beside_the_queueing_shares(self, failed_dir, fake_api):
        write_failed_result(failed_dir, results_with_queueing(100), ip="200.40.1.2", asn=None, as_owner=None)

        resend(failed_dir, client_for(fake_api))

        (posted,) = [r["json"] for r in fake_api.accepted()]
        assert (posted["upUsage"], posted["downUsage"], posted["usageEstimator"]) == (1.0, 0.25, "v2")
        assert (posted["upUsageQueueing"], posted["downUsageQueueing"]) == (0.0625, 0.875)

    def test_stored_as_is_reused_without_resolving(self, failed_dir, fake_api):
        write_failed_result(failed_dir, results(100), ip="200.40.1.2", asn=None, as_owner=None)
        resolver = StaticResolver(AsInfo(1, "x"))

        resend(failed_dir, client_for(fake_api), resolver=resolver)

        assert resolver.asked == []
        assert fake_api.accepted()[0]["json"]["asn"] is None

    def test_content_rejection_moves_the_file_and_continues(self, failed_dir, fake_api, caplog):
        for timestamp in (100, 200):
            write_failed_result(failed_dir, results(timestamp), ip="200.40.1.2", asn=None, as_owner=None)
        fake_api.script(Behaviour(status=422))

        with caplog.at_level(logging.WARNING, logger="processor.delivery.failed_results"):
            summary = resend(failed_dir, client_for(fake_api))

        assert (summary.resent, summary.rejected, summary.api_unusable) == (1, 1, False)
        assert names(failed_dir) == ["rejected"]
        assert names(failed_dir / "rejected") == ["failed-report-100.json"]
        mine = [r for r in caplog.records if r.name == "processor.delivery.failed_results"]
        assert [r.getMessage().split(" user=")[0] for r in mine] == ["failed result rejected"]

    def test_unreadable_file_is_rejected_without_a_request(self, failed_dir, fake_api):
        (failed_dir / "failed-report-100.json").write_text("{broken")
        write_failed_result(failed_dir, results(200), ip="200.40.1.2", asn=None, as_owner=None)

        summary = resend(failed_dir, client_for(fake_api))

        assert (summary.resent, summary.rejected) == (1, 1)
        assert [r["json"]["timestamp"] for r in fake_api.records()] == [200]
        assert names(failed_dir / "rejected") == ["failed-report-100.json"]

    @pytest.mark.parametrize(
        ("behaviour", "tried"),
        [(Behaviour(status=503), {100, 200}), (Behaviour(status=401), {100}), (Behaviour(action="reset"), {100})],
    )
    def test_api_failure_keeps_the_file_and_stops(self, failed_dir, fake_api, behaviour, tried):
        """A 5xx of one file lets the pass try the next (H9): a second 5xx in a row is an outage."""
        for timestamp in (100, 200):
            write_failed_result(failed_dir, results(timestamp), ip="200.40.1.2", asn=None, as_owner=None)
        fake_api.set_behaviour(behaviour)

        summary = resend(failed_dir, client_for(fake_api))

        assert (summary.resent, summary.remaining, summary.api_unusable) == (0, 2, True)
        assert summary.failure is not None
        assert {r["json"]["timestamp"] for r in fake_api.records()} == tried
        assert names(failed_dir) == ["failed-report-100.json", "failed-report-200.json"]

    def test_a_result_refused_alone_with_a_5xx_is_kept_and_the_next_one_sent(self, failed_dir, fake_api):
        """H9: the oldest result tix-api cannot take no longer blocks the queue; the run strikes it."""
        for timestamp in (100, 200, 300):
            write_failed_result(failed_dir, results(timestamp), ip="200.40.1.2", asn=None, as_owner=None)
        fake_api.script(Behaviour(status=500), Behaviour(status=500), Behaviour(status=500))

        summary = resend(failed_dir, client_for(fake_api))

        assert (summary.resent, summary.remaining, summary.api_unusable) == (2, 1, False)
        assert [path.name for path in summary.refused] == ["failed-report-100.json"]
        assert names(failed_dir) == ["failed-report-100.json"]

    @pytest.mark.parametrize(
        ("api_up", "tried", "refused"), [(True, [100, 200, 300], [100, 200, 300]), (False, [100, 200], [100])]
    )
    def test_while_tix_api_is_known_up_every_5xx_refuses_one_result_and_the_pass_goes_on(
        self, failed_dir, fake_api, api_up, tried, refused
    ):
        """
        H9, an IPv6 client: tix-api answers 500 to every POST of the installation while it serves others. Not known
        up, a second 5xx in a row is an outage and stops the pass.
        """
        for timestamp in (100, 200, 300):
            write_failed_result(failed_dir, results(timestamp), ip="2001:db8::45", asn=None, as_owner=None)
        fake_api.set_behaviour(status=500, installation="23/41")

        summary = resend(failed_dir, client_for(fake_api), api_up=lambda: api_up)

        assert tried == sorted({r["json"]["timestamp"] for r in fake_api.records()})
        assert (summary.remaining, summary.api_unusable) == (3, not api_up)
        assert [path.name for path in summary.refused] == [f"failed-report-{t}.json" for t in refused]
        assert names(failed_dir) == [f"failed-report-{t}.json" for t in (100, 200, 300)]

    def test_budget_stops_before_the_next_file(self, failed_dir, fake_api):
        for timestamp in (100, 200, 300):
            write_failed_result(failed_dir, results(timestamp), ip="200.40.1.2", asn=None, as_owner=None)
        allowed = iter([True, False])

        summary = resend(failed_dir, client_for(fake_api), should_continue=lambda: next(allowed))

        assert (summary.resent, summary.remaining, summary.stopped_by_budget) == (1, 2, True)
        assert names(failed_dir) == ["failed-report-200.json", "failed-report-300.json"]

    def test_lost_lock_stops_before_any_side_effect(self, failed_dir, fake_api):
        write_failed_result(failed_dir, results(100), ip="200.40.1.2", asn=None, as_owner=None)

        class LockLost(Exception):
            pass

        def fence() -> None:
            raise LockLost

        with pytest.raises(LockLost):
            resend(failed_dir, client_for(fake_api), fence=fence)

        assert fake_api.records() == []
        assert names(failed_dir) == ["failed-report-100.json"]

    def test_without_credentials_nothing_is_sent(self, failed_dir, fake_api):
        write_failed_result(failed_dir, results(100), ip="200.40.1.2", asn=None, as_owner=None)
        client = ApiClient(fake_api.base_url, user=None, password=None, timeout_s=5)

        summary = resend(failed_dir, client)

        assert (summary.remaining, summary.api_unusable) == (1, True)
        assert fake_api.records() == []

    def test_empty_directory_does_nothing(self, failed_dir, fake_api):
        summary = resend(failed_dir, client_for(fake_api))

        assert (summary.resent, summary.rejected, summary.remaining, summary.api_unusable) == (0, 0, 0, False)
