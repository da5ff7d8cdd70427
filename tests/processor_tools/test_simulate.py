"""The synthetic report generator: layout, determinism, realism and the ground truth it returns."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import itertools
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from processor.observations import OBSERVATION_DTYPE, SHORT
from processor.reports.files import parse_address, read_report, report_candidates
from processor.reports.records import window_observations
from processor_tools import simulate
from processor_tools.calibration.batches import plan_batches
from processor_tools.calibration.description import load_description
from processor_tools.calibration.netusage import read_network_usage
from processor_tools.calibration.table import calibrate
from processor_tools.simulate import (
    DAY_NS,
    DEFAULT_START_S,
    draw_address,
    draw_profile,
    simulate_installation,
    simulate_tree,
    split_into_reports,
)
from processor_tools.simulate.experiment import write_calibration_experiment

#: 2023-11-15 00:00:00 UTC, the first UTC midnight after DEFAULT_START_S.
UTC_MIDNIGHT_S = 1_700_006_400


def tree_bytes(base: Path) -> dict[str, bytes]:
    return {str(path.relative_to(base)): path.read_bytes() for path in sorted(base.rglob("*")) if path.is_file()}


def wraps(values: np.ndarray) -> int:
    """Number of drops by about a day in a raw ns-of-day sequence."""
    steps = np.diff(values.astype(np.int64))
    return int(np.count_nonzero(np.abs(steps + DAY_NS) < DAY_NS // 4))


class TestSimulateTree:
    def test_same_seed_gives_a_byte_identical_tree(self, tmp_path):
        first = simulate_tree(tmp_path / "a", installations=5, minutes=6, seed=11)
        second = simulate_tree(tmp_path / "b", installations=5, minutes=6, seed=11)

        assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
        assert (first.files, first.observations) == (second.files, second.observations)

    def test_another_seed_gives_another_tree(self, tmp_path):
        simulate_tree(tmp_path / "a", installations=3, minutes=3, seed=1)
        simulate_tree(tmp_path / "b", installations=3, minutes=3, seed=2)

        assert tree_bytes(tmp_path / "a") != tree_bytes(tmp_path / "b")

    def test_tree_has_condenser_layout_and_readable_reports(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=7, minutes=10, seed=3)

        installation_ids = []
        for detail in summary.detail:
            assert detail.directory == tmp_path / str(detail.user_id) / str(detail.installation_id)
            assert 0o750 == stat.S_IMODE(detail.directory.stat().st_mode)
            assert [path.name for path in detail.files] == report_candidates(detail.directory)
            for path in detail.files:
                report = read_report(path)
                assert re.fullmatch(r"tix-report-[0-9]{10}\.json", path.name)
                assert f"tix-report-{report.first_ts}.json" == path.name
                assert 1 <= report.count <= 63
                assert (detail.user_id, detail.installation_id) == (report.user_id, report.installation_id)
                assert parse_address(detail.addresses[0]) == report.ip
                assert np.all(SHORT == report.observations["type"])
                assert np.all(32 == report.observations["size"])
            installation_ids.append(detail.installation_id)
        assert list(range(1, 8)) == installation_ids
        assert summary.files == sum(len(d.files) for d in summary.detail)
        assert summary.users == len({d.user_id for d in summary.detail})

    def test_reports_hold_about_a_minute_of_probes(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=4, minutes=20, seed=5)

        counts = [read_report(path).count for d in summary.detail for path in d.files[:-1]]
        assert 55 <= np.median(counts) <= 63
        starts = np.diff([read_report(path).first_ts for path in summary.detail[0].files])
        assert np.all((starts >= 55) & (starts <= 70))

    def test_files_look_finished_to_the_processor(self, tmp_path):
        """Every mtime is older than the 60 s young-file rule: the true time the packet was sent."""
        summary = simulate_tree(tmp_path, installations=2, minutes=5, seed=4, keep_truth=True)

        now = time.time()
        for detail in summary.detail:
            assert detail.truth is not None
            run_start_s = detail.truth.start_ns / 1e9
            mtimes = [path.stat().st_mtime for path in detail.files]
            assert all(now - mtime > 60 for mtime in mtimes)
            assert all(run_start_s < mtime < run_start_s + 5 * 60 + 10 for mtime in mtimes)
            assert mtimes == sorted(mtimes)

    def test_start_near_now_still_gives_old_mtimes(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=1, minutes=3, seed=4, start_s=int(time.time()))

        assert all(time.time() - path.stat().st_mtime > 60 for path in summary.detail[0].files)

    def test_ip_change_option_switches_address_once_mid_run(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=3, minutes=15, seed=8, ip_change_share=1.0)

        for detail in summary.detail:
            ips = [read_report(path).ip for path in detail.files]
            assert 2 == len(detail.addresses)
            changes = [i for i in range(1, len(ips)) if ips[i] != ips[i - 1]]
            assert len(changes) <= 1  # two draws may give the same address, rarely
            assert ips[0] == parse_address(detail.addresses[0])

    def test_gap_option_leaves_more_than_300_s_without_reports(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=3, minutes=25, seed=9, gap_share=1.0, keep_truth=True)

        for detail in summary.detail:
            first_ts = [read_report(path).first_ts for path in detail.files]
            assert max(np.diff(first_ts)) > 300
            assert detail.truth is not None and detail.truth.profile.offline is not None

    def test_defaults_leave_ip_and_gap_rules_unexercised(self, tmp_path):
        summary = simulate_tree(tmp_path, installations=6, minutes=12, seed=10)

        for detail in summary.detail:
            assert 1 == len(detail.addresses)
            assert max(np.diff([read_report(path).first_ts for path in detail.files])) <= 300


class TestSimulateInstallation:
    def test_one_probe_a_second_minus_losses(self):
        records, truth = simulate_installation(np.random.default_rng(1), minutes=30)

        assert OBSERVATION_DTYPE == records.dtype
        assert 1800 == truth.lost.size
        assert 1800 - np.count_nonzero(truth.lost) == records.size
        assert np.all(np.diff(records["ts"]) >= 0)
        assert 0.005 <= truth.loss_rate <= 0.08

    @pytest.mark.parametrize("seed", range(6))
    def test_loss_rate_stays_realistic(self, seed):
        _, truth = simulate_installation(np.random.default_rng([2, seed]), minutes=25)

        assert 0.005 <= truth.loss_rate <= 0.10

    def test_rtt_is_between_10_and_300_ms_plus_queueing(self):
        records, truth = simulate_installation(np.random.default_rng(3), minutes=10, schedule="idle")

        rtt_ns = (records["t4"] - records["t1"]) - (records["t3"] - records["t2"])
        base_ns = truth.profile.base_rtt_ns
        assert 10e6 <= base_ns <= 300e6
        assert np.all(rtt_ns >= base_ns - 2e6)  # millisecond clocks truncate
        assert np.median(rtt_ns) < base_ns + 5e6

    def test_records_carry_the_true_clock_offset_and_delays(self):
        """Modulo a day, t1 − t2 = offset − up and t4 − t3 = offset + down, to the clock resolution."""
        rng = np.random.default_rng(4)
        records, truth = simulate_installation(rng, minutes=20)

        probe = truth.probe_index
        send = truth.send_rel_ns[probe]
        offset_send = truth.clock_offset_ns(send)
        offset_receive = truth.clock_offset_ns(send + truth.up_ns[probe] + truth.down_ns[probe])
        up_error = (records["t1"] - records["t2"]) - (offset_send - truth.up_ns[probe])
        down_error = (records["t4"] - records["t3"]) - (offset_receive + truth.down_ns[probe])
        resolution = truth.profile.client.resolution_ns + 1e6  # truncation + server processing
        for error in (up_error, down_error):
            folded = (error + DAY_NS / 2) % DAY_NS - DAY_NS / 2
            assert np.all(np.abs(folded) <= resolution)

    def test_ground_truth_exposes_skew_schedule_and_queueing(self):
        _, truth = simulate_installation(np.random.default_rng(5), minutes=40)

        assert dataclasses.is_dataclass(truth)
        with pytest.raises(dataclasses.FrozenInstanceError):
            truth.start_ns = 0  # type: ignore[misc]
        assert pytest.approx(truth.profile.client.skew_ppm - truth.profile.server.skew_ppm) == truth.relative_skew_ppm
        drift = truth.clock_offset_ns(1e12) - truth.clock_offset_ns(0.0)
        assert pytest.approx(truth.relative_skew_ppm * 1e6, rel=1e-9) == drift
        assert 0.0 == truth.schedule[0].start_s
        assert 2400.0 == truth.schedule[-1].end_s
        for before, after in itertools.pairwise(truth.schedule):
            assert before.end_s == after.start_s
        assert truth.queue_down_ns.shape == truth.up_ns.shape == truth.lost.shape
        assert np.all(truth.queue_down_ns >= 0) and np.all(truth.queue_up_ns >= 0)
        assert np.all(truth.down_ns >= truth.profile.base_down_ns + truth.queue_down_ns)

    def test_queueing_follows_the_schedule(self):
        _, idle = simulate_installation(np.random.default_rng(6), minutes=15, schedule="idle")
        _, busy = simulate_installation(np.random.default_rng(6), minutes=15, schedule="saturated")

        assert idle.queued_share("down") < 0.1
        assert busy.queued_share("down") > 0.7
        assert busy.queued_share("up") < 0.1

    def test_mixed_schedules_vary_usage_within_a_run(self):
        shares = []
        for seed in range(5):
            _, truth = simulate_installation(np.random.default_rng([12, seed]), minutes=60)
            per_10_min = [truth.queued_share("down", np.arange(i, i + 600)) for i in range(0, 3600, 600)]
            shares.append(max(per_10_min) - min(per_10_min))

        assert max(shares) > 0.3

    def test_server_clock_wraps_at_utc_midnight(self):
        records, _ = simulate_installation(np.random.default_rng(7), start_s=UTC_MIDNIGHT_S - 300, minutes=10)

        assert 1 == wraps(records["t2"])
        assert 1 == wraps(records["t3"])

    def test_client_west_of_utc_counts_beyond_a_day_then_wraps_at_local_midnight(self):
        """A UTC−3 client (reports spec §3.1) runs from 3 h to 27 h: its local midnight is 03:00 UTC."""
        rng = np.random.default_rng(8)
        profile = draw_profile(rng, minutes=10)
        client = dataclasses.replace(profile.client, utc_offset_s=-10800, local_midnight=False, offset_ns=0.0)
        profile = dataclasses.replace(profile, client=client)
        local_midnight_s = UTC_MIDNIGHT_S + 3 * 3600

        records, _ = simulate_installation(rng, start_s=local_midnight_s - 300, minutes=10, profile=profile)

        assert 1 == wraps(records["t1"])
        assert 1 == wraps(records["t4"])
        assert records["t1"][0] > DAY_NS
        assert 0 == wraps(records["t2"])

    def test_millisecond_clients_have_millisecond_timestamps(self):
        profile = draw_profile(np.random.default_rng(9), minutes=5, ms_clock=True)
        records, _ = simulate_installation(np.random.default_rng(9), minutes=5, profile=profile)

        assert np.all(0 == records["t1"] % 1_000_000)
        assert np.all(0 == records["t4"] % 1_000_000)

    def test_offline_interval_leaves_a_gap_longer_than_300_s(self):
        rng = np.random.default_rng(10)
        records, truth = simulate_installation(rng, minutes=25, offline=True)

        assert truth.profile.offline is not None
        assert np.diff(records["ts"]).max() > 300
        assert 0.0 <= truth.loss_rate <= 0.10


class TestSplitIntoReports:
    def test_parts_keep_every_record_in_order_with_unique_increasing_names(self):
        records, _ = simulate_installation(np.random.default_rng(11), minutes=30)

        parts = split_into_reports(records, np.random.default_rng(0))

        assert np.array_equal(records, np.concatenate(parts))
        first_ts = [int(part["ts"][0]) for part in parts]
        assert np.all(np.diff(first_ts) > 0)
        assert all(1 <= part.size <= 63 for part in parts)
        for before, after in itertools.pairwise(parts):
            assert before["ts"][-1] < after["ts"][0]

    def test_dense_seconds_are_capped_at_packet_capacity_without_splitting_a_second(self):
        ts = np.repeat(np.arange(1_700_000_000, 1_700_000_100), 2)  # two records a second
        records = np.zeros(ts.size, dtype=OBSERVATION_DTYPE)
        records["ts"] = ts

        parts = split_into_reports(records, np.random.default_rng(1))

        assert ts.size == sum(part.size for part in parts)
        assert all(part.size <= 63 for part in parts)
        assert len({int(part["ts"][0]) for part in parts}) == len(parts)

    def test_no_records_give_no_reports(self):
        assert [] == split_into_reports(np.zeros(0, dtype=OBSERVATION_DTYPE), np.random.default_rng(2))


class TestAddresses:
    def test_address_kinds_match_what_the_resolver_can_resolve(self):
        rng = np.random.default_rng(12)

        for kind, is_global in (("public", True), ("documentation", False), ("private", False)):
            for _ in range(20):
                text = draw_address(rng, kind)
                address = ipaddress.ip_address(parse_address(text))
                assert is_global == address.is_global
                assert re.fullmatch(r"[0-9.]+:[0-9]+", text)


class TestBehaviourWithTheAnalysis:
    def test_idle_installations_read_lower_downstream_usage_than_saturated_ones(self):
        """Loose check over several installations: the original estimator is noisy per window (drift, §12)."""
        analysis = pytest.importorskip("processor.analysis")

        def median_usage(schedule: str) -> float:
            usages = []
            for seed in range(8):
                records, _ = simulate_installation(np.random.default_rng([13, seed]), minutes=12, schedule=schedule)
                result = analysis.analyse(window_observations([records])).as_results_dict()
                usages.append(result["downstream"]["usage"])
            return float(np.median(usages))

        idle, saturated = median_usage("idle"), median_usage("saturated")

        assert idle < 0.3
        assert saturated > 0.5


def parser() -> argparse.ArgumentParser:
    """The parser of ``python -m processor simulate``."""
    made = argparse.ArgumentParser()
    simulate.add_arguments(made)
    return made


class TestCommandLine:
    def test_run_writes_the_tree_and_prints_a_one_line_summary(self, tmp_path, capsys):
        args = parser().parse_args(
            ["--out", str(tmp_path / "tree"), "--installations", "3", "--minutes", "4", "--seed", "1"]
        )

        status = simulate.run(args)

        summary = json.loads(capsys.readouterr().out)
        assert 0 == status
        assert {"installations", "users", "files", "observations", "seconds"} <= summary.keys()
        assert 3 == summary["installations"]
        assert summary["files"] == sum(len(files) for _, _, files in os.walk(tmp_path / "tree"))

    def test_run_refuses_a_non_empty_directory(self, tmp_path, capsys):
        (tmp_path / "something").write_text("x")
        args = parser().parse_args(["--out", str(tmp_path), "--installations", "1", "--minutes", "1"])

        status = simulate.run(args)

        assert 2 == status
        assert "not empty" in capsys.readouterr().err

    def test_start_defaults_to_a_fixed_time(self):
        args = parser().parse_args(["--out", "x", "--installations", "1", "--minutes", "1"])

        assert args.start is None
        assert 1_700_000_000 == DEFAULT_START_S


class TestCommandLineErrors:
    def test_out_needs_installations_and_minutes(self, tmp_path, capsys):
        status = simulate.run(parser().parse_args(["--out", str(tmp_path / "tree")]))

        assert 2 == status
        assert ["simulate: error: --out needs --installations and --minutes"] == capsys.readouterr().err.splitlines()
        assert not (tmp_path / "tree").exists()

    def test_out_and_calibration_exclude_each_other(self, tmp_path):
        with pytest.raises(SystemExit) as caught:
            parser().parse_args(["--out", str(tmp_path / "a"), "--calibration", str(tmp_path / "b")])

        assert 2 == caught.value.code

    def test_out_where_nothing_can_be_written_fails_in_one_line(self, tmp_path, capsys):
        """A file in the way of the path: the same for root, which no permission bit stops."""
        (tmp_path / "a-file").write_text("x")
        args = ["--out", str(tmp_path / "a-file" / "tree"), "--installations", "1", "--minutes", "1"]

        status = simulate.run(parser().parse_args(args))

        err = capsys.readouterr().err
        assert 1 == status
        assert 1 == len(err.splitlines())
        assert err.startswith(f"simulate: error: cannot write {tmp_path / 'a-file' / 'tree'}: Not a directory (")

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
    def test_out_in_a_read_only_directory_fails_in_one_line(self, tmp_path, capsys):
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        args = ["--calibration", str(locked / "experiment")]

        status = simulate.run(parser().parse_args(args))

        assert 1 == status
        assert 1 == len(capsys.readouterr().err.splitlines())

    def test_python_m_processor_simulate_into_an_unwritable_place_prints_no_traceback(self, tmp_path):
        """As a user types it: exit status 1, one line on stderr."""
        (tmp_path / "a-file").write_text("x")

        done = subprocess.run(
            [sys.executable, "-m", "processor", "simulate", "--calibration", str(tmp_path / "a-file" / "x")],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
        )  # fmt: skip

        assert 1 == done.returncode
        assert 1 == len(done.stderr.splitlines()), done.stderr
        assert done.stderr.startswith("simulate: error: cannot write ")
        assert "" == done.stdout

    def test_written_files_get_the_umask_mode(self, tmp_path):
        """0644 under the usual umask 022, like any file a user's program makes."""
        previous = os.umask(0o022)
        try:
            simulate_tree(tmp_path / "tree", installations=1, minutes=3, seed=2)
            write_calibration_experiment(tmp_path / "experiment", step_minutes=4)
        finally:
            os.umask(previous)

        files = [path for path in tmp_path.rglob("*") if path.is_file()]
        assert len(files) > 10
        assert {0o644} == {stat.S_IMODE(path.stat().st_mode) for path in files}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """The default simulated calibration experiment (seed 0)."""
    out = tmp_path_factory.mktemp("simulated") / "experiment"
    write_calibration_experiment(out)
    return out


