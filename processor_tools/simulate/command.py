"""``python -m processor simulate``: a condenser tree, or a calibration experiment, from the command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from processor_tools.simulate.model import DEFAULT_START_S
from processor_tools.simulate.tree import simulate_tree

EXIT_OK = 0  #: The tree or the experiment was written.
EXIT_FAILED = 1  #: It could not be written (permissions, disk, a file in the way); one line on stderr says why.
EXIT_USAGE = 2  #: Bad arguments, or OUT is a file or a non-empty directory; nothing was written.

DESCRIPTION = """\
Write a synthetic condenser tree (--out) or a simulated calibration experiment (--calibration).

--out DIR: DIR/<user>/<installation>/tix-report-<first ts>.json for --installations runs of --minutes: one probe
a second, ~60 records a file, realistic loss, delays, clock offsets and drift, midnight wraps and a
per-installation schedule of induced queueing. Prints one JSON line: installations, users, files, observations,
seconds.

--calibration DIR: one client whose download queues in 100 %, 75 %, 50 %, 25 % and 0 % of the seconds, 30 minutes
each, written as a calibration run and the batch formatter leave it: DIR/tix-time-client-logs/, DIR/batches/
(one directory per window), DIR/description.yml (that schedule) and DIR/network_usage.log (the true rate). Give
DIR/batches, DIR/description.yml and DIR/network_usage.log to `calibrate` or to the notebook. Prints one JSON line
with those three paths. Only --seed and --start apply.

The same arguments give the same files. DIR must be new or empty.
Exit status: 0 written, 1 could not write (one line on stderr), 2 usage error."""

EPILOG = """\
examples:
  python -m processor simulate --out /tmp/reports --installations 20 --minutes 25 --seed 1
  python -m processor simulate --calibration /tmp/experiment
  python -m processor calibrate --batches /tmp/experiment/batches --description /tmp/experiment/description.yml \\
      --net-usage /tmp/experiment/network_usage.log --out /tmp/experiment/calibration"""


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"not a share between 0 and 1: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``simulate`` to ``parser`` (its description and epilog included)."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="DIR", help="base directory of a condenser tree")
    target.add_argument("--calibration", type=Path, metavar="DIR", help="directory of a calibration experiment")
    parser.add_argument("--installations", type=_positive_int, help="number of installations (with --out)")
    parser.add_argument("--minutes", type=_positive_float, help="length of every run, minutes (with --out)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=int,
        default=None,
        metavar="UNIX_S",
        help=f"true Unix second the runs start (default {DEFAULT_START_S}, fixed for reproducibility)",
    )
    parser.add_argument(
        "--ip-changes", type=_share, default=0.0, metavar="SHARE", help="share of installations changing IP (0)"
    )
    parser.add_argument(
        "--gaps", type=_share, default=0.0, metavar="SHARE", help="share of installations off-line 301-900 s (0)"
    )
    parser.add_argument(
        "--ms-clocks",
        type=_share,
        default=0.25,
        metavar="SHARE",
        help="share of installations with a millisecond client clock (0.25)",
    )
    parser.add_argument(
        "--schedule",
        choices=("mixed", "idle", "moderate", "saturated"),
        default="mixed",
        help="queueing schedule of every installation (mixed)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the tree or the experiment the arguments describe; print a one-line JSON summary; return the status."""
    option, out = ("--out", args.out) if args.out is not None else ("--calibration", args.calibration)

    def fail(status: int, message: str) -> int:
        print(f"simulate: error: {message}", file=sys.stderr)
        return status

    if args.out is not None and (args.installations is None or args.minutes is None):
        return fail(EXIT_USAGE, "--out needs --installations and --minutes")
    if args.calibration is not None and (args.installations is not None or args.minutes is not None):
        return fail(EXIT_USAGE, "--installations and --minutes apply to --out, not to --calibration")
    try:
        if out.exists() and not out.is_dir():
            return fail(EXIT_USAGE, f"{option} {out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            return fail(EXIT_USAGE, f"{option} {out} is not empty; choose a new or empty directory")
        if args.calibration is not None:
            # Imported here: the experiment needs the calibration tools' requirements, the tree does not.
            from processor_tools.simulate.experiment import write_calibration_experiment

            start_s = DEFAULT_START_S if args.start is None else args.start
            print(json.dumps(write_calibration_experiment(out, seed=args.seed, start_s=start_s).as_dict()))
            return EXIT_OK
        summary = simulate_tree(
            out,
            installations=args.installations,
            minutes=args.minutes,
            seed=args.seed,
            start_s=args.start,
            ip_change_share=args.ip_changes,
            gap_share=args.gaps,
            ms_clock_share=args.ms_clocks,
            schedule=args.schedule,
        )
    except OSError as error:
        where = f" ({error.filename})" if error.filename and Path(error.filename) != out else ""
        return fail(EXIT_FAILED, f"cannot write {out}: {error.strerror or error}{where}")
    print(json.dumps(summary.as_dict()))
    return EXIT_OK
