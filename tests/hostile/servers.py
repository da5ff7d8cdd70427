"""
Hostile stand-ins for tix-api: a real HTTP/1.1 server on 127.0.0.1, written on plain sockets so that it can
misbehave where a well-behaved server library would not let it (reliability spec §6, H3 and H9).

``HostileApi(answer)`` calls ``answer(request)`` for every POST and sends what it returns: an :class:`Answer` may
trickle its bytes (status line and headers included) one at a time, or declare and stream a body of gigabytes.
Every request is recorded with whether its answer was sent completely.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}

#: Size of each chunk of a streamed filler body, in bytes.
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the server sends back for one POST."""

    status: int = 200
    body: bytes = b""
    trickle_interval_s: float = 0.0  #: > 0: every byte of the answer, head included, after this pause
    filler_bytes: int = 0  #: zeros declared in Content-Length and streamed after ``body`` (until the client leaves)

    def head(self) -> bytes:
        reason = REASONS.get(self.status, "Whatever")
        length = len(self.body) + self.filler_bytes
        return (
            f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")


@dataclass
class Request:
    path: str
    body: bytes
    started_s: float
    json: Any = None
    answer: Answer | None = None
    complete: bool = False  #: the whole answer was written before the client left
    ended_s: float = 0.0

    @property
    def stored(self) -> bool:
        """What tix-api would have kept: a success answer it could send in full."""
        return self.answer is not None and self.answer.status in (200, 201, 204) and self.complete


@dataclass
class _State:
    answer: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(socketserver.BaseRequestHandler):
    state: _State

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        reader = sock.makefile("rb")
        try:
            request_line = reader.readline(8192).decode("latin-1")
            headers = {}
            while (line := reader.readline(8192)) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", "0")))
        except OSError:
            return
        request = Request(path=request_line.split(" ")[1] if " " in request_line else "", body=body,
                          started_s=time.monotonic())  # fmt: skip
        with contextlib.suppress(ValueError):
            request.json = json.loads(body)
        with self.state.lock:
            self.state.requests.append(request)
        request.answer = answer = self.state.answer(request)
        try:
            self._send(sock, answer)
            request.complete = True
        except OSError:
            pass
        request.ended_s = time.monotonic()

    def _send(self, sock: socket.socket, answer: Answer) -> None:
        data = answer.head() + answer.body
        if answer.trickle_interval_s > 0:
            for byte in data:
                if self.state.stopping.wait(answer.trickle_interval_s):
                    raise OSError("server stopping")
                sock.sendall(bytes([byte]))
        else:
            sock.sendall(data)
        zeros = bytes(_CHUNK)
        left = answer.filler_bytes
        while left > 0 and not self.state.stopping.is_set():
            sock.sendall(zeros[: min(left, _CHUNK)])
            left -= min(left, _CHUNK)
        if left > 0:
            raise OSError("server stopping")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileApi:
    """A hostile tix-api on 127.0.0.1 (a free port) in threads of the test process; a context manager."""

    def __init__(self, answer: Callable[[Request], Answer]) -> None:
        self.state = _State(answer)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> HostileApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    def stored(self) -> list[Request]:
        return [request for request in self.requests() if request.stored]
