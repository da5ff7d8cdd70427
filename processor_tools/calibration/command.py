"""``python -m processor calibrate``: a calibration analysis from the command line (CSV, plots, JSON summary)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0  #: The CSV, the plots and the summary were written.
EXIT_FAILED = 1  #: It ran and failed (no batch directory, none analysable, an I/O error); one line on stderr says why.
EXIT_USAGE = 2  #: Bad arguments, or a description / network log that cannot be read; nothing was written.

#: Name of the table written into ``--out``.
CSV_NAME = "calibration.csv"

DESCRIPTION = """\
Analyse every batch directory of a calibration experiment (the extracted archive of the batch formatter) as the
service would, compare the measured downstream usage (the original rule, and the queueing share beside it) with
the usage the test description implies (and, with --net-usage, with the rate the test machine logged), and write
into --out:
  calibration.csv   one row per batch directory (empty cells for a batch that could not be analysed);
                    down_usage_queueing, error_queueing, relative_error_queueing for the queueing share
  usage.png         measured (both estimators) and expected downstream usage over time (UTC)
  error.png, relative-error.png (both estimators; the relative error only where the expected usage is at
                    least 0.1), scatter.png (measured vs expected, both estimators)
  actual-rate.png, usage-actual.png, actual-error.png, actual-relative-error.png   (with --net-usage)
Titles name the experiment (--name, default the directory of --description); lines are broken where no batch
started for more than 20 minutes; the CSV's times are UTC. Batches that cannot be analysed are listed on stderr.
The last line on stdout is a JSON summary:
  {"batches", "windows", "not_analysable", "reasons", "compared", "mae", "median_ae", "max_ae", ...,
   "mae_queueing", "median_ae_queueing", "max_ae_queueing"}
Exit status: 0 written, 1 no batch analysed or I/O error, 2 usage error or unreadable description."""

EPILOG = """\
examples:
  python -m processor simulate --calibration /tmp/experiment
  python -m processor calibrate --batches /tmp/experiment/batches --description /tmp/experiment/description.yml \\
      --net-usage /tmp/experiment/network_usage.log --out /tmp/experiment/calibration
  mkdir run/batches && tar -xzf run/batch-test-report.tar.gz -C run/batches/
  python -m processor calibrate --batches run/batches --description run/description.yml --out run/calibration"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``calibrate`` to ``parser`` (its description and epilog included)."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--batches", required=True, type=Path, metavar="DIR", help="directory of batch directories")
    parser.add_argument("--description", required=True, type=Path, metavar="FILE", help="the test's description.yml")
    parser.add_argument("--net-usage", type=Path, metavar="FILE", help="the test's network_usage.log (optional)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created if needed)")
    parser.add_argument("--name", help="experiment name in the plot titles (default: the directory of --description)")


def run(args: argparse.Namespace) -> int:
    """Run ``calibrate`` with parsed ``args``; return the exit status."""
    from processor.errors import BadDescription
    from processor_tools.calibration import plots
    from processor_tools.calibration.table import calibrate, summary_line, write_csv

    def fail(status: int, message: str) -> int:
        print(f"calibrate: error: {message}", file=sys.stderr)
        return status

    if not args.batches.is_dir():
        return fail(EXIT_USAGE, f"--batches {args.batches} is not a directory")
    if not args.description.is_file():
        return fail(EXIT_USAGE, f"--description {args.description} is not a file")
    if args.net_usage is not None and not args.net_usage.is_file():
        return fail(EXIT_USAGE, f"--net-usage {args.net_usage} is not a file")
    try:
        calibration = calibrate(args.batches, args.description, args.net_usage, name=args.name)
    except BadDescription as error:
        return fail(EXIT_USAGE, str(error))
    except OSError as error:
        return fail(EXIT_FAILED, f"{error.filename or ''}: {error.strerror or error}")
    if not calibration.outcomes:
        return fail(EXIT_FAILED, f"no batch directory (decimal name) in {args.batches}")
    for outcome in calibration.outcomes:
        if outcome.reason:
            print(f"batch not analysable batch={outcome.name} reason={outcome.reason}", file=sys.stderr)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        csv = write_csv(calibration.table, args.out / CSV_NAME)
        figures = plots.figures(calibration.table, calibration.network_groups, calibration.name)
        pngs = plots.write_plots(figures, args.out)
    except OSError as error:
        return fail(EXIT_FAILED, f"{error.filename or ''}: {error.strerror or error}")
    print(summary_line(calibration.table, csv=str(csv), plots=[str(path) for path in pngs]), flush=True)
    analysed = calibration.table["batch_end"].notna().any()
    return EXIT_OK if analysed else EXIT_FAILED