class TestCalibrationExperiment:
    def test_has_the_layout_of_a_formatted_calibration_run(self, experiment):
        assert ["batches", "description.yml", "network_usage.log", "tix-time-client-logs"] == sorted(
            path.name for path in experiment.iterdir()
        )
        logs = sorted((experiment / "tix-time-client-logs").iterdir())
        assert len(logs) > 140  # 150 minutes, a log about every 61-65 s
        assert all(re.fullmatch(r"\d{13}-tix-log\.json", path.name) for path in logs)

    def test_batches_are_the_windows_the_formatter_forms_from_the_logs(self, experiment):
        plan = plan_batches(experiment / "tix-time-client-logs", progress=False)

        made = {path.name: sorted(file.name for file in path.iterdir()) for path in (experiment / "batches").iterdir()}
        assert {batch.name: sorted(batch.files) for batch in plan.batches} == made
        assert len(made) >= 12
        for batch in plan.batches:
            for name in batch.files:
                assert (experiment / "tix-time-client-logs" / name).read_bytes() == (
                    experiment / "batches" / batch.name / name
                ).read_bytes()

    def test_description_is_the_known_schedule_in_the_client_clock(self, experiment):
        description = load_description(experiment / "description.yml")
        first_ts = min(int(name) for name in os.listdir(experiment / "batches"))

        assert "new" == description.schema
        assert [1.0, 0.75, 0.5, 0.25, 0.0] == [step.fraction for step in description.steps]
        assert [1800.0] * 5 == [step.end_s - step.start_s for step in description.steps]
        assert abs(description.steps[0].start_s - first_ts) < 2  # client-clock seconds, as a test machine logs

    def test_network_log_carries_each_steps_share_of_the_capacity(self, experiment):
        """The log's rate is the true share of seconds with a downstream queue × capacity: near each step's cap."""
        description = load_description(experiment / "description.yml")
        samples = read_network_usage(experiment / "network_usage.log")

        assert 150 == len(samples)
        for number, step in enumerate(description.steps):
            rates = samples["rate_kbps"].to_numpy()[30 * number : 30 * (number + 1)] / description.capacity
            assert pytest.approx(step.fraction, abs=0.08) == rates.mean(), number

    def test_queueing_share_recovers_the_schedule(self, experiment):
        """The estimator the schedule was built for: mean absolute error under 0.1 (0.045 for seed 0)."""
        table = calibrate(experiment / "batches", experiment / "description.yml").table

        assert table["down_usage"].notna().all()
        assert table["error_queueing"].mean() < 0.1

    def test_same_seed_gives_the_same_files(self, tmp_path):
        write_calibration_experiment(tmp_path / "a", step_minutes=4)
        write_calibration_experiment(tmp_path / "b", step_minutes=4)

        assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")

    def test_non_empty_target_is_refused_and_nothing_is_left_beside_it(self, tmp_path):
        (tmp_path / "experiment").mkdir()
        (tmp_path / "experiment" / "mine.txt").write_text("keep")

        with pytest.raises(OSError):
            write_calibration_experiment(tmp_path / "experiment", step_minutes=4)

        assert ["experiment"] == os.listdir(tmp_path)
        assert ["mine.txt"] == os.listdir(tmp_path / "experiment")

    def test_command_line_writes_it_and_prints_the_three_paths(self, tmp_path, capsys):
        status = simulate.run(parser().parse_args(["--calibration", str(tmp_path / "exp"), "--seed", "3"]))

        summary = json.loads(capsys.readouterr().out)
        assert 0 == status
        assert str(tmp_path / "exp" / "batches") == summary["batches_dir"]
        assert str(tmp_path / "exp" / "description.yml") == summary["description"]
        assert str(tmp_path / "exp" / "network_usage.log") == summary["net_usage"]
        assert summary["batches"] == len(os.listdir(tmp_path / "exp" / "batches"))

    def test_command_line_rejects_tree_options_with_calibration(self, tmp_path, capsys):
        status = simulate.run(parser().parse_args(["--calibration", str(tmp_path / "exp"), "--minutes", "5"]))

        assert 2 == status
        assert "apply to --out" in capsys.readouterr().err
