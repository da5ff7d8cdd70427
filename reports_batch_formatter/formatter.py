"""
Batch formatter: cut a directory of client logs or server reports into the service's windows (tools spec §1).

``python formatter.py --source_directory=DIR --output_directory=DIR [--output_filename NAME]``, run from this
directory, from the project root (``python reports_batch_formatter/formatter.py``) or as
``python -m reports_batch_formatter``. Each window becomes a directory named after the first observation second of
its first file, holding that window's files, in the gzip-compressed tar archive
``<output_directory>/batch-test-report.tar.gz``; the files never consumed go to the archive's top level. The
windows are formed by :func:`processor.reports.windows.iter_windows`, the service's own selection code. The
source directory is only read.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Started as a script (``python formatter.py``): the original prepended the project root so that the
    # ``processor`` package is found without being installed. Harmless when it is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from processor_tools.calibration.batches import Plan, bar_disabled, plan_batches

EXIT_OK = 0  #: The archive was written.
EXIT_FAILED = 1  #: It ran and failed; one line on stderr says why. Nothing was written.
EXIT_USAGE = 2  #: Bad arguments (argparse).

#: Archive name when ``--output_filename`` is not given.
DEFAULT_OUTPUT_FILENAME = "batch-test-report.tar.gz"


class FormatterError(Exception):
    """A failure the command reports in one line with exit status 1."""


def snapshot(source: Path, into: Path) -> tuple[list[str], list[str]]:
    """
    Copy every non-empty regular file directly in ``source`` into ``into`` (tools spec §1.2 step 1).

    Returns the names copied and the names skipped (empty files, and, change S10, directories, symbolic links and
    other special entries), both in name order. ``source`` is only read.
    """
    copied: list[str] = []
    skipped: list[str] = []
    for name in sorted(os.listdir(source)):
        path = source / name
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            skipped.append(name)
            continue
        shutil.copy2(path, into / name, follow_symlinks=False)
        copied.append(name)
    return copied, skipped


def _directory_member(name: str, mtime_s: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(mtime_s)
    return info


def write_archive(directory: Path, plan: Plan, archive: Path, *, progress: bool | None = None) -> None:
    """
    Write the gzip-compressed tar ``archive`` of ``plan``, taking the files from ``directory``.

    Members (tools spec §1.2 step 3, change S10): each batch directory in ascending numeric order followed by its
    files in name order, then the left-over files in name order; no root entry, nothing else. The archive is
    written under a temporary name beside ``archive`` and renamed into place, so a failed run leaves no partial
    archive; it gets the mode of any new file (0644 under the usual umask 022).
    """
    now_s = time.time()
    # Not mkstemp, which makes 0600 whatever the umask: created exclusively ("x"), the archive gets the umask's mode.
    partial = archive.parent / f".{archive.name}.{secrets.token_hex(8)}.partial"
    try:
        total = sum(len(batch.files) for batch in plan.batches) + len(plan.left_over)
        with (
            tarfile.open(partial, "x:gz") as tar,
            tqdm(total=total, desc="archiving", unit="file", disable=bar_disabled(progress)) as bar,
        ):
            for batch in sorted(plan.batches, key=lambda item: int(item.name)):
                tar.addfile(_directory_member(batch.name, now_s))
                for name in sorted(batch.files):
                    tar.add(directory / name, arcname=f"{batch.name}/{name}", recursive=False)
                    bar.update()
            for name in plan.left_over:
                tar.add(directory / name, arcname=name, recursive=False)
                bar.update()
        os.replace(partial, archive)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def format_batches(
    source: Path,
    output_directory: Path,
    output_filename: str = DEFAULT_OUTPUT_FILENAME,
    *,
    progress: bool | None = None,
) -> tuple[Plan, Path]:
    """
    Snapshot ``source``, form its batches and write the archive; return the plan and the archive's path.

    The snapshot lives in a fresh temporary directory that is always deleted (tools spec §1.2 steps 1 and 4).

    Raises
    ------
    FormatterError
        When ``source`` is not a directory, ``output_directory`` does not exist or lies inside ``source`` (the
        source is never modified), or two windows start in the same second.
    OSError
        When a file cannot be read or the archive cannot be written.
    """
    if not source.is_dir():
        raise FormatterError(f"source directory {source} is not a directory")
    if not output_directory.is_dir():
        raise FormatterError(f"output directory {output_directory} does not exist")
    resolved_source, resolved_output = source.resolve(), output_directory.resolve()
    if resolved_output == resolved_source or resolved_source in resolved_output.parents:
        raise FormatterError(f"output directory {output_directory} is inside the source directory, which is read-only")
    if not output_filename or "/" in output_filename or output_filename in (".", ".."):
        raise FormatterError(f"output file name {output_filename!r} is not a plain file name")
    archive = output_directory / output_filename
    with tempfile.TemporaryDirectory(prefix="tix-batches-") as temporary:
        copy = Path(temporary)
        _, skipped = snapshot(source, copy)
        plan = plan_batches(copy, progress=progress)
        plan = Plan(plan.batches, plan.left_over, plan.invalid, plan.discarded, tuple(skipped))
        names = [batch.name for batch in plan.batches]
        taken = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if taken is not None:
            raise FormatterError(f"batch directory {taken} already exists (two windows start in the same second)")
        write_archive(copy, plan, archive, progress=progress)
    return plan, archive


def build_parser() -> argparse.ArgumentParser:
    """The command line of tools spec §1.1."""
    parser = argparse.ArgumentParser(
        prog="formatter.py",
        description=(
            "Cut a directory of TiX client logs or server reports into the windows the processor would form, and\n"
            "write them as batch directories (named after each window's first observation second) into a\n"
            "gzip-compressed tar archive. The source directory is only read."
        ),
        epilog=(
            "examples:\n"
            "  python formatter.py --source_directory=../test/tix-time-client-logs --output_directory=../test\n"
            "  python -m reports_batch_formatter --source_directory=logs --output_directory=out -o run1.tar.gz\n"
            "then:\n"
            "  mkdir batches && tar -xzf out/run1.tar.gz -C batches/\n"
            "exit status: 0 archive written, 1 failure (one line on stderr), 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source_directory", required=True, type=Path, help="directory of *-tix-log.json files")
    parser.add_argument("--output_directory", required=True, type=Path, help="existing directory for the archive")
    parser.add_argument(
        "--output_filename",
        "-o",
        default=DEFAULT_OUTPUT_FILENAME,
        help=f"archive name (default {DEFAULT_OUTPUT_FILENAME})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the formatter; return the exit status (argparse exits with 2 itself on bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        plan, archive = format_batches(args.source_directory, args.output_directory, args.output_filename)
    except FormatterError as error:
        print(f"formatter.py: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"formatter.py: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    for name in plan.skipped:
        print(f"skipped (empty or not a regular file): {name}", file=sys.stderr)
    for item in plan.invalid:
        detail = f" ({item.detail})" if item.detail else ""
        print(f"set aside unusable file: {item.name}: {item.reason}{detail}", file=sys.stderr)
    for discard in plan.discarded:
        names = discard.names
        span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        print(f"dropped by the {discard.reason} rule: {len(names)} files, {span}", file=sys.stderr)
    print(f"{len(plan.batches)} batches, {len(plan.left_over)} files left over: {archive}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
