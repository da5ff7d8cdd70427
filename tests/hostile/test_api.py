"""
Hostile answers at the tix-api address, through real one-shot cycles (reliability spec §6: H3, H9; service spec §5.3).

The server is :class:`tests.hostile.servers.HostileApi`, on plain sockets, so it can trickle even the status line
and the headers, or the fake tix-api of :mod:`tests.fake_api` where one installation's POSTs fail.
``TIX_API_TIMEOUT`` is 2 s in every cycle.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from processor.cli import EXIT_BACKED_UP, EXIT_OK
from processor.delivery.strikes import strikes_of
from processor.delivery.tixapi import ApiClient
from processor.errors import ApiUnavailable
from tests.hostile.rig import failed_result
from tests.hostile.servers import Answer, HostileApi

#: ``TIX_API_TIMEOUT`` of the cycles, seconds.
TIMEOUT_S = 2.0

#: Allowance for starting the interpreter and importing numpy, scipy and requests, seconds.
STARTUP_S = 8.0

#: What a hostile answer body would like to put into the operator's log.
FORGED = "\n2031-01-01 00:00:00,000 ERROR processor: lock lost user=9 installation=9 \x1b[2J"


def backed_up(rig) -> dict[str, int]:
    """Failed-results files per installation (not their strikes sidecars, not ``rejected/``)."""
    return {
        f"{user}/{user}": len(list((rig.installation(user) / "failed-results").glob("failed-report-*.json")))
        for user in ("1", "2", "3")
    }


class TestAnswerDeadline:
    """H3: one attempt lasts at most TIX_API_TIMEOUT from connect to the last byte of the answer."""

    def test_an_answer_trickled_byte_by_byte_is_cut_at_the_deadline(self, rig):
        """About 100 bytes at 0.3 s each: 30 s per POST without the deadline, 90 s for the cycle."""
        with HostileApi(lambda request: Answer(200, b"{}", trickle_interval_s=0.3)) as api:
            cycle = rig.process(api.port, env={"TIX_API_TIMEOUT": str(TIMEOUT_S)})

        failures = cycle.events("tix-api post failed")
        assert ["read_timeout"] * 3 == [line.fields["reason"] for line in failures], cycle.stderr
        assert all(float(line.fields["elapsed_s"]) <= TIMEOUT_S + 0.5 for line in failures)
        assert 3 == len(api.requests())  # a read timeout is not retried: tix-api may have stored the measure
        assert cycle.elapsed_s < STARTUP_S + 3 * (TIMEOUT_S + 0.5)
        assert {"1/1": 1, "2/2": 1, "3/3": 1} == backed_up(rig)
        rig.assert_outside_untouched()

    def test_a_success_with_a_4_gib_body_is_read_no_further_than_64_kib(self, rig):
        """The status decides; the window is posted once (it was POSTed three times, then consumed as a failure)."""
        with HostileApi(lambda request: Answer(200, b"{}", filler_bytes=4 << 30)) as api:
            cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert {"posted": 3} == cycle.summary["windows"]
        assert 3 == len(api.requests())
        assert {"1/1": 0, "2/2": 0, "3/3": 0} == backed_up(rig)
        assert cycle.max_rss_kib < 512 * 1024  # far below the 4 GiB body
        assert cycle.elapsed_s < STARTUP_S + 3 * TIMEOUT_S

    @pytest.mark.parametrize(("budget_left_s", "attempts"), [(0.0, 1), (60.0, 3)])
    def test_no_retry_starts_once_the_run_budget_is_used(self, budget_left_s, attempts):
        """H3: a run ends within its budget plus one attempt's deadline, not plus three attempts and their waits."""
        with HostileApi(lambda request: Answer(503, b"busy")) as api:
            client = ApiClient(f"http://127.0.0.1:{api.port}", user="admin", password="secret", timeout_s=TIMEOUT_S,
                               backoff_s=(0.1, 0.1), jitter_s=0.0)  # fmt: skip
            with pytest.raises(ApiUnavailable):
                client.post("1", "1", {"timestamp": 1}, retry_until=time.monotonic() + budget_left_s)

        assert attempts == len(api.requests())


class TestServerErrors:
    def test_each_5xx_warning_carries_the_first_200_characters_of_the_answer_escaped(self, rig):
        """H9: the operator sees why tix-api refused (``Could not calculate ipToAs``), on one line."""
        body = "Could not calculate ipToAs" + FORGED + "x" * 1000
        with HostileApi(lambda request: Answer(500, body.encode())) as api:
            cycle = rig.process(api.port)

        failures = cycle.events("tix-api post failed")  # every line parses: the body forged none
        assert 3 == len(failures), cycle.stderr
        assert all(body[:200] == line.fields["answer"] for line in failures)
        assert 9 == len(api.requests())  # 3 attempts per POST, one POST per run: the API is then unusable
        assert {"1/1": 1, "2/2": 1, "3/3": 1} == backed_up(rig)


