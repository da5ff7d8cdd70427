"""The lease lock of one installation directory: exclusive create, renewal, fencing, takeover (windows spec §8)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from processor.atomic import atomic_write_bytes
from processor.errors import InstallationBusy, LockLost
from processor.installation.entries import STALE_PREFIX, usable_entry
from processor.logs import event_logger
from processor.reports.files import MAX_MTIME_AHEAD_S

log = event_logger(__name__)

#: Name of the lock file inside an installation directory (change D8).
LOCK_NAME = ".tix-processor.lock"

#: Default lease, in seconds (``TIX_LOCK_LEASE_SECONDS``).
DEFAULT_LEASE_S = 120.0

#: Clock difference tolerated between machines sharing the volume, in seconds.
SKEW_S = 30.0

#: Acquisition attempts per task before the installation counts as busy.
MAX_ACQUIRE_ATTEMPTS = 3

#: Largest number of bytes of a lock file read (a lock holds about 150).
MAX_LOCK_BYTES = 65536

#: O_NONBLOCK: a FIFO put at the lock path must never hold a read (H1).
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

#: Largest lease a lock may carry (``TIX_LOCK_LEASE_SECONDS`` at most), in seconds: an ``expires_at`` further
#: ahead than this plus the skew is invalid (H5).
MAX_LEASE_S = 600.0

#: Pause between renewal retries after a failed renewal, in seconds (at most lease/3).
RENEW_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class Holder:
    """The parsed content of a lock file."""

    host: str
    pid: int
    token: str
    acquired_at: float  #: Unix seconds
    expires_at: float  #: Unix seconds

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Holder | None:
        """The holder written in ``data``, or None when the content is empty or not a lock (died while writing)."""
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(document, dict):
            return None
        values: dict[str, Any] = {}
        for key, kinds in (
            ("host", (str,)),
            ("pid", (int,)),
            ("token", (str,)),
            ("acquired_at", (int, float)),
            ("expires_at", (int, float)),
        ):
            value = document.get(key)
            if isinstance(value, bool) or not isinstance(value, kinds):
                return None
            values[key] = value
        if not math.isfinite(values["expires_at"]):
            return None
        return cls(**values)


def pid_alive(pid: int) -> bool:
    """
    True unless no process with ``pid`` exists on this machine (a zombie counts as dead).

    A pid that cannot be judged (not positive) counts as alive: the lease decides instead.
    """
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # The state letter follows the command name in parentheses, which may itself contain ')'.
            return handle.read().rpartition(b")")[2].split()[0:1] != [b"Z"]
    except OSError:
        return True


@dataclass(frozen=True, slots=True)
class LockFile:
    """A lock file as read: its bytes, its mtime and the holder they name (None: empty or not a lock)."""

    data: bytes
    mtime_s: float  #: Unix seconds
    holder: Holder | None


#: Why a lock may be taken over: its holder's lease ran out, its holder died, or its expiry is implausible (H5).
StaleReason = Literal["expired", "dead_process", "invalid_expiry"]


@dataclass(frozen=True, slots=True)
class LockState:
    """
    What a lock file means at one moment, by the rule the lock itself takes over with (windows spec §8).

    ``expires_at`` is the holder's, or the file's mtime plus the lease when the content is not a lock (a holder
    that died while writing it). The lock is ``stale`` -- another process may take it over now -- when its holder
    is a process of this host that no longer exists (``"dead_process"``), or when ``now > expires_at + SKEW_S``
    (``"expired"``): the 30 s of clock skew allowed between machines sharing the volume are waited for too. An
    ``expires_at`` more than 600 s + 30 s ahead, or the mtime of a lock naming no holder more than 60 s ahead, is
    no lease at all (``"invalid_expiry"``, H5): such a lock is stale at once.
    """

    holder: Holder | None
    expires_at: float  #: Unix seconds
    stale: bool
    stale_reason: StaleReason | None


def read_lock_file(directory: Path) -> LockFile | None:
    """
    The lock file of an installation directory, read without taking it; None when there is none.

    Raises ``OSError`` for any other I/O error, and when the lock path is a symbolic link or not a regular file
    (not a lock this service wrote; never followed nor waited on).
    """
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, _READ_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "lock path is not a regular file", str(path))
        data = os.read(fd, MAX_LOCK_BYTES + 1)
    finally:
        os.close(fd)
    # H2: a lock above 64 KiB names no holder, like any unparseable lock (its expiry is then mtime + lease).
    return LockFile(data, info.st_mtime, Holder.from_json(data) if len(data) <= MAX_LOCK_BYTES else None)


def read_holder(directory: Path) -> Holder | None:
    """The holder named by the lock file of ``directory``; None when there is no lock file or it names none."""
    lock_file = read_lock_file(directory)
    return lock_file.holder if lock_file is not None else None


def judge_lock(lock_file: LockFile, now_s: float, *, lease_s: float, host: str) -> LockState:
    """The :class:`LockState` of ``lock_file`` at ``now_s`` (Unix seconds) seen from machine ``host``."""
    holder = lock_file.holder
    expires_at = holder.expires_at if holder is not None else lock_file.mtime_s + lease_s
    reason: StaleReason | None = None
    if holder is not None and holder.host == host and not pid_alive(holder.pid):
        reason = "dead_process"
    elif expires_at > now_s + MAX_LEASE_S + SKEW_S or (
        holder is None and lock_file.mtime_s > now_s + MAX_MTIME_AHEAD_S
    ):
        reason = "invalid_expiry"  # H5: no lease reaches that far, nor is a future mtime an age
    elif now_s > expires_at + SKEW_S:
        reason = "expired"
    return LockState(holder, expires_at, reason is not None, reason)


def lock_state(
    directory: Path, now_s: float, *, lease_s: float = DEFAULT_LEASE_S, host: str | None = None
) -> LockState | None:
    """
    The :class:`LockState` of the lock file of ``directory`` at ``now_s``; None when there is no lock file.

    ``lease_s`` dates an unparseable lock (default: the default lease); ``host`` is this machine's name (default
    ``socket.gethostname()``). ``OSError`` as for :func:`read_lock_file`.
    """
    lock_file = read_lock_file(directory)
    if lock_file is None:
        return None
    return judge_lock(lock_file, now_s, lease_s=lease_s, host=host if host is not None else socket.gethostname())


def _read_bytes(path: Path) -> bytes | None:
    """The first bytes of ``path`` (a link is not followed; a lock holds about 150); None if it is gone."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, MAX_LOCK_BYTES + 1)  # as much as read_lock_file reads, for the takeover's comparison
    finally:
        os.close(fd)


