"""
What a one-shot cycle tells a cron job (reliability spec §6: H7, H8), through real cycles over hostile trees.

``python -m processor process`` exits 0 only when every installation run ended normally and every analysed window
was delivered (or it was a dry run); otherwise with the documented status of :mod:`processor.cli`, which the
summary line names.
"""

from __future__ import annotations

import logging

import pytest

from processor import cli
from processor.cli import EXIT_BACKED_UP, EXIT_FAILED, EXIT_OK, EXIT_UNLISTABLE
from tests.hostile.servers import Answer, HostileApi
from tests.hostile.test_bookkeeping import closed_port
from tests.privileges import without_dac_prefix


class TestExitStatus:
    def test_every_window_posted_is_0(self, rig, api):
        cycle = rig.process(api.port)

        assert EXIT_OK == cycle.returncode, cycle.stderr
        assert "ok" == cycle.summary["exit"]

    def test_a_dry_run_is_0_even_with_tix_api_down(self, rig):
        cycle = rig.process(closed_port(), env={"TIX_API_USER": ""})

        assert EXIT_OK == cycle.returncode, cycle.stderr
        assert {"dry_run": 3} == cycle.summary["windows"]

    def test_tix_api_down_for_the_whole_cycle_is_backed_up(self, rig):
        """It exited 0, and a cron job could not tell."""
        cycle = rig.process(closed_port())

        assert EXIT_BACKED_UP == cycle.returncode, cycle.stderr
        assert ("backed_up", 3) == (cycle.summary["exit"], cycle.summary["windows"]["backed_up"])

    def test_credentials_refused_is_backed_up(self, rig):
        with HostileApi(lambda request: Answer(401, b"")) as refusing:
            cycle = rig.process(refusing.port)

        assert EXIT_BACKED_UP == cycle.returncode, cycle.stderr

    def test_failed_results_left_unsent_by_an_outage_are_backed_up(self, rig, api):
        """No new window, but the re-send met a dead API: the results are still not delivered."""
        rig.process(closed_port())

        again = rig.process(closed_port())

        assert {} == again.summary["windows"]
        assert EXIT_BACKED_UP == again.returncode, again.stderr

    def test_a_reports_base_nobody_may_list_is_its_own_status(self, rig, api):
        """It exited 0 with 'installations: 0'. Run without CAP_DAC_OVERRIDE: root lists anything."""
        rig.base.chmod(0)

        cycle = rig.process(api.port, prefix=without_dac_prefix())

        rig.base.chmod(0o755)
        assert EXIT_UNLISTABLE == cycle.returncode, cycle.stderr
        assert "base_unlistable" == cycle.summary["exit"]

    def test_an_installation_the_run_cannot_write_to_is_a_failed_run_and_the_others_are_served(self, rig, api):
        """The lock cannot be created: the run fails, the cycle goes on."""
        rig.installation("1").chmod(0o550)

        cycle = rig.process(api.port, prefix=without_dac_prefix())

        rig.installation("1").chmod(0o750)
        assert EXIT_FAILED == cycle.returncode, cycle.stderr
        assert ("run_failed", 1) == (cycle.summary["exit"], cycle.summary["failed_runs"])
        assert ["2/2", "3/3"] == sorted(f"{r['user_id']}/{r['installation_id']}" for r in api.accepted())

    def test_a_failed_run_outranks_backed_up_windows(self, rig):
        rig.installation("1").chmod(0o550)

        cycle = rig.process(closed_port(), prefix=without_dac_prefix())

        rig.installation("1").chmod(0o750)
        assert EXIT_FAILED == cycle.returncode, cycle.stderr

    def test_the_statuses_are_documented_in_the_help(self, capsys):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["process", "--help"])
        text = " ".join(capsys.readouterr().out.split())

        for status in (EXIT_OK, EXIT_FAILED, EXIT_BACKED_UP, EXIT_UNLISTABLE):
            assert f"{status} " in text
        assert "backed up" in text and "cannot be listed" in text


def test_an_unexpected_exception_in_one_run_is_a_failed_run_and_the_cycle_goes_on(rig, api, monkeypatch, caplog,
                                                                                 capsys):  # fmt: skip
    """H7, in this process: no hostile tree is known to raise one, so the analysis of installation 2/2 does."""
    from processor.installation import window

    real = window.analyse
    analysed = []

    def analyse(observations, *args, **kwargs):
        analysed.append(len(analysed))
        if len(analysed) == 2:
            raise ZeroDivisionError("an unexpected exception in the analysis")
        return real(observations, *args, **kwargs)

    monkeypatch.setattr(window, "analyse", analyse)
    env = {"TIX_REPORTS_BASE_PATH": str(rig.base), "TIX_API_HOST": "127.0.0.1", "TIX_API_PORT": str(api.port),
           "TIX_API_USER": "admin", "TIX_API_PASSWORD": "secret"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with caplog.at_level(logging.ERROR):
        status = cli.main(["process"])

    assert EXIT_FAILED == status
    failed = [record for record in caplog.records if record.exc_info is not None]
    assert 1 == len(failed)
    assert ZeroDivisionError is failed[0].exc_info[0]
    assert ["1/1", "3/3"] == sorted(f"{r['user_id']}/{r['installation_id']}" for r in api.accepted())
