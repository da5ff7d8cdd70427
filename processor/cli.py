"""``python -m processor``: offline analysis, the report generator and the operator's commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0  #: Every PATH was analysed / the command did what was asked (process: every window delivered).
EXIT_FAILED = 1  #: It ran, and some PATH was not analysable or the run failed (process: an installation run).
EXIT_USAGE = 2  #: Bad arguments or configuration; nothing was done.
EXIT_BACKED_UP = 3  #: process: results were kept in failed-results/, tix-api unreachable or refusing them.
EXIT_UNLISTABLE = 4  #: process: the reports base directory cannot be listed; no installation was run.

#: The ``exit`` of the summary line of ``process`` for each of its statuses (H8).
PROCESS_EXITS = {
    EXIT_OK: "ok",
    EXIT_FAILED: "run_failed",
    EXIT_BACKED_UP: "backed_up",
    EXIT_UNLISTABLE: "base_unlistable",
}


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


def _process(args: argparse.Namespace) -> int:
    """One processing cycle over the whole tree in this process, through the Celery task's code path."""
    import dataclasses
    import logging

    from processor.config import load_config_or_exit
    from processor.installation.cycle import process_tree
    from processor.installation.summary import RunSummary
    from processor.logs import event_logger

    config = load_config_or_exit()
    if args.reports is not None:
        config = dataclasses.replace(config, reports_base_path=Path(args.reports))
    if not config.reports_base_path.is_dir():
        print(f"error: not a directory: {config.reports_base_path}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=config.log_level_number, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dry_run = args.dry_run or not config.api_credentials_present
    if dry_run and not args.dry_run:
        logging.getLogger(__name__).warning("no API credentials: dry run, nothing is posted or deleted")
    totals: dict[str, int] = {}
    failed = api_failed = 0

    def done(summary: RunSummary) -> None:
        nonlocal failed, api_failed
        failed += summary.outcome not in ("done", "busy", "invalid")
        api_failed += summary.api_failed
        for window in summary.windows:
            totals[window.outcome] = totals.get(window.outcome, 0) + 1
            if window.payload is not None and dry_run:
                line = {"user": summary.user_id, "installation": summary.installation_id}
                print(json.dumps({**line, "payload": window.payload}))

    try:
        installations = process_tree(config, dry_run=dry_run, done=done)
    except OSError as exc:
        log = event_logger(__name__)
        log.error("cannot list the reports base directory", base=config.reports_base_path, error=exc.strerror or exc)
        installations, status = 0, EXIT_UNLISTABLE
    else:
        # H8: a failed run outranks results kept back; both are told apart from a cycle that delivered everything.
        status = EXIT_FAILED if failed else EXIT_BACKED_UP if totals.get("backed_up") or api_failed else EXIT_OK
    summary_line = {"installations": installations, "windows": totals, "dry_run": dry_run, "failed_runs": failed}
    print(json.dumps({"summary": {**summary_line, "exit": PROCESS_EXITS[status]}}))
    return status


def _config(args: argparse.Namespace) -> int:
    """Every problem and warning of the environment, one line each on stderr; with --print-env, values for eval."""
    import os
    import shlex

    from processor.preflight import check

    config, problems, warnings = check(os.environ)
    for problem in problems:
        print(f"configuration error: {problem}", file=sys.stderr)
    for warning in warnings:
        print(f"configuration warning: {warning}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    if args.print_env:
        values = {
            "PROCESSOR_TYPE": config.processor_type,
            "CELERY_LOG_LEVEL": config.log_level,
            "CELERY_BEAT_SCHEDULE_DIR": str(config.beat_schedule_dir),
            "TIX_WORKER_CONCURRENCY": "" if config.worker_concurrency is None else str(config.worker_concurrency),
        }
        sys.stdout.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items()))
    return EXIT_OK


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Help, options and handler of the configuration check, for ``config`` and ``python -m processor.config``."""
    parser.description = (
        "Check the environment variables (README, Configuration) for the PROCESSOR_TYPE mode: the values, then\n"
        "the directories and files of the mode (an unknown mode is checked as STANDALONE, which covers the\n"
        "other two). Every problem is one line 'configuration error: <VARIABLE>: <problem>' on stderr, every\n"
        "warning 'configuration warning: ...'. Exit status: 0 valid (warnings allowed), 2 problems.\n"
        "The container entrypoint runs the same check as `python -m processor.config --check`."
    )
    parser.epilog = (
        "examples:\n  python -m processor config --check\n"
        "  PROCESSOR_TYPE=worker TIX_REPORTS_BASE_PATH=/srv/reports python -m processor config --check\n"
        "  PROCESSOR_TYPE=beat python -m processor.config --check --print-env"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--check", action="store_true", help="validate (the default action; kept for scripts)")
    parser.add_argument("--print-env", action="store_true", help="print normalised PROCESSOR_TYPE, … for eval")
    parser.set_defaults(handler=_config)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from processor_tools import simulate, status
    from processor_tools.calibration import command as calibration

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
        epilog="examples:\n  python -m processor simulate --calibration /tmp/experiment\n"
        "  python -m processor analyze /tmp/experiment/batches/*/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("paths", nargs="+", metavar="PATH")
    analyze.set_defaults(handler=_analyze)

    generate = commands.add_parser(
        "simulate", help="write a synthetic condenser tree, or a simulated calibration experiment"
    )
    simulate.add_arguments(generate)
    generate.set_defaults(handler=simulate.run)

    process = commands.add_parser(
        "process",
        help="run one processing cycle over the whole reports tree in this process (no broker)",
        description=(
            "One processing cycle over every installation of the reports tree, in this process, through exactly\n"
            "the code path of the Celery task. With --dry-run, or without TIX_API_USER/TIX_API_PASSWORD, nothing\n"
            "is posted, written or deleted: the payloads that would be sent are printed as JSON lines.\n"
            "The last line is a JSON summary. Configuration comes from the TIX_* variables (see README).\n"
            "\n"
            'exit status (the summary\'s "exit" names it):\n'
            "  0  ok: every installation run ended normally and every analysed window was delivered (or dry run)\n"
            "  1  run_failed: an installation run failed (I/O error, lost lock, unexpected exception);\n"
            "     the cycle went on with the other installations\n"
            "  2  usage error or bad configuration; nothing was done\n"
            "  3  backed_up: results were backed up in failed-results/ (tix-api unreachable or refusing)\n"
            "  4  base_unlistable: the reports base directory cannot be listed"
        ),
        epilog="examples:\n  python -m processor process --reports /tmp/reports --dry-run\n"
        "  TIX_API_USER=admin TIX_API_PASSWORD=... TIX_API_HOST=tix-api python -m processor process",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    process.add_argument("--reports", metavar="DIR", help="reports tree (default: TIX_REPORTS_BASE_PATH)")
    process.add_argument("--dry-run", action="store_true", help="post nothing, change nothing, print the payloads")
    process.set_defaults(handler=_process)

    watch = commands.add_parser(
        "status", help="read-only status of the reports tree (table, --json, --prometheus, --textfile)"
    )
    status.add_arguments(watch)
    watch.set_defaults(handler=status.run)

    calibrate = commands.add_parser(
        "calibrate", help="compare the estimates of a calibration experiment's batches with its ground truth"
    )
    calibration.add_arguments(calibrate)
    calibrate.set_defaults(handler=calibration.run)

    add_config_arguments(
        commands.add_parser("config", help="check the environment variables: every problem and warning at once")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    return int(args.handler(args))
