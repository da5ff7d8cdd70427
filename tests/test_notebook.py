"""Tests of general_analysis_notebook.ipynb: it runs headless under papermill, with its defaults or three parameters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.processor_tools.test_calibration import NEW_SCHEMA, START_S, write_batches, write_network_log, write_yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "general_analysis_notebook.ipynb"


def execute(output: Path, batches: Path, description: Path, net_usage: Path | str) -> dict:
    """Run the notebook exactly as a researcher would headless, from the repository root; return the result."""
    done = subprocess.run(
        [
            sys.executable, "-m", "papermill", NOTEBOOK.name, str(output),
            "-p", "BATCHES_DIR", str(batches),
            "-p", "TEST_CONFIG_FILE", str(description),
            "-p", "NET_USAGE_FILE", str(net_usage),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(output.read_text(encoding="utf-8"))


def execute_alone(directory: Path, *parameters: str) -> subprocess.CompletedProcess[str]:
    """Run a copy of the notebook in ``directory``, which holds nothing else, with the package on the import path."""
    shutil.copy(NOTEBOOK, directory / NOTEBOOK.name)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "papermill", NOTEBOOK.name, "out.ipynb", *parameters],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def outputs(notebook: dict) -> list[dict]:
    return [output for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", [])]


def images(notebook: dict) -> int:
    return sum("image/png" in output.get("data", {}) for output in outputs(notebook))


class TestNotebookFile:
    def test_first_code_cell_is_tagged_parameters_and_sets_exactly_the_three_variables(self):
        notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
        first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
        source = "".join(first["source"])

        assert "parameters" in first["metadata"]["tags"]
        assert ["BATCHES_DIR", "NET_USAGE_FILE", "TEST_CONFIG_FILE"] == sorted(
            line.split("=")[0].strip() for line in source.splitlines() if line.strip()
        )

    def test_is_stored_without_outputs(self):
        """Outputs of real data never go into the repository."""
        notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))

        assert [] == outputs(notebook)
        assert all(cell.get("execution_count") is None for cell in notebook["cells"] if cell["cell_type"] == "code")


class TestDefaults:
    def test_runs_with_its_defaults_where_nothing_is_beside_it_and_shows_every_plot(self, tmp_path):
        """A fresh clone: the defaults name a simulated experiment, which the notebook makes on its first run."""
        done = execute_alone(tmp_path)

        assert 0 == done.returncode, done.stderr[-3000:]
        notebook = json.loads((tmp_path / "out.ipynb").read_text(encoding="utf-8"))
        assert [] == [output for output in outputs(notebook) if output["output_type"] == "error"]
        assert 8 == images(notebook)  # the simulated experiment has a network log: all eight plots
        texts = ["".join(output.get("text", "")) for output in outputs(notebook)]
        assert any(text.startswith("made a simulated calibration experiment") for text in texts)
        assert (tmp_path / "simulated-calibration" / "batches").is_dir()

    def test_missing_input_stops_at_once_naming_the_three_parameters(self, tmp_path):
        done = execute_alone(tmp_path, "-p", "BATCHES_DIR", "run/batches")

        assert 0 != done.returncode
        assert "Set BATCHES_DIR, TEST_CONFIG_FILE and NET_USAGE_FILE in the first cell" in done.stderr
        assert not (tmp_path / "simulated-calibration").exists()


class TestHeadlessRun:
    def test_runs_on_a_calibration_experiment_without_network_log(self, shared_data, tmp_path):
        experiment = shared_data / "calibration" / "batch-test-report-1b"

        notebook = execute(tmp_path / "out.ipynb", experiment, experiment / "description.yml", "")

        assert [] == [output for output in outputs(notebook) if output["output_type"] == "error"]
        assert images(notebook) >= 3
        assert any("text/html" in output.get("data", {}) for output in outputs(notebook))  # the table

    def test_shows_both_estimators_side_by_side_with_their_errors(self, shared_data, tmp_path):
        """The queueing share (usage-queueing spec) beside the original rule: columns, MAEs in the summary and table."""
        experiment = shared_data / "calibration" / "batch-test-report-1b"

        notebook = execute(tmp_path / "out.ipynb", experiment, experiment / "description.yml", "")

        texts = ["".join(output.get("data", {}).get("text/plain", "")) for output in outputs(notebook)]
        html = ["".join(output.get("data", {}).get("text/html", "")) for output in outputs(notebook)]
        assert any("'mae_queueing'" in text and "'median_ae_queueing'" in text for text in texts)  # the summary
        assert any("down_usage_queueing" in page and "error_queueing" in page for page in html)
        assert any("queueing share" in page and "mean absolute error" in page for page in html)

    def test_runs_with_a_network_log_and_shows_every_plot(self, tmp_path):
        """A synthetic experiment (2018 schema) with its network_usage.log: all eight plots of tools.md §2.8."""
        write_batches(tmp_path / "batches", np.random.default_rng(31), batches=3)
        description = write_yaml(tmp_path / "description.yml", NEW_SCHEMA)
        net_usage = write_network_log(tmp_path / "network_usage.log", START_S, [24000.0 - 200 * i for i in range(40)])

        notebook = execute(tmp_path / "out.ipynb", tmp_path / "batches", description, net_usage)

        assert [] == [output for output in outputs(notebook) if output["output_type"] == "error"]
        assert 8 == images(notebook)
