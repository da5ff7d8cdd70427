"""
The calibration figures (tools spec §2.8, plus a measured-vs-expected scatter), drawn on matplotlib's Agg canvas.

Every figure names the experiment in its title; time axes are in UTC; a line is broken where no point falls for
more than :data:`MAX_JOINED_GAP_S`. Each figure of the measured downstream usage also shows the queueing-share
estimate beside the original rule, against the same ground truth.
"""

from __future__ import annotations

import io
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import dates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Size of every figure, in inches (at :data:`DPI` dots per inch).
FIGURE_SIZE_IN = (10.0, 4.5)
#: Size of the scatter plot, in inches (square: both axes are usage shares).
SCATTER_SIZE_IN = (6.0, 6.0)
#: Resolution of the PNG files.
DPI = 100

#: Longest time between two consecutive points that a line joins, seconds: about one window's length. Batches
#: start about 9 minutes apart and span about 19, so one missing batch stays joined; a longer step means time that
#: no window covered, and the line leaves it empty.
MAX_JOINED_GAP_S = 1200.0

#: Smallest expected usage whose batches the relative-error plot shows: below it, dividing by the expected usage
#: turns small absolute errors into huge ratios that flatten every other point.
RELATIVE_ERROR_FLOOR = 0.1

#: Legend labels of the two estimators.
ORIGINAL_LABEL = "Downstream usage"
QUEUEING_LABEL = "Downstream usage (queueing share)"

TIME_LABEL = "time (UTC)"


