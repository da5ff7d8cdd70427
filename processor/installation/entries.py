"""
The bookkeeping entries of an installation are used only when ``lstat`` shows what they should be (H1).

Whoever may write into an installation directory can put a symbolic link, a FIFO or a device where the processor
keeps ``failed-results/``, ``failed-results/rejected/``, ``invalid-reports/``, ``.tix-processor-state`` or
``.tix-processor.lock``. Such an entry is never followed nor opened: it is renamed aside in its own directory as
``.<name>.unsafe-<unix seconds>`` (a rename does not follow a link), logged at ERROR, and the caller goes on as if
the entry were missing, so that a fresh one is made. Crash leftovers (temporary files, stale lock names) older
than an hour are removed.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from processor.atomic import TEMP_PREFIX
from processor.logs import EventLogger, event_logger
from processor.reports.files import MAX_MTIME_AHEAD_S

log = event_logger(__name__)

EntryKind = Literal["directory", "file"]

#: Infix of the name an unsafe entry is renamed to: ``.<name>.unsafe-<unix seconds>``.
UNSAFE_INFIX = ".unsafe-"

#: Prefix of the transient name of an expired lock being taken over; the token of the taker follows.
STALE_PREFIX = ".tix-processor.lock.stale-"

#: Age after which temporary files and stale lock names left by a crash are removed, in seconds.
LEFTOVER_AGE_S = 3600.0


def unsafe_name(name: str, now_s: float) -> str:
    """``.<name>.unsafe-<unix seconds>``, with one leading dot whatever ``name`` starts with."""
    return f".{name.lstrip('.')}{UNSAFE_INFIX}{int(now_s)}"


def usable_entry(path: Path, kind: EntryKind, run_log: EventLogger = log) -> bool:
    """
    True when ``path`` is a real directory or regular file (``kind``); False when it is missing.

    Anything else is renamed aside (``.<name>.unsafe-<ts>``, a free ``-<n>`` added when taken), logged at ERROR,
    and False is returned. ``OSError`` other than a vanished entry propagates.
    """
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    if stat.S_ISDIR(mode) if kind == "directory" else stat.S_ISREG(mode):
        return True
    target = path.with_name(unsafe_name(path.name, time.time()))
    suffix = 0
    while os.path.lexists(target):
        suffix += 1
        target = path.with_name(f"{unsafe_name(path.name, time.time())}-{suffix}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return False
    run_log.error(
        "unsafe bookkeeping entry set aside",
        entry=path.name,
        expected=kind,
        found=_kind_of(mode),
        moved_to=target.name,
        directory=path.parent,
    )
    return False


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "device_or_socket"


def remove_leftovers(directories: Iterable[Path], fence: Callable[[], None], run_log: EventLogger) -> None:
    """
    Remove the ``.tix-tmp-*`` and ``.tix-processor.lock.stale-*`` files of ``directories`` older than
    :data:`LEFTOVER_AGE_S` or dated ahead (H5), each right after ``fence()``; ``OSError`` propagates.
    """
    now = time.time()
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                leftovers = [entry for entry in entries if entry.name.startswith((TEMP_PREFIX, STALE_PREFIX))]
        except FileNotFoundError:
            continue
        for entry in leftovers:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) or -MAX_MTIME_AHEAD_S <= now - info.st_mtime < LEFTOVER_AGE_S:
                    continue
                fence()
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            run_log.info("crash leftover removed", name=entry.name)