class _Renewals:
    """
    The renewal thread of this process: it renews every lock the process holds, each every lease/3 (sooner after
    a failure), until released or lost. One per process, started at its first lock (a forked process starts its
    own): a thread started and joined per task cost ~0.2 ms.
    """

    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._due: dict[LeaseLock, float] = {}  # lock -> monotonic time of its next renewal
        self._pid = 0

    def add(self, lock: LeaseLock) -> None:
        with self._wakeup:
            if self._pid != os.getpid():
                self._pid, self._due = os.getpid(), {}
                threading.Thread(target=self._run, name="lock-renewal", daemon=True).start()
            self._due[lock] = time.monotonic() + lock.lease_s / 3
            self._wakeup.notify()

    def remove(self, lock: LeaseLock) -> None:
        with self._wakeup:
            self._due.pop(lock, None)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                now = time.monotonic()
                due = [lock for lock, when in self._due.items() if when <= now]
                if not due:
                    self._wakeup.wait(min(self._due.values(), default=now + 3600) - now)
                    continue
            for lock in due:
                renewed = lock.renew()
                with self._wakeup:
                    if lock in self._due and lock.lost:
                        del self._due[lock]
                    elif lock in self._due:
                        interval_s = lock.lease_s / 3
                        self._due[lock] = time.monotonic() + (interval_s if renewed else min(interval_s, RENEW_RETRY_S))


_RENEWALS = _Renewals()


