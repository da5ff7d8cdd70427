"""Tests of processor_tools.calibration: description schemas, expected usage, network log, table, CSV, plots."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from processor.errors import BadDescription
from processor.observations import Observations, observations
from processor.reports.files import report_json
from processor_tools.calibration import plots
from processor_tools.calibration.command import CSV_NAME, EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_arguments, run
from processor_tools.calibration.description import Step, expected_usage, load_description, parse_description
from processor_tools.calibration.netusage import BadNetworkUsage, group_network_usage, read_network_usage
from processor_tools.calibration.notebook import prepare_inputs
from processor_tools.calibration.table import (
    COLUMNS,
    NO_REPORT_FILES,
    NO_WINDOW,
    analyse_batch,
    batch_directories,
    calibrate,
    summary,
)
from tests.shared_data import CALIBRATION_EXPERIMENTS

#: Start of the synthetic experiments: 08:00 UTC, far from any midnight wrap of the clocks.
START_S = 1_700_035_200
#: The client's own address, as a client log carries it (reports spec §4).
CLIENT_ADDRESS = "192.168.1.34:4501"
#: Server clock minus client clock in the synthetic data, in nanoseconds.
OFFSET_NS = 2_000_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------------------
# Test data: client logs written with the project's report writer (shared with test_formatter and test_notebook).


def probes(start_s: int, count: int, rng: np.random.Generator, *, queued_share: float = 0.3, per_second: int = 1):
    """
    ``count`` short-probe records from ``start_s``, ``per_second`` of them per second.

    One-way times are a base (8-9 ms) plus sub-millisecond jitter, plus, for a ``queued_share`` of the probes, an
    exponential queueing delay of 4 ms mean; t1..t4 are nanoseconds of the UTC day (no wrap in these runs).
    """
    ts = start_s + np.arange(count) // per_second
    t1 = (ts % 86_400) * 1_000_000_000 + rng.integers(0, 1_000_000, count)
    up = 8_000_000 + rng.exponential(300_000, count) + (rng.random(count) < queued_share) * rng.exponential(4e6, count)
    down = (
        9_000_000 + rng.exponential(300_000, count) + (rng.random(count) < queued_share) * rng.exponential(4e6, count)
    )
    t2 = t1 + OFFSET_NS + up.astype(np.int64)
    t3 = t2 + 100_000
    t4 = t3 - OFFSET_NS + down.astype(np.int64)
    return observations(ts, t1, t2, t3, t4)


def write_log(directory: Path, records: Observations, rng: np.random.Generator) -> Path:
    """Write one client log named ``<epoch ms>-tix-log.json`` after its first record (reports spec §4, 2nd variant)."""
    path = directory / f"{int(records['ts'][0]) * 1000 + 417}-tix-log.json"
    path.write_bytes(report_json(records, from_address=CLIENT_ADDRESS, user_id=0, installation_id=0, rng=rng))
    return path


def write_logs(directory: Path, start_s: int, files: int, rng: np.random.Generator, **probe_options) -> list[Path]:
    """``files`` consecutive one-minute client logs of 60 records from ``start_s``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_log(directory, probes(start_s + 60 * i, 60, rng, **probe_options), rng) for i in range(files)]


def write_batches(root: Path, rng: np.random.Generator, *, batches: int = 4, step_s: int = 540) -> list[Path]:
    """``batches`` batch directories of 19 one-minute logs each, starting ``step_s`` apart, named after their start."""
    directories = []
    for i in range(batches):
        start_s = START_S + i * step_s
        write_logs(root / str(start_s), start_s, 19, rng)
        directories.append(root / str(start_s))
    return directories


NEW_SCHEMA = {
    "start_time": START_S - 300.5,
    "max_speed_kbps": 30000,
    "network_interface": "wlp2s0",
    "intervals": [
        {"duration_minutes": 30, "speed_percentage": 100},
        {"duration_minutes": 30, "speed_percentage": 50},
        {"duration_minutes": 60, "speed_percentage": 0},
    ],
}

OLD_SCHEMA = {
    "connection_speed": 1500,
    "experiment": [
        {"start": START_S - 300, "speed": 1500, "lapse": 1800},
        {"start": START_S + 1500, "speed": 750, "lapse": 1800},
        {"start": START_S + 3300, "speed": 0, "lapse": 3600},
    ],
}


