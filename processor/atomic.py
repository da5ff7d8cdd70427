"""Crash-safe file replacement: temporary file in the same directory, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

#: Name prefix of every temporary file the processor creates (windows.md §9.1); recovery removes old ones.
TEMP_PREFIX = ".tix-tmp-"

#: Allowed characters of the ``purpose`` part of a temporary name.
_PURPOSE_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def temp_name(purpose: str) -> str:
    """
    Return a fresh temporary file name ``.tix-tmp-<purpose>-<random>``.

    Parameters
    ----------
    purpose : str
        Short word naming what is written (``state``, ``failed-result``, ``lock``); letters, digits, ``_`` and
        ``-`` only.

    Returns
    -------
    str
        The name, with 16 random hexadecimal characters at the end.
    """
    if not _PURPOSE_RE.match(purpose):
        raise ValueError(f"`purpose` must be letters, digits, '_' or '-', got {purpose!r}")
    return f"{TEMP_PREFIX}{purpose}-{secrets.token_hex(8)}"


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename, a creation, a removal) to stable storage."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    purpose: str,
    mode: int = 0o640,
    exclusive: bool = False,
) -> None:
    """
    Write ``data`` to ``path`` so that a reader sees either the old content or the new one, never a mixture.

    The bytes go to a temporary file ``.tix-tmp-<purpose>-<random>`` in the directory of ``path``, which is
    flushed and fsynced, then renamed over ``path``; finally the directory is fsynced so the rename survives a
    crash (windows.md §9.1).

    Parameters
    ----------
    path : Path
        Target file. Its directory must exist.
    data : bytes
        The complete new content.
    purpose : str
        Word used in the temporary name (see :func:`temp_name`).
    mode : int
        Permission bits of the new file, applied exactly (not reduced by the umask). Default 0o640.
    exclusive : bool
        If true, never replace an existing ``path``: the temporary file is hard-linked to ``path`` instead of
        renamed, and :class:`FileExistsError` is raised when the name is taken (the temporary file is removed).

    Raises
    ------
    OSError
        Any failure to create, write, sync or rename; the temporary file is removed on a best-effort basis and
        ``path`` is left as it was.
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / temp_name(purpose)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not change the documented mode
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # fails with FileExistsError when the name is taken
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)
