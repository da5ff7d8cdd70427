"""
The calibration figures (tools spec §2.8, plus a measured-vs-expected scatter), drawn on matplotlib's Agg canvas.

Each figure that shows the measured downstream usage also shows the queueing-share estimate (usage-queueing spec)
beside it, so the two estimators are compared against the same ground truth.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Size of every figure, in inches (at :data:`DPI` dots per inch).
FIGURE_SIZE_IN = (10.0, 4.5)
#: Size of the scatter plot, in inches (square: both axes are usage shares).
SCATTER_SIZE_IN = (6.0, 6.0)
#: Resolution of the PNG files.
DPI = 100

#: Legend label of the queueing-share estimate (usage-queueing spec).
QUEUEING_LABEL = "Downstream usage (queueing share)"


def _figure(
    title: str, xlabel: str, ylabel: str, *, size_in: tuple[float, float] = FIGURE_SIZE_IN
) -> tuple[Figure, Axes]:
    # A bare Figure with its own Agg canvas: no pyplot, no global backend or state, safe in any process.
    figure = Figure(figsize=size_in, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _line(axes: Axes, x: pd.Series, y: pd.Series, label: str | None = None) -> None:
    # Drop the rows without a value so that a missing batch does not break the line into isolated points.
    present = y.notna() & x.notna()
    axes.plot(x[present], y[present], marker="o", markersize=3, label=label)


def _mae(errors: pd.Series) -> float:
    """Mean of the errors present, NaN when there is none."""
    present = errors.dropna()
    return float(present.mean()) if len(present) else float("nan")


def usage_figure(table: pd.DataFrame) -> Figure:
    """ "Test results": measured and expected downstream usage, and the queueing share, by batch start (§2.8 item 1)."""
    figure, axes = _figure("Test results", "time", "Network usage")
    _line(axes, table["batch_start_time"], table["down_usage"], "Downstream usage")
    _line(axes, table["batch_start_time"], table["expected_downstream_usage"], "Expected downstream usage")
    _line(axes, table["batch_start_time"], table["down_usage_queueing"], QUEUEING_LABEL)
    axes.legend()
    return figure


def actual_rate_figure(network_groups: pd.DataFrame) -> Figure:
    """ "Actual network usage over time": mean measured rate of each 9-minute group, kbit/s (§2.8 item 2)."""
    figure, axes = _figure("Actual network usage over time", "time", "Network usage (kbps)")
    _line(axes, network_groups["time"], network_groups["rate_kbps"])
    return figure


def usage_with_actual_figure(table: pd.DataFrame) -> Figure:
    """ "Test results": measured, expected and normalised actual usage (§2.8 item 3), and the queueing share."""
    figure, axes = _figure("Test results", "time", "Network usage percentage")
    _line(axes, table["batch_start_time"], table["down_usage"], "Measured downstream usage")
    _line(axes, table["batch_start_time"], table["expected_downstream_usage"], "Expected downstream usage")
    _line(axes, table["batch_start_time"], table["actual_usage"], "Actual network usage")
    _line(axes, table["batch_start_time"], table["down_usage_queueing"], QUEUEING_LABEL)
    axes.legend()
    return figure


def error_figure(table: pd.DataFrame) -> Figure:
    """ "Error with expected usage": ``error`` against batch start time (§2.8 item 5), and ``error_queueing``."""
    figure, axes = _figure("Error with expected usage", "time", "Error")
    _line(axes, table["batch_start_time"], table["error"], f"Downstream usage (MAE {_mae(table['error']):.3f})")
    _line(
        axes,
        table["batch_start_time"],
        table["error_queueing"],
        f"{QUEUEING_LABEL} (MAE {_mae(table['error_queueing']):.3f})",
    )
    axes.legend()
    return figure


def relative_error_figure(table: pd.DataFrame) -> Figure:
    """ "Relative error with expected usage": ``relative_error`` against batch start time (§2.8 item 6)."""
    figure, axes = _figure("Relative error with expected usage", "time", "Relative error")
    _line(axes, table["batch_start_time"], table["relative_error"])
    return figure


def actual_error_figure(table: pd.DataFrame) -> Figure:
    """ "Error with actual usage": |actual − measured downstream usage| per paired batch (§2.8 item 7)."""
    figure, axes = _figure("Error with actual usage", "Time", "Error")
    _line(axes, table["batch_start_time"], table["actual_error"])
    return figure


def actual_relative_error_figure(table: pd.DataFrame) -> Figure:
    """ "Relative error with actual usage": that error / actual usage above 0.05, else the error (§2.8 item 8)."""
    figure, axes = _figure("Relative error with actual usage", "Time", "Error")
    _line(axes, table["batch_start_time"], table["actual_relative_error"])
    return figure


def scatter_figure(table: pd.DataFrame) -> Figure:
    """
    Measured against expected downstream usage, one point per compared batch and estimator, with the line y = x
    and both MAEs.
    """
    compared = table[table["error"].notna()]
    queueing = table[table["error_queueing"].notna()]
    mae, mae_queueing = _mae(compared["error"]), _mae(queueing["error_queueing"])
    title = f"Measured vs expected downstream usage\nMAE {mae:.3f} (original rule), {mae_queueing:.3f} (queueing share)"
    figure, axes = _figure(title, "Expected downstream usage", "Measured downstream usage", size_in=SCATTER_SIZE_IN)
    axes.set_aspect("equal", adjustable="datalim")
    values = np.concatenate(
        [compared["expected_downstream_usage"], compared["down_usage"], queueing["down_usage_queueing"], [0.0, 1.0]]
    )
    low, high = float(values.min()), float(values.max())
    axes.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1, label="measured = expected")
    axes.scatter(compared["expected_downstream_usage"], compared["down_usage"], s=18, label="batch, original rule")
    axes.scatter(
        queueing["expected_downstream_usage"],
        queueing["down_usage_queueing"],
        s=18,
        marker="x",
        label="batch, queueing share",
    )
    axes.legend()
    return figure


def figures(table: pd.DataFrame, network_groups: pd.DataFrame | None = None) -> dict[str, Figure]:
    """
    Every figure of a calibration, keyed by its file stem, in the order of tools spec §2.8, then the scatter.

    The figures that need the network log (actual rate, usage with actual, both actual errors) are left out
    without ``network_groups``.
    """
    result = {"usage": usage_figure(table)}
    if network_groups is not None:
        result["actual-rate"] = actual_rate_figure(network_groups)
        result["usage-actual"] = usage_with_actual_figure(table)
    result["error"] = error_figure(table)
    result["relative-error"] = relative_error_figure(table)
    if network_groups is not None:
        result["actual-error"] = actual_error_figure(table)
        result["actual-relative-error"] = actual_relative_error_figure(table)
    result["scatter"] = scatter_figure(table)
    return result


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (what the notebook displays)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_plots(named_figures: dict[str, Figure], directory: str | Path) -> list[Path]:
    """Write each figure as ``<directory>/<stem>.png``; return the paths in order."""
    paths = []
    for stem, figure in named_figures.items():
        path = Path(directory) / f"{stem}.png"
        figure.savefig(path, format="png", dpi=DPI)
        paths.append(path)
    return paths
