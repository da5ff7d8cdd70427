"""Crash-safe file replacement: temporary file in the same directory, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def _background_executor() -> ThreadPoolExecutor:
    """The one thread of this process for deferred effects (a child made by fork starts its own)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():
            _executor = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="effects"))
        return _executor[1]


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _after(earlier: tuple[Future[None], ...], job: Callable[[], None], if_skipped: Callable[[], None] | None) -> None:
    # The jobs run one at a time in submission order, so the earlier ones have ended here.
    if any(future.exception() is not None for future in earlier):
        if if_skipped is not None:
            if_skipped()
        return
    job()


class DeferredEffects:
    """
    fsyncs and other file effects that run in a background thread, in the order they were started, while the
    caller goes on; the caller waits for them (:meth:`wait`) before its next side effect.

    The caller computes (reads reports, analyses a window) while the disk flushes or while files are removed,
    instead of after it. The order of everything another process or a crash can observe is unchanged: the jobs
    run one after the other in the order given, and :meth:`wait` comes before the next effect (an installation run
    calls it from its fence). A process crash in between loses nothing either: what was written and renamed is in
    the kernel already; only a machine crash before :meth:`wait` may lose it, as it may lose it before a
    synchronous fsync returned.
    """

    def __init__(self) -> None:
        self._pending: list[Future[None]] = []

    def call(self, job: Callable[[], None], *, if_skipped: Callable[[], None] | None = None) -> None:
        """
        Run ``job`` in the background after the jobs started before it, and only if they all succeeded: a
        disposal never follows a failed fsync. A skipped job calls ``if_skipped`` instead (to release resources).
        """
        earlier = tuple(self._pending)
        self._pending.append(_background_executor().submit(_after, earlier, job, if_skipped))

    def fsync(self, fd: int) -> None:
        """fsync ``fd`` in the background, then close it; the caller must not use ``fd`` any more."""
        try:
            self.call(functools.partial(_fsync_and_close, fd), if_skipped=functools.partial(os.close, fd))
        except BaseException:
            os.close(fd)
            raise

    def fsync_directory(self, directory: Path) -> None:
        """Flush ``directory``'s entries in the background (see :func:`fsync_directory`)."""
        self.fsync(os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))

    @property
    def pending(self) -> bool:
        """Whether jobs were started since the last :meth:`wait`."""
        return bool(self._pending)

    def wait(self) -> None:
        """Wait for every job started so far; raise the first one's exception (after waiting for all)."""
        errors = [future.exception() for future in self._pending]  # interrupted here, nothing is forgotten
        self._pending = []
        for error in errors:
            if error is not None:
                raise error


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    purpose: str,
    mode: int = 0o640,
    exclusive: bool = False,
    deferred: DeferredEffects | None = None,
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
    deferred : DeferredEffects, optional
        Start the final fsync of the directory there instead of waiting for it; the file itself is fsynced
        before the rename in any case.

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
    if deferred is not None:
        deferred.fsync_directory(directory)
    else:
        fsync_directory(directory)