def write_yaml(path: Path, document: dict) -> Path:
    # JSON is YAML: the description is written without depending on a YAML emitter.
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_network_log(path: Path, start_s: float, rates_kbps: list[float]) -> Path:
    """A ``network_usage.log``: the header, then one ``<seconds>|<kbit/s>`` line per minute."""
    lines = ["time_epoch|speed_kbps"] + [f"{start_s + 60 * i + 0.0123}|{rate}" for i, rate in enumerate(rates_kbps)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*arguments: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="calibrate")
    add_arguments(parser)
    return run(parser.parse_args([str(argument) for argument in arguments]))


# ---------------------------------------------------------------------------------------------------------------


class TestDescription:
    def test_new_schema_steps_follow_each_other_from_start_time(self):
        description = parse_description(NEW_SCHEMA)

        start = START_S - 300.5
        assert "new" == description.schema
        assert 30000 == description.capacity
        assert "wlp2s0" == description.network_interface
        assert (
            Step(start, start + 1800, 1.0),
            Step(start + 1800, start + 3600, 0.5),
            Step(start + 3600, start + 7200, 0.0),
        ) == description.steps

    def test_old_schema_fraction_is_speed_over_connection_speed(self):
        description = parse_description(OLD_SCHEMA)

        assert "old" == description.schema
        assert 1500 == description.capacity
        assert [1.0, 0.5, 0.0] == [step.fraction for step in description.steps]
        assert (START_S + 1500, START_S + 3300) == (description.steps[1].start_s, description.steps[1].end_s)

    def test_both_schemas_give_the_spec_example_value(self):
        """tools.md §2.5: 60 min at 0 % then 60 min at 50 %, batch 1 700 003 300 → 1 700 004 400 gives 0.3636."""
        new = parse_description(
            {
                "start_time": 1_700_000_000,
                "max_speed_kbps": 30000,
                "intervals": [
                    {"duration_minutes": 60, "speed_percentage": 0},
                    {"duration_minutes": 60, "speed_percentage": 50},
                ],
            }
        )
        old = parse_description(
            {
                "connection_speed": 1500,
                "experiment": [
                    {"start": 1_700_000_000, "speed": 0, "lapse": 3600},
                    {"start": 1_700_003_600, "speed": 750, "lapse": 3600},
                ],
            }
        )

        for description in (new, old):
            value = expected_usage(description.steps, 1_700_003_300, 1_700_004_400)
            assert pytest.approx(400 / 1100, abs=1e-15) == value
            assert "0.3636" == f"{value:.4f}"

    def test_document_in_neither_schema_is_rejected(self):
        with pytest.raises(BadDescription, match="neither"):
            parse_description({"connection_speed": 1500})

    def test_missing_or_non_numeric_value_is_named(self):
        with pytest.raises(BadDescription, match="max_speed_kbps"):
            parse_description({"start_time": 1, "intervals": []})
        with pytest.raises(BadDescription, match=r"experiment\[0\]\.speed"):
            parse_description({"connection_speed": 1500, "experiment": [{"start": 1, "speed": "fast", "lapse": 60}]})

    def test_capacity_must_be_positive(self):
        with pytest.raises(BadDescription, match="max_speed_kbps must be positive"):
            parse_description({**NEW_SCHEMA, "max_speed_kbps": 0})
        with pytest.raises(BadDescription, match="connection_speed must be positive"):
            parse_description({**OLD_SCHEMA, "connection_speed": -1})

    def test_file_is_read_with_a_safe_loader(self, tmp_path):
        """A Python object tag is not constructed: the file is rejected as invalid YAML."""
        path = tmp_path / "description.yml"
        path.write_text("connection_speed: !!python/object/apply:os.getcwd []\nexperiment: []\n")

        with pytest.raises(BadDescription, match="YAML"):
            load_description(path)

    def test_yaml_file_of_the_old_schema_loads(self, tmp_path):
        path = tmp_path / "description.yml"
        path.write_text(
            "connection_speed: 1750\nexperiment:\n  - start: 1511668800\n    speed: 1500\n    lapse: 3600\n"
        )

        description = load_description(path)

        assert (Step(1511668800, 1511672400, 1500 / 1750),) == description.steps


