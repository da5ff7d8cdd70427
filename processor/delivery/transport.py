"""
A ``requests.Session`` whose requests can each be held to a deadline as a whole (service.md §5.3, H3).

The timeouts of ``requests`` bound each read of the socket, not an answer: a server that sends one byte of its
status line every second never trips them. Within ``with Deadline(seconds):`` a timer shuts the socket of the
request in progress down when the time is up, which ends any read at once. The session's connections tell the
deadline their socket as they connect or start a request; that is the only change to requests' own transport.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: The deadline of the request in progress in this thread (or context), if any.
_CURRENT: ContextVar[Deadline | None] = ContextVar("tix_api_deadline", default=None)


class Deadline:
    """A timer that, after ``seconds``, shuts down the socket of the request made within ``with`` this deadline."""

    def __init__(self, seconds: float) -> None:
        self.expired = False  #: the time was up before the ``with`` block ended
        self.cut = False  #: the time was up while a connection was open: the request may have reached the server
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def attach(self, sock: socket.socket) -> None:
        """The socket that the request in progress uses now."""
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut_down()

    def _expire(self) -> None:
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
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()
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