class LeaseLock:
    """
    Lease lock of one installation ``directory`` (windows spec §8), of ``lease_s`` seconds renewed every third.

    Use as a context manager: entering acquires (raising :class:`InstallationBusy` when another live holder
    has it) and hands the lock to the process's renewal thread (unless ``renew`` is false); leaving takes it
    back, so that no renewal can happen any more, and deletes the lock file only if it still carries this lock's
    token. Call :meth:`fence` immediately before every side effect on the installation. ``host`` defaults to
    ``socket.gethostname()`` (tests play a remote holder); ``clock`` is a wall clock in Unix seconds, never a
    monotonic one: lock times are compared across machines.
    """

    def __init__(
        self,
        directory: Path,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        host: str | None = None,
        renew: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"`lease_s` must be positive, got {lease_s!r}")
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.lease_s = float(lease_s)
        self.host = host if host is not None else socket.gethostname()
        self.token = ""
        self.expires_at = 0.0
        self._written: Holder | None = None  #: what this lock last wrote to its file, and its bytes
        self._content = b""
        self._renew = renew
        self._clock = clock
        self._held = False
        self._lost: str | None = None
        self._mutex = threading.Lock()  # a renewal and the release never overlap
        self._log = log.bind(directory=self.directory)

    # -- acquisition -------------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lock or raise :class:`InstallationBusy`; ``OSError`` on an I/O error of the volume."""
        if self._held:
            raise RuntimeError("lock already held")
        self.token = secrets.token_hex(16)  # new for every acquisition
        usable_entry(self.path, "file", self._log)  # H1: a link or a FIFO there is set aside, never followed
        holder = ""
        for _ in range(MAX_ACQUIRE_ATTEMPTS):
            if self._create():
                self._held = True
                self._lost = None
                # Hold intervals per installation, with host and pid, make overlaps measurable (reliability §5).
                self._log.debug("lock acquired", pid=os.getpid(), token=self.token[:8])
                if self._renew:
                    _RENEWALS.add(self)
                return
            seen = read_lock_file(self.directory)
            if seen is None:
                continue  # released meanwhile: start again with the exclusive create
            judged = judge_lock(seen, self._clock(), lease_s=self.lease_s, host=self.host)
            holder = _describe(judged)
            if not judged.stale or not self._take_over(seen.data, judged):
                raise InstallationBusy(self.directory, holder)
        raise InstallationBusy(self.directory, holder)

    def _create(self) -> bool:
        """Exclusive create of the lock file with this lock's content, flushed and fsynced; False if it exists."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o640)
        except FileExistsError:
            return False
        now = self._clock()
        self.expires_at = now + self.lease_s
        self._written = Holder(self.host, os.getpid(), self.token, now, self.expires_at)
        content = self._content = self._written.to_json()
        try:
            os.fchmod(fd, 0o640)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        # No fsync of the directory (windows spec §8 asks for the file's only): after a machine crash no holder is
        # alive, and a lost lock file is as good as a stale one.
        return True

    def _take_over(self, judged: bytes, state: LockState) -> bool:
        """
        Remove a stale lock whose bytes were ``judged``; True when the caller may create a new one.

        The lock is renamed to ``.tix-processor.lock.stale-<own token>`` and compared with what was judged: a
        fresh lock created in between is put back with a hard link and the installation counts as busy.
        """
        stale = self.directory / f"{STALE_PREFIX}{self.token}"
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return True  # gone meanwhile: start again with the exclusive create
        if _read_bytes(stale) == judged:
            os.unlink(stale)
            self._log.warning(
                "lock taken over",
                reason=state.stale_reason,
                holder_host=state.holder.host if state.holder is not None else None,
                holder_pid=state.holder.pid if state.holder is not None else None,
                expires_at=f"{state.expires_at:.3f}",
            )
            return True
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(stale, self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
        return False

    # -- renewal and fencing -----------------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True once the lock is known not to be ours any more."""
        return self._lost is not None

    def _mark_lost(self, detail: str) -> None:
        if self._lost is None:
            self._lost = detail
            self._log.error("lock lost", detail=detail)

    def renew(self) -> bool:
        """
        Rewrite the lock with ``expires_at = now + lease`` after checking it still carries this token.

        Returns True on success, False on a failure that may be retried; marks the lock lost when the token
        differs, the file is gone, or failures left less than 30 s of the lease.
        """
        with self._mutex:
            if not self._held or self._lost is not None:
                return False
            try:
                seen = _read_bytes(self.path)
                current = Holder.from_json(seen) if seen is not None else None
                if current is None or current.token != self.token:
                    self._mark_lost("lock file gone" if seen is None else "token differs")
                    return False
                now = self._clock()
                holder = Holder(self.host, os.getpid(), self.token, current.acquired_at, now + self.lease_s)
                self._written, self._content = holder, holder.to_json()
                atomic_write_bytes(self.path, self._content, purpose="lock", mode=0o640)
                self.expires_at = holder.expires_at
                return True
            except OSError as exc:
                if self.expires_at - self._clock() < SKEW_S:
                    self._mark_lost(f"renewal failing: {exc.strerror or exc}")
                else:
                    self._log.warning("lock renewal failed", error=exc)
                return False

    def fence(self) -> None:
        """
        Raise :class:`LockLost` unless the lock is still ours: not marked lost, the file carries this token and
        ``now < expires_at``. Call it immediately before every side effect on the installation.
        """
        if not self._held:
            raise LockLost(self.directory, "not held")
        if self._lost is None:
            try:
                seen = _read_bytes(self.path)
            except OSError as exc:
                self._mark_lost(f"lock file unreadable: {exc.strerror or exc}")
            else:
                # The bytes this lock wrote last need no parsing (a fence comes before every effect, ~14 a window).
                current = self._written if seen == self._content else Holder.from_json(seen) if seen else None
                if seen is None:
                    self._mark_lost("lock file gone")
                elif current is None or current.token != self.token:
                    self._mark_lost("token differs")
                elif not self._clock() < current.expires_at:
                    self._mark_lost("lease expired")
        if self._lost is not None:
            raise LockLost(self.directory, self._lost)

    # -- release -----------------------------------------------------------------------------------------------

    def release(self) -> None:
        """Stop the renewal and delete the lock file if it still carries this token; never raises OSError."""
        _RENEWALS.remove(self)
        with self._mutex:  # a renewal in progress ends first; none starts after this (renew checks _held)
            held, self._held = self._held, False
        if not held:
            return
        try:
            seen = _read_bytes(self.path)
            current = Holder.from_json(seen) if seen is not None else None
            if current is not None and current.token == self.token:
                os.unlink(self.path)
                self._log.debug("lock released", pid=os.getpid(), token=self.token[:8])
        except OSError as exc:
            self._log.error("lock release failed", error=exc)

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _describe(state: LockState) -> str:
    if state.holder is None:
        return f"unknown holder expiring at {state.expires_at:.3f}"
    return f"host={state.holder.host} pid={state.holder.pid} expires_at={state.expires_at:.3f}"