class TestResultRefusedWhileTheApiIsUp:
    """H9: a result tix-api refuses with a 5xx while it accepts the others is retired after 3 strikes in 3 runs."""

    POISON = 1_600_000_000  #: result timestamp of the result tix-api cannot take (e.g. an IP its AS helper lacks)

    def refuse_poison(self, request):
        if isinstance(request.json, dict) and request.json.get("timestamp") == self.POISON:
            return Answer(500, b"Could not calculate ipToAs")
        return Answer(200, b"{}")

    def plant(self, rig, timestamp: int) -> None:
        results = rig.installation("1") / "failed-results"
        results.mkdir(mode=0o750, exist_ok=True)
        (results / f"failed-report-{timestamp}.json").write_text(failed_result(timestamp))

    def poison_where(self, rig) -> str:
        directory = rig.installation("1") / "failed-results"
        for where, folder in (("rejected", directory / "rejected"), ("failed-results", directory)):
            for path in folder.glob("failed-report-*.json") if folder.is_dir() else ():
                if json.loads(path.read_text())["results"]["timestamp"] == self.POISON:
                    return where
        return "nowhere"

    def test_three_strikes_in_three_runs_move_it_to_rejected_with_an_error(self, rig):
        """The oldest result blocked the queue: every run re-sent it and stopped; failed-results grew for ever."""
        self.plant(rig, self.POISON)
        where, errors = [], []
        with HostileApi(self.refuse_poison) as api:
            for run in range(3):
                self.plant(rig, self.POISON + 1 + run)  # another result the same run delivers
                cycle = rig.process(api.port)
                where.append(self.poison_where(rig))
                errors += [line for line in cycle.log() if line.level == "ERROR"]

        assert ["failed-results", "failed-results", "rejected"] == where
        assert ["refused_while_api_up"] == [line.fields.get("reason") for line in errors]
        assert {self.POISON + 1, self.POISON + 2, self.POISON + 3} <= {r.json["timestamp"] for r in api.stored()}


class TestAnInstallationWhosePostsAllFail:
    """
    H9 as tix-api fails for real: an IPv6 client, or an IP its AS helper cannot resolve, gets a 500 on every POST
    of its installation while the others are served. Its own runs never deliver anything; a 2xx of the same process
    within the last processing period (an installation served before it in the cycle) shows tix-api up.
    """

    NEW = 1_600_000_000  #: result timestamps of the windows backed up in later cycles are NEW + cycle

    def plant(self, rig, user: str, timestamp: int, ip: str = "203.0.113.45") -> None:
        """The backed-up result of a new window of ``<user>/<user>``."""
        results = rig.installation(user) / "failed-results"
        results.mkdir(mode=0o750, exist_ok=True)
        (results / f"failed-report-{timestamp}.json").write_text(failed_result(timestamp, ip))

    def test_its_failed_results_stay_bounded_and_end_in_rejected_with_the_reason(self, rig, api):
        """Every run backed one more result up and re-sent them all: failed-results/ grew without bound."""
        api.set_behaviour(status=500, installation="2/2")
        held, errors = [], []
        for cycle_number in range(5):
            for user in ("1", "2", "3") if cycle_number else ():
                self.plant(rig, user, self.NEW + cycle_number, "2001:db8::45" if user == "2" else "203.0.113.45")
            cycle = rig.process(api.port)
            assert EXIT_BACKED_UP == cycle.returncode, cycle.stderr
            held.append(backed_up(rig)["2/2"])
            errors += [line for line in cycle.log() if line.level == "ERROR"]

        directory = rig.installation("2") / "failed-results"
        assert [1, 2, 3, 2, 2] == held  # the first window's result, then one more per cycle, each out after 3 strikes
        assert 3 == len(list((directory / "rejected").glob("failed-report-*.json")))
        assert ["refused_while_api_up"] * 3 == [line.fields["reason"] for line in errors]
        assert [2, 1] == [strikes_of(path) for path in sorted(directory.glob("failed-report-*.json"))]
        accepted = sorted((r["user_id"], r["json"]["timestamp"]) for r in api.accepted())
        assert 2 * 5 == len(accepted) and {"1", "3"} == {user for user, _ in accepted}  # the others lose nothing

    def test_an_outage_of_the_whole_api_over_five_cycles_adds_no_strike_and_loses_nothing(self, rig, api):
        """The same 500 for everyone: no 2xx in the run nor in the period, so it is no refusal of one result."""
        for user in ("2", "3"):
            shutil.rmtree(rig.base / user)  # one installation: each failed POST costs 3 attempts and 3 s of waits
        api.set_behaviour(status=500)
        for cycle_number in range(5):
            if cycle_number:
                self.plant(rig, "1", self.NEW + cycle_number)
            cycle = rig.process(api.port)
            assert EXIT_BACKED_UP == cycle.returncode, cycle.stderr
        directory = rig.installation("1") / "failed-results"
        kept = sorted(path.name for path in directory.iterdir())
        api.set_behaviour(None)
        back = rig.process(api.port)

        assert 5 == len(kept) and all(name.startswith("failed-report-") for name in kept), kept  # no strike, none out
        assert EXIT_OK == back.returncode, back.stderr
        posted = {r["json"]["timestamp"] for r in api.accepted()}
        assert 5 == len(posted) and {self.NEW + k for k in range(1, 5)} <= posted
        assert [] == list(directory.iterdir())