class TestExpectedUsage:
    STEPS = (Step(1000, 2000, 0.2), Step(2000, 3000, 0.6), Step(3000, 4000, 0.6), Step(4000, 5000, 1.0))

    def test_batch_inside_one_step_expects_its_fraction(self):
        assert 0.2 == expected_usage(self.STEPS, 1100, 1900)

    def test_batch_over_two_steps_is_time_weighted(self):
        assert pytest.approx((200 * 0.2 + 300 * 0.6) / 500, abs=1e-15) == expected_usage(self.STEPS, 1800, 2300)

    def test_equal_fractions_give_that_fraction(self):
        assert 0.6 == expected_usage(self.STEPS, 2500, 3500)

    def test_batch_starting_before_the_schedule_expects_the_end_step(self):
        assert 0.2 == expected_usage(self.STEPS, 500, 1500)

    def test_batch_ending_after_the_schedule_expects_the_start_step(self):
        assert 1.0 == expected_usage(self.STEPS, 4500, 5500)

    def test_batch_outside_the_schedule_has_no_expected_usage(self):
        assert expected_usage(self.STEPS, 100, 900) is None
        assert expected_usage(self.STEPS, 5000, 5600) is None

    def test_middle_steps_of_a_long_batch_are_ignored_as_in_the_original(self):
        """Weights (2000 − 1900) and (4100 − 4000) over 2200 s: the 2000 s of the middle steps count for nothing."""
        assert pytest.approx((100 * 0.2 + 100 * 1.0) / 2200, abs=1e-15) == expected_usage(self.STEPS, 1900, 4100)

    def test_step_end_is_exclusive(self):
        assert 0.6 == expected_usage(self.STEPS, 2000, 2000)


class TestNetworkUsage:
    def test_log_is_read_without_its_header(self, tmp_path):
        path = write_network_log(tmp_path / "network_usage.log", 1_700_000_060, [3.1866666666666665, 1200.5])

        samples = read_network_usage(path)

        assert [1_700_000_060.0123, 1_700_000_120.0123] == pytest.approx(samples["time_s"].tolist(), abs=1e-6)
        assert [3.1866666666666665, 1200.5] == samples["rate_kbps"].tolist()

    def test_groups_of_nine_samples_average_and_drop_the_incomplete_tail(self, tmp_path):
        rates = [float(i) for i in range(20)]
        samples = read_network_usage(write_network_log(tmp_path / "network_usage.log", 1_700_000_000, rates))

        groups = group_network_usage(samples)

        assert [4.0, 13.0] == groups["rate_kbps"].tolist()
        assert pytest.approx([1_700_000_000.0123, 1_700_000_540.0123], abs=1e-6) == groups["time_s"].tolist()

    def test_malformed_line_is_rejected_with_its_number(self, tmp_path):
        path = tmp_path / "network_usage.log"
        path.write_text("time_epoch|speed_kbps\n1700000000.0|12.5\n1700000060.0;13\n")

        with pytest.raises(BadNetworkUsage, match="line 3"):
            read_network_usage(path)


