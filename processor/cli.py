"""``python -m processor``: offline analysis, the report generator and the operator's commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0  #: Every PATH was analysed / the command did what was asked.
EXIT_FAILED = 1  #: It ran, and some PATH was not analysable or the run failed.
EXIT_USAGE = 2  #: Bad arguments or configuration; nothing was done.


def analyse_path(path: Path) -> dict[str, Any]:
    """Analyse the report files of ``path`` (a directory, or one file) as one window; never raises for bad input."""
    from processor.analysis import analyse
    from processor.errors import NotAnalysable, UnusableReport
    from processor.reports.files import read_report, report_candidates
    from processor.reports.records import window_observations

    try:
        if path.is_dir():
            files = [path / name for name in report_candidates(path)]
        elif path.exists() or path.is_symlink():
            files = [path]
        else:
            return {"path": str(path), "ok": False, "error": "not_found"}
        if not files:
            return {"path": str(path), "ok": False, "error": "no_report_files"}
        reports = [read_report(file) for file in files]
        result = analyse(window_observations([report.observations for report in reports]))
    except UnusableReport as error:
        return {"path": str(path), "ok": False, "error": f"{error.path.name}: {error.reason}", "detail": error.detail}
    except NotAnalysable as error:
        return {"path": str(path), "ok": False, "error": error.reason}
    except OSError as error:
        return {"path": str(path), "ok": False, "error": f"io_error: {error.strerror or error}"}
    return {"path": str(path), "ok": True, "results": result.as_results_dict()}


def _analyze(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.paths:
        line = analyse_path(Path(path))
        if not line["ok"]:
            status = EXIT_FAILED
        print(json.dumps(line), flush=False)
    sys.stdout.flush()
    return status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from processor import simulate

    parser = argparse.ArgumentParser(
        prog="python -m processor",
        description="TiX time processor: analyse windows offline, generate report trees, run and watch the service.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser(
        "analyze",
        help="analyse each PATH (a directory of report files, or one file) as one window",
        description=(
            "Analyse each PATH as a single window: all observations of its report files, de-duplicated and in\n"
            "time order; no window selection, nothing is deleted. One JSON line per PATH:\n"
            '  {"path": ..., "ok": true, "results": {...}}   or   {"path": ..., "ok": false, "error": "<reason>"}\n'
            "Exit status: 0 all analysed, 1 some not analysable, 2 usage error."
        ),
        epilog="examples:\n  python -m processor analyze ../shared/data/calibration/batch-test-report-1b/1505080698\n"
        "  python -m processor analyze batches/*/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("paths", nargs="+", metavar="PATH")
    analyze.set_defaults(handler=_analyze)

    generate = commands.add_parser(
        "simulate",
        help="write a synthetic condenser tree (users/installations/report files)",
        epilog="example:\n  python -m processor simulate --out /tmp/reports --installations 20 --minutes 25 --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_arguments(generate)
    generate.set_defaults(handler=simulate.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    return int(args.handler(args))
