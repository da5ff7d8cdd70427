"""
A ``requests.Session`` whose requests can each be held to a deadline as a whole (service.md §5.3, H3).

The timeouts of ``requests`` bound each read of the socket, not an answer: a server that sends one byte of its
status line every second never trips them. Within ``with Deadline(seconds):`` a watchdog thread shuts the socket of the
request in progress down when the time is up, which ends any read at once. The session's connections tell the
deadline their socket as they connect or start a request; that is the only change to requests' own transport.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: The deadline of the request in progress in this thread (or context), if any.
_CURRENT: ContextVar[Deadline | None] = ContextVar("tix_api_deadline", default=None)


class _Watchdog:
    """
    One thread per process that cuts the attempts whose deadline has passed.

    A thread started and joined per attempt cost about 0.25 ms of CPU per POST, a few per cent of a window; this
    one is started at the first deadline of the process (a forked child starts its own, see the end of the module).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._deadlines: set[Deadline] = set()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._changed:
            self._deadlines.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="tix-api-deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

    def unwatch(self, deadline: Deadline) -> None:
        with self._changed:
            self._deadlines.discard(deadline)

    def _loop(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._deadlines if d.at <= now]:
                    self._deadlines.discard(deadline)
                    deadline.expire()
                next_at = min((d.at for d in self._deadlines), default=None)
                self._changed.wait(None if next_at is None else next_at - now)


_WATCHDOG = _Watchdog()


class Deadline:
    """Within ``with Deadline(seconds):``, the socket of the request in progress is shut down when the time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = 0.0  #: ``time.monotonic()`` at which the time is up
        self.expired = False  #: the time was up before the ``with`` block ended
        self.cut = False  #: the time was up while a connection was open: the request may have reached the server
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        """The socket that the request in progress uses now."""
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut_down()

    def expire(self) -> None:
        """The time is up: shut the attached socket down (the watchdog calls this)."""
        with self._lock:
            self.expired = True
            if self._sock is not None:
                self._shut_down()

    def _shut_down(self) -> None:
        assert self._sock is not None
        self.cut = True
        # The plain socket's shutdown: an SSL socket's own would drop its TLS state under the reading thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        self._token = _CURRENT.set(self)
        self.at = time.monotonic() + self.seconds
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _WATCHDOG.unwatch(self)
        with self._lock:
            self._sock = None  # a late expiry must not shut down a kept-alive connection's next request
        _CURRENT.reset(self._token)


class _AttachedConnection(HTTPConnection):
    """A connection that attaches its socket to the current deadline when it connects or starts a request."""

    def _attach(self) -> None:
        deadline = _CURRENT.get()
        if deadline is not None and self.sock is not None:
            deadline.attach(self.sock)

    def connect(self) -> None:
        super().connect()
        self._attach()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._attach()  # a kept-alive connection does not connect again
        super().request(*args, **kwargs)


class _AttachedHTTPSConnection(_AttachedConnection, HTTPSConnection):
    """The HTTPS variant: its socket is attached once the TLS handshake is done."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _AttachedConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _AttachedHTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter with pools of attached connections (``init_poolmanager`` is its documented hook)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}


def deadline_session() -> requests.Session:
    """A new session whose requests :class:`Deadline` can cut."""
    session = requests.Session()
    adapter = _Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads and may have copied a held lock: it starts afresh."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_after_fork_in_child)