class TestBatches:
    def test_only_decimal_directories_are_batches_in_numeric_order(self, tmp_path):
        for name in ("900", "1000", "README.d", "x12"):
            (tmp_path / name).mkdir()
        (tmp_path / "1100").write_text("a stray file")

        assert ["900", "1000"] == [path.name for path in batch_directories(tmp_path)]

    def test_batch_of_one_window_is_analysed_read_only(self, tmp_path):
        rng = np.random.default_rng(11)
        (directory,) = write_batches(tmp_path, rng, batches=1)
        before = {path.name: path.read_bytes() for path in directory.iterdir()}

        outcome = analyse_batch(directory)

        assert outcome.reason is None
        assert 19 == outcome.report_files
        assert START_S + 19 * 60 - 1 == outcome.results["timestamp"]
        assert before == {path.name: path.read_bytes() for path in directory.iterdir()}

    def test_empty_file_in_a_batch_is_left_out(self, tmp_path):
        rng = np.random.default_rng(12)
        (directory,) = write_batches(tmp_path, rng, batches=1)
        (directory / f"{START_S * 1000 + 30_000}-tix-log.json").write_bytes(b"")

        outcome = analyse_batch(directory)

        assert outcome.reason is None
        assert 19 == outcome.report_files

    def test_batch_below_1084_records_has_no_window(self, tmp_path):
        write_logs(tmp_path / str(START_S), START_S, 5, np.random.default_rng(13))

        assert NO_WINDOW == analyse_batch(tmp_path / str(START_S)).reason

    def test_batch_without_report_files_says_so(self, tmp_path):
        (tmp_path / "1700000000").mkdir()

        assert NO_REPORT_FILES == analyse_batch(tmp_path / "1700000000").reason

    def test_batch_spanning_less_than_ten_minutes_is_not_analysable(self, tmp_path):
        """19 logs of 60 records at 4 a second span under 5 minutes: reason span_too_short (analysis.md §10)."""
        directory = tmp_path / str(START_S)
        directory.mkdir()
        rng = np.random.default_rng(14)
        for i in range(19):
            write_log(directory, probes(START_S + 15 * i, 60, rng, per_second=4), rng)

        outcome = analyse_batch(directory)

        assert (None, "span_too_short", 19) == (outcome.results, outcome.reason, outcome.report_files)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A synthetic experiment: 4 analysable batches, one without a window, one not analysable, one empty, strays."""
    root = tmp_path_factory.mktemp("experiment")
    batches = root / "batches"
    rng = np.random.default_rng(2024)
    write_batches(batches, rng, batches=4)
    write_logs(batches / str(START_S + 4 * 540), START_S + 4 * 540, 5, rng)  # no window
    short = batches / str(START_S + 5 * 540)
    short.mkdir()
    for i in range(19):
        write_log(short, probes(START_S + 5 * 540 + 15 * i, 60, rng, per_second=4), rng)
    (batches / str(START_S + 6 * 540)).mkdir()  # no report files
    (batches / "README").write_text("stray top-level file")
    write_log(batches, probes(START_S + 9000, 60, rng), rng)  # a stray top-level log: belongs to no batch
    write_yaml(root / "old.yml", OLD_SCHEMA)
    write_yaml(root / "new.yml", NEW_SCHEMA)
    write_network_log(root / "network_usage.log", START_S, [1500.0 * 8 * (1 - i / 60) for i in range(60)])
    return root


class TestCalibrationTable:
    def test_one_row_per_batch_directory_with_empty_cells_when_not_analysed(self, experiment):
        table = calibrate(experiment / "batches", experiment / "old.yml").table

        assert list(COLUMNS) == list(table.columns)
        assert [str(START_S + i * 540) for i in range(7)] == table["batch"].tolist()
        assert ["", "", "", "", NO_WINDOW, "span_too_short", NO_REPORT_FILES] == table["reason"].tolist()
        assert table.loc[:3, "down_usage"].notna().all()
        not_analysed = table.loc[4:, ["batch_end", "down_usage", "up_hurst_rs", "expected_downstream_usage", "error"]]
        assert not_analysed.isna().all().all()

    @pytest.mark.parametrize("schema", ["old.yml", "new.yml"])
    def test_expected_usage_is_what_the_description_implies(self, experiment, schema):
        description = load_description(experiment / schema)
        table = calibrate(experiment / "batches", experiment / schema).table

        for row in table[table["down_usage"].notna()].itertuples():
            expected = expected_usage(description.steps, row.batch_start, row.batch_end)
            assert expected == row.expected_downstream_usage
            assert abs(expected - row.down_usage) == row.error
            assert (row.error / expected if expected else row.error) == row.relative_error
            assert abs(expected - row.down_usage_queueing) == row.error_queueing

    def test_queueing_shares_are_those_of_the_analysis(self, experiment):
        """The table's queueing columns are the results' ``usage_queueing`` of each batch, beside ``usage``."""
        calibration = calibrate(experiment / "batches", experiment / "old.yml")
        table = calibration.table.set_index("batch")

        for outcome in calibration.outcomes:
            if outcome.results is None:
                assert table.loc[outcome.name, ["down_usage_queueing", "error_queueing"]].isna().all()
                continue
            row = table.loc[outcome.name]
            assert outcome.results["downstream"]["usage_queueing"] == row["down_usage_queueing"]
            assert outcome.results["upstream"]["usage_queueing"] == row["up_usage_queueing"]
            assert outcome.results["downstream"]["usage"] == row["down_usage"]

    def test_batch_over_a_step_change_is_time_weighted(self, experiment):
        """Old schema: 100 % until START_S + 1500, then 50 %; batch i runs from START_S + 540·i for 1139 s."""
        table = calibrate(experiment / "batches", experiment / "old.yml").table

        assert [START_S + 540 * i + 1139 for i in range(4)] == table.loc[:3, "batch_end"].tolist()
        assert 1.0 == table.loc[0, "expected_downstream_usage"]
        assert pytest.approx((960 * 1.0 + 179 * 0.5) / 1139, abs=1e-15) == table.loc[1, "expected_downstream_usage"]
        assert pytest.approx((420 * 1.0 + 719 * 0.5) / 1139, abs=1e-15) == table.loc[2, "expected_downstream_usage"]
        assert 0.5 == table.loc[3, "expected_downstream_usage"]

    def test_network_groups_pair_with_compared_rows_by_position(self, experiment):
        calibration = calibrate(experiment / "batches", experiment / "old.yml", experiment / "network_usage.log")
        table = calibration.table
        groups = calibration.network_groups

        assert 6 == len(groups)  # 60 samples → 6 complete groups of 9
        paired = table[table["actual_usage"].notna()]
        assert [0, 1, 2, 3] == paired.index.tolist()  # the 4 analysed rows, fewer than the groups
        assert groups["rate_kbps"].tolist()[:4] == paired["actual_rate_kbps"].tolist()
        assert (paired["actual_rate_kbps"] / 1500).tolist() == paired["actual_usage"].tolist()
        assert (paired["actual_usage"] - paired["down_usage"]).abs().tolist() == paired["actual_error"].tolist()
        assert (paired["actual_error"] / paired["actual_usage"]).tolist() == paired["actual_relative_error"].tolist()

    def test_empty_network_file_name_means_no_network_log(self, experiment):
        calibration = calibrate(experiment / "batches", experiment / "old.yml", "")

        assert calibration.network_groups is None
        assert calibration.table["actual_usage"].isna().all()

    def test_summary_counts_windows_and_averages_the_error_column(self, experiment):
        table = calibrate(experiment / "batches", experiment / "new.yml").table

        result = summary(table)

        assert (7, 4, 3) == (result["batches"], result["windows"], result["not_analysable"])
        assert {NO_WINDOW: 1, "span_too_short": 1, NO_REPORT_FILES: 1} == result["reasons"]
        assert table["error"].mean() == result["mae"]
        assert table["error"].median() == result["median_ae"]
        assert result["actual_mae"] is None
        assert table["error_queueing"].mean() == result["mae_queueing"]
        assert table["error_queueing"].median() == result["median_ae_queueing"]
        assert table["error_queueing"].max() == result["max_ae_queueing"]

    def test_every_figure_renders_as_png(self, experiment):
        calibration = calibrate(experiment / "batches", experiment / "old.yml", experiment / "network_usage.log")

        figures = plots.figures(calibration.table, calibration.network_groups)

        expected = ["usage", "actual-rate", "usage-actual", "error", "relative-error", "actual-error"]
        assert [*expected, "actual-relative-error", "scatter"] == list(figures)
        assert all(plots.png_bytes(figure).startswith(PNG_MAGIC) for figure in figures.values())
        assert ["Downstream usage", "Expected downstream usage", "Downstream usage (queueing share)"] == [
            text.get_text() for text in figures["usage"].axes[0].get_legend().get_texts()
        ]

    def test_error_and_scatter_figures_show_both_estimators_with_their_mae(self, experiment):
        table = calibrate(experiment / "batches", experiment / "old.yml").table

        figures = plots.figures(table)

        mae, mae_queueing = table["error"].mean(), table["error_queueing"].mean()
        assert [f"Downstream usage (MAE {mae:.3f})", f"Downstream usage (queueing share) (MAE {mae_queueing:.3f})"] == [
            text.get_text() for text in figures["error"].axes[0].get_legend().get_texts()
        ]
        assert (
            f"MAE {mae:.3f} (original rule), {mae_queueing:.3f} (queueing share)"
            in figures["scatter"].axes[0].get_title()
        )
        assert 2 == len(figures["scatter"].axes[0].collections)  # one point set per estimator


class TestCalibrateCommand:
    def test_writes_csv_plots_and_a_summary_whose_mae_is_the_csv_mean(self, experiment, tmp_path, capsys):
        status = cli("--batches", experiment / "batches", "--description", experiment / "old.yml", "--out", tmp_path)

        out, err = capsys.readouterr()
        result = json.loads(out.strip().splitlines()[-1])
        csv = pd.read_csv(tmp_path / CSV_NAME)
        assert EXIT_OK == status
        assert 7 == len(csv)
        assert list(COLUMNS) == list(csv.columns)
        assert 4 == result["windows"]
        assert math.isclose(csv["error"].mean(), result["mae"], rel_tol=0, abs_tol=1e-12)
        assert math.isclose(csv["error"].median(), result["median_ae"], rel_tol=0, abs_tol=1e-12)
        assert math.isclose(csv["error_queueing"].mean(), result["mae_queueing"], rel_tol=0, abs_tol=1e-12)
        assert math.isclose(csv["error_queueing"].median(), result["median_ae_queueing"], rel_tol=0, abs_tol=1e-12)
        assert csv.loc[4:, "down_usage"].isna().all()
        for stem in ("usage", "error", "relative-error", "scatter"):
            assert (tmp_path / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        assert not (tmp_path / "actual-rate.png").exists()
        assert f"batch not analysable batch={START_S + 5 * 540} reason=span_too_short" in err

    def test_network_log_adds_the_actual_usage_plots(self, experiment, tmp_path, capsys):
        status = cli(
            "--batches", experiment / "batches", "--description", experiment / "new.yml",
            "--net-usage", experiment / "network_usage.log", "--out", tmp_path / "made",
        )  # fmt: skip

        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        csv = pd.read_csv(tmp_path / "made" / CSV_NAME)
        assert EXIT_OK == status
        assert 4 == result["actual_compared"]
        assert 4 == csv["actual_usage"].notna().sum()
        for stem in ("actual-rate", "usage-actual", "actual-error", "actual-relative-error"):
            assert (tmp_path / "made" / f"{stem}.png").is_file()

    def test_runs_as_python_m_processor_calibrate(self, experiment, tmp_path):
        """The documented command line, in a process of its own: the summary is the last stdout line."""
        done = subprocess.run(
            [
                sys.executable, "-m", "processor", "calibrate", "--batches", str(experiment / "batches"),
                "--description", str(experiment / "new.yml"), "--out", str(tmp_path),
            ],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
        )  # fmt: skip

        assert EXIT_OK == done.returncode, done.stderr
        assert 4 == json.loads(done.stdout.strip().splitlines()[-1])["windows"]
        assert (tmp_path / CSV_NAME).is_file()

    def test_description_in_no_schema_is_a_usage_error_and_writes_nothing(self, experiment, tmp_path, capsys):
        bad = write_yaml(tmp_path / "bad.yml", {"speed": 3})

        status = cli("--batches", experiment / "batches", "--description", bad, "--out", tmp_path / "out")

        assert EXIT_USAGE == status
        assert "neither" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()

    def test_directory_without_batches_fails(self, experiment, tmp_path, capsys):
        status = cli("--batches", tmp_path, "--description", experiment / "old.yml", "--out", tmp_path / "out")

        assert EXIT_FAILED == status
        assert "no batch directory" in capsys.readouterr().err


EXPERIMENTS = CALIBRATION_EXPERIMENTS


class TestSharedCalibrationData:
    @pytest.mark.parametrize("name", EXPERIMENTS)
    def test_every_batch_matches_the_reference_results(self, name, shared_data, tmp_path, capsys):
        """Reference: data/reference/calibration-<name>.json; parity rule of data/README.md (usage, quality 1e-9,
        Hurst 1e-6, same timestamp) for every batch without error that does not cross midnight."""
        experiment = shared_data / "calibration" / name
        reference = json.loads((shared_data / "reference" / f"calibration-{name}.json").read_text())

        status = cli("--batches", experiment, "--description", experiment / "description.yml", "--out", tmp_path)

        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        csv = pd.read_csv(tmp_path / CSV_NAME)
        assert EXIT_OK == status
        assert sorted(reference, key=int) == csv["batch"].astype(str).tolist()
        assert (len(reference), len(reference)) == (result["batches"], result["windows"])
        assert math.isclose(csv["error"].mean(), result["mae"], rel_tol=0, abs_tol=1e-12)
        compared = 0
        for row in csv.itertuples():
            expected = reference[str(row.batch)]
            if expected["error"] is not None or expected["crosses_midnight"]:
                continue
            compared += 1
            results = expected["results"]
            assert results["timestamp"] == row.batch_end
            for direction, prefix in (("downstream", "down"), ("upstream", "up")):
                values = results[direction]
                assert pytest.approx(values["usage"], abs=1e-9) == getattr(row, f"{prefix}_usage")
                assert pytest.approx(values["quality"], abs=1e-9) == getattr(row, f"{prefix}_quality")
                assert pytest.approx(values["hurst"]["rs"], abs=1e-6) == getattr(row, f"{prefix}_hurst_rs")
                assert pytest.approx(values["hurst"]["wavelet"], abs=1e-6) == getattr(row, f"{prefix}_hurst_wavelet")
        assert compared >= len(reference) - 2

    def test_queueing_share_meets_the_acceptance_on_the_six_experiments(self, shared_data):
        """
        Issue 6 acceptance: per-experiment MAE of the downstream queueing share against the expected usage, over the
        batches with an expected usage: mean ≤ 0.16 and none above 0.31 (original rule: 0.18 and 0.34). Measured:
        0.159, 0.123, 0.122, 0.293, 0.162, 0.068 (mean 0.154); the original rule 0.159, 0.094, 0.101, 0.342, 0.211,
        0.189 (mean 0.183).
        """
        maes, original = {}, {}
        for name in EXPERIMENTS:
            experiment = shared_data / "calibration" / name
            result = summary(calibrate(experiment, experiment / "description.yml").table)
            assert result["compared"] > 0
            maes[name], original[name] = result["mae_queueing"], result["mae"]

        assert np.mean(list(maes.values())) <= 0.16, maes
        assert max(maes.values()) <= 0.31, maes
        assert np.mean(list(maes.values())) < np.mean(list(original.values()))

    def test_expected_usage_of_experiment_1b_follows_its_schedule(self, shared_data):
        """1b: 1500 KB/s of 1500 from 1505082300, 1125 from 1505084820 (description.yml, old schema)."""
        experiment = shared_data / "calibration" / "batch-test-report-1b"

        table = calibrate(experiment, experiment / "description.yml").table.set_index("batch")

        # Starts before the schedule, ends in its first step: the end step's fraction.
        assert (1505082407, 1.0) == tuple(table.loc["1505080698", ["batch_end", "expected_downstream_usage"]])
        # 1505084037 … 1505085224 crosses 1505084820: (783 s · 1 + 404 s · 0.75) / 1187 s.
        row = table.loc["1505084037"]
        assert 1505085224 == row["batch_end"]
        assert pytest.approx((783 * 1.0 + 404 * 0.75) / 1187, abs=1e-15) == row["expected_downstream_usage"]


class TestPlotsForPublication:
    def test_line_breaks_where_no_point_falls_for_more_than_twenty_minutes(self):
        times = pd.Series(pd.to_datetime([0, 540, 1080, 1080 + 1201, 1080 + 1201 + 540], unit="s", utc=True))
        values = pd.Series([0.1, 0.2, np.nan, 0.4, 0.5])

        x, y = plots.broken_at_gaps(times, values)

        # The missing value at 1080 s leaves 540 → 2281 s (1741 s) without a point: one NaN, inside the gap.
        assert [0.1, 0.2, None, 0.4, 0.5] == [None if math.isnan(value) else value for value in y]
        assert times[1] < x.iloc[2] < times[3]

    def test_one_missing_batch_stays_joined(self):
        times = pd.Series(pd.to_datetime([0, 540, 1620], unit="s", utc=True))

        _, y = plots.broken_at_gaps(times, pd.Series([0.1, 0.2, 0.3]))

        assert [0.1, 0.2, 0.3] == y.tolist()

    def test_every_title_names_the_experiment_and_time_axes_say_utc(self, experiment):
        calibration = calibrate(experiment / "batches", experiment / "old.yml", experiment / "network_usage.log")

        figures = plots.figures(calibration.table, calibration.network_groups, calibration.name)

        assert experiment.name == calibration.name  # the directory of the description
        assert all(experiment.name in figure.axes[0].get_title() for figure in figures.values())
        timed = [stem for stem, figure in figures.items() if figure.axes[0].get_xlabel() == "time (UTC)"]
        assert [stem for stem in figures if stem != "scatter"] == timed

    def test_time_axis_labels_are_utc_whatever_the_local_zone(self, experiment, monkeypatch):
        """Batch START_S is 08:00 UTC; in a zone 3 h west the axis still reads 08:00."""
        monkeypatch.setenv("TZ", "America/Argentina/Buenos_Aires")
        time.tzset()
        try:
            table = calibrate(experiment / "batches", experiment / "old.yml").table
            figure = plots.usage_figure(table, "x")
            figure.canvas.draw()
            labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
        finally:
            monkeypatch.undo()
            time.tzset()

        assert "08:00" in labels, labels

    def test_relative_error_shows_both_estimators_above_the_floor_and_says_what_it_leaves_out(self, experiment):
        """Expected usage 0.001 would divide errors by a thousandth; the plot leaves such batches out and says so."""
        table = calibrate(experiment / "batches", experiment / "old.yml").table
        table.loc[0, "expected_downstream_usage"] = 0.001
        table.loc[0, "relative_error"] = table.loc[0, "error"] / 0.001

        figure = plots.relative_error_figure(table, "x")

        axes = figure.axes[0]
        legend = axes.get_legend()
        assert [plots.ORIGINAL_LABEL, plots.QUEUEING_LABEL] == [text.get_text() for text in legend.get_texts()]
        assert "only batches with expected usage ≥ 0.1 (1 of 4 left out)" == legend.get_title().get_text()
        shown = np.concatenate([line.get_ydata() for line in axes.get_lines()]).astype(float)
        assert 6 == np.count_nonzero(~np.isnan(shown))  # three batches, two estimators
        assert np.nanmax(shown) < 5

    def test_name_option_sets_the_titles(self, experiment, tmp_path, capsys):
        status = cli(
            "--batches", experiment / "batches", "--description", experiment / "old.yml",
            "--out", tmp_path, "--name", "run of 12 May",
        )  # fmt: skip

        assert EXIT_OK == status
        assert "run of 12 May" == calibrate(experiment / "batches", experiment / "old.yml", name="run of 12 May").name


class TestUtcTimes:
    def test_table_times_are_utc(self, experiment):
        table = calibrate(experiment / "batches", experiment / "old.yml").table

        assert "UTC" == str(table["batch_start_time"].dt.tz)
        assert pd.Timestamp(START_S, unit="s", tz="UTC") == table.loc[0, "batch_start_time"]

    def test_csv_time_columns_are_iso_8601_utc(self, experiment, tmp_path):
        status = cli("--batches", experiment / "batches", "--description", experiment / "old.yml", "--out", tmp_path)

        csv = pd.read_csv(tmp_path / CSV_NAME, dtype=str, keep_default_na=False)
        assert EXIT_OK == status
        # START_S = 1 700 035 200 = 2023-11-15 08:00:00 UTC; batch 0 ends 1139 s later.
        assert "2023-11-15T08:00:00Z" == csv.loc[0, "batch_start_time"]
        assert "2023-11-15T08:18:59Z" == csv.loc[0, "batch_end_time"]
        assert "" == csv.loc[4, "batch_end_time"]  # not analysed

    def test_relative_error_of_the_queueing_share_is_in_the_csv(self, experiment, tmp_path):
        status = cli("--batches", experiment / "batches", "--description", experiment / "old.yml", "--out", tmp_path)

        csv = pd.read_csv(tmp_path / CSV_NAME).dropna(subset=["error_queueing"])
        assert EXIT_OK == status
        assert len(csv) == 4
        expected = np.where(
            csv["expected_downstream_usage"] > 0,
            csv["error_queueing"] / csv["expected_downstream_usage"],
            csv["error_queueing"],
        )
        assert pytest.approx(expected, rel=1e-12) == csv["relative_error_queueing"].to_numpy()


class TestNotebookInputs:
    def test_default_experiment_is_made_in_the_working_directory_when_absent(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        defaults = ("simulated-calibration/batches", "simulated-calibration/description.yml",
                    "simulated-calibration/network_usage.log")  # fmt: skip

        line = prepare_inputs(*defaults)

        assert line.startswith("made a simulated calibration experiment")
        assert all((tmp_path / path).exists() for path in defaults)
        assert prepare_inputs(*defaults).startswith("analysing simulated-calibration/batches")  # made once

    def test_missing_input_stops_with_a_message_naming_the_three_parameters(self, tmp_path):
        with pytest.raises(FileNotFoundError) as caught:
            prepare_inputs(tmp_path / "nothing", tmp_path / "description.yml", "")

        message = str(caught.value)
        assert f"BATCHES_DIR = {str(tmp_path / 'nothing')!r}" in message
        assert "Set BATCHES_DIR, TEST_CONFIG_FILE and NET_USAGE_FILE in the first cell" in message


def test_calibrate_writes_its_files_with_the_umask_mode(experiment, tmp_path):
    """0644 under the usual umask 022, like any file a user's program makes."""
    previous = os.umask(0o022)
    try:
        status = cli("--batches", experiment / "batches", "--description", experiment / "old.yml", "--out", tmp_path)
    finally:
        os.umask(previous)

    assert EXIT_OK == status
    assert {0o644} == {stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
