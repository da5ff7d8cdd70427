"""The notebook's three inputs: the simulated experiment its defaults name, made on first use, or a clear stop."""

from __future__ import annotations

from pathlib import Path

#: Where the notebook's default parameters point, relative to the directory the notebook runs in.
DEFAULT_EXPERIMENT = Path("simulated-calibration")


def prepare_inputs(batches_dir: str | Path, test_config_file: str | Path, net_usage_file: str | Path | None) -> str:
    """
    Check the notebook's three inputs; return one line saying what will be analysed.

    When ``batches_dir`` is the default (``simulated-calibration/batches``) and that experiment does not exist
    yet, :func:`processor_tools.simulate.experiment.write_calibration_experiment` makes it first, so the notebook
    runs from a fresh clone with nothing beside it.

    Raises
    ------
    FileNotFoundError
        When an input does not exist; the message names the three parameters to set.
    """
    made = ""
    if Path(batches_dir) == DEFAULT_EXPERIMENT / "batches" and not DEFAULT_EXPERIMENT.exists():
        from processor_tools.simulate.experiment import write_calibration_experiment

        summary = write_calibration_experiment(DEFAULT_EXPERIMENT)
        made = f"made a simulated calibration experiment ({summary.batches} batches) in {DEFAULT_EXPERIMENT}/; "
    inputs = {"BATCHES_DIR": batches_dir, "TEST_CONFIG_FILE": test_config_file, "NET_USAGE_FILE": net_usage_file}
    missing = [f"{name} = {str(value)!r}" for name, value in inputs.items() if value and not Path(value).exists()]
    if missing:
        raise FileNotFoundError(
            f"not found: {', '.join(missing)}. Set BATCHES_DIR, TEST_CONFIG_FILE and NET_USAGE_FILE in the first "
            "cell (or with papermill -p) to a calibration experiment's batches, description.yml and "
            "network_usage.log ('' without one)"
        )
    return f"{made}analysing {batches_dir} against {test_config_file}" + (
        f" and {net_usage_file}" if net_usage_file else ""
    )