def _figure(
    title: str, experiment: str, xlabel: str, ylabel: str, *, size_in: tuple[float, float] = FIGURE_SIZE_IN
) -> tuple[Figure, Axes]:
    # A bare Figure with its own Agg canvas: no pyplot, no global backend or state, safe in any process.
    figure = Figure(figsize=size_in, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(f"{title} — {experiment}" if experiment else title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if xlabel == TIME_LABEL:
        # matplotlib.dates has no annotations: its two constructors are untyped calls.
        locator = dates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    return figure, axes


def broken_at_gaps(times: pd.Series, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """
    The points with a value, in time order, with a NaN point inserted wherever two consecutive points lie more
    than :data:`MAX_JOINED_GAP_S` apart, so that a line plot leaves the gap empty.
    """
    present = times.notna() & values.notna()
    points = pd.DataFrame({"time": times[present], "value": values[present].astype("float64")}).sort_values("time")
    step_s = points["time"].diff().dt.total_seconds()
    gaps = points[step_s > MAX_JOINED_GAP_S]
    breaks = pd.DataFrame({"time": gaps["time"] - pd.Timedelta(seconds=MAX_JOINED_GAP_S / 2), "value": np.nan})
    joined = pd.concat([points, breaks]).sort_values("time", kind="stable")
    return joined["time"], joined["value"]


def _line(axes: Axes, times: pd.Series, values: pd.Series, label: str | None = None) -> None:
    x, y = broken_at_gaps(times, values)
    axes.plot(x, y, marker="o", markersize=3, label=label)


def _mae(errors: pd.Series) -> float:
    """Mean of the errors present, NaN when there is none."""
    present = errors.dropna()
    return float(present.mean()) if len(present) else float("nan")


def usage_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Test results": measured (both estimators) and expected downstream usage by batch start (§2.8 item 1)."""
    figure, axes = _figure("Test results", experiment, TIME_LABEL, "Network usage")
    _line(axes, table["batch_start_time"], table["down_usage"], ORIGINAL_LABEL)
    _line(axes, table["batch_start_time"], table["expected_downstream_usage"], "Expected downstream usage")
    _line(axes, table["batch_start_time"], table["down_usage_queueing"], QUEUEING_LABEL)
    axes.legend()
    return figure


def actual_rate_figure(network_groups: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Actual network usage over time": mean measured rate of each 9-minute group, kbit/s (§2.8 item 2)."""
    figure, axes = _figure("Actual network usage over time", experiment, TIME_LABEL, "Network usage (kbps)")
    _line(axes, network_groups["time"], network_groups["rate_kbps"])
    return figure


def usage_with_actual_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Test results": measured, expected and normalised actual usage (§2.8 item 3), and the queueing share."""
    figure, axes = _figure("Test results", experiment, TIME_LABEL, "Network usage percentage")
    _line(axes, table["batch_start_time"], table["down_usage"], "Measured downstream usage")
    _line(axes, table["batch_start_time"], table["expected_downstream_usage"], "Expected downstream usage")
    _line(axes, table["batch_start_time"], table["actual_usage"], "Actual network usage")
    _line(axes, table["batch_start_time"], table["down_usage_queueing"], QUEUEING_LABEL)
    axes.legend()
    return figure


def error_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Error with expected usage": ``error`` and ``error_queueing`` by batch start (§2.8 item 5)."""
    figure, axes = _figure("Error with expected usage", experiment, TIME_LABEL, "Error")
    _line(axes, table["batch_start_time"], table["error"], f"{ORIGINAL_LABEL} (MAE {_mae(table['error']):.3f})")
    _line(
        axes,
        table["batch_start_time"],
        table["error_queueing"],
        f"{QUEUEING_LABEL} (MAE {_mae(table['error_queueing']):.3f})",
    )
    axes.legend()
    return figure


def relative_error_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """
    "Relative error with expected usage" (§2.8 item 6) of both estimators, for the batches whose expected usage is
    at least :data:`RELATIVE_ERROR_FLOOR`; the figure says how many it leaves out.
    """
    compared = table[table["expected_downstream_usage"].notna()]
    shown = compared[compared["expected_downstream_usage"] >= RELATIVE_ERROR_FLOOR]
    figure, axes = _figure(
        "Relative error with expected usage", experiment, TIME_LABEL, "|expected − measured| / expected"
    )
    _line(axes, shown["batch_start_time"], shown["relative_error"], ORIGINAL_LABEL)
    _line(axes, shown["batch_start_time"], shown["relative_error_queueing"], QUEUEING_LABEL)
    axes.set_ylim(bottom=0)
    left_out = len(compared) - len(shown)
    note = f"only batches with expected usage ≥ {RELATIVE_ERROR_FLOOR:g} ({left_out} of {len(compared)} left out)"
    axes.legend(title=note, title_fontsize="small")
    return figure


def actual_error_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Error with actual usage": |actual − measured downstream usage| per paired batch (§2.8 item 7)."""
    figure, axes = _figure("Error with actual usage", experiment, TIME_LABEL, "Error")
    _line(axes, table["batch_start_time"], table["actual_error"])
    return figure


def actual_relative_error_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """ "Relative error with actual usage": that error / actual usage above 0.05, else the error (§2.8 item 8)."""
    figure, axes = _figure("Relative error with actual usage", experiment, TIME_LABEL, "Error")
    _line(axes, table["batch_start_time"], table["actual_relative_error"])
    return figure


def scatter_figure(table: pd.DataFrame, experiment: str = "") -> Figure:
    """Measured against expected downstream usage, one point per compared batch and estimator, y = x, both MAEs."""
    compared = table[table["error"].notna()]
    queueing = table[table["error_queueing"].notna()]
    mae, mae_queueing = _mae(compared["error"]), _mae(queueing["error_queueing"])
    # Three short lines: the square figure is too narrow for the name on the first one.
    title = "\n".join(
        line
        for line in (
            "Measured vs expected downstream usage",
            experiment,
            f"MAE {mae:.3f} (original rule), {mae_queueing:.3f} (queueing share)",
        )
        if line
    )
    figure, axes = _figure(title, "", "Expected downstream usage", "Measured downstream usage", size_in=SCATTER_SIZE_IN)
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


def figures(table: pd.DataFrame, network_groups: pd.DataFrame | None = None, experiment: str = "") -> dict[str, Figure]:
    """
    Every figure of a calibration, keyed by its file stem, in the order of tools spec §2.8, then the scatter.

    The figures that need the network log (actual rate, usage with actual, both actual errors) are left out
    without ``network_groups``. ``experiment`` goes into every title.
    """
    result = {"usage": usage_figure(table, experiment)}
    if network_groups is not None:
        result["actual-rate"] = actual_rate_figure(network_groups, experiment)
        result["usage-actual"] = usage_with_actual_figure(table, experiment)
    result["error"] = error_figure(table, experiment)
    result["relative-error"] = relative_error_figure(table, experiment)
    if network_groups is not None:
        result["actual-error"] = actual_error_figure(table, experiment)
        result["actual-relative-error"] = actual_relative_error_figure(table, experiment)
    result["scatter"] = scatter_figure(table, experiment)
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
