"""
A stand-in tix-api (neighbours.md §1.6): a real HTTP/1.1 server on 127.0.0.1 that records what it receives.

In a test::

    with FakeApi(admin_user="admin", admin_password="secret") as api:
        api.set_behaviour(status=503)                 # every POST answers 503
        api.set_behaviour(status=400, installation="23/41")
        api.script(Behaviour(status=500), Behaviour())  # the next two POSTs, then back to the mode
        ...
        api.accepted()                                # the measures it stored

As a separate process (service tests, benchmarks)::

    python tests/fake_api.py --port 0 --port-file /tmp/port --log /tmp/api.jsonl \
        --admin-user admin --admin-password secret --mode status:503 --mode-for 23/41=hang

and switch it at run time through :class:`FakeApiControl` (HTTP endpoints under ``/_fake/``); every request is
appended to the JSON-lines ``--log`` file as it is handled.

Behaviours: ``status=None`` acts like tix-api (Basic auth of the admin, 200 with the measure); a success status
(200, 201, 204) does the same with that status; any other status is answered as is (401 with the challenge header,
500 with ``Could not calculate ipToAs``, 3xx with a ``Location``) and nothing is stored. ``delay_s`` waits before
acting; a client that gave up meanwhile is not stored. ``action``: ``answer`` (default), ``hang`` (never answer
until the client leaves or the server stops), ``reset`` (close with a TCP reset, nothing stored),
``store_then_drop`` (store, then close without answering: the ambiguous case), ``trickle`` (store, then answer 200
one byte every 50 ms, status line and headers included), ``huge`` (store, then answer 200 with a 256 MiB body).
The record's ``answer_bytes`` counts what the client of these two let through. ``location`` replaces the
``Location`` of a 3xx answer.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ACTIONS = ("answer", "hang", "reset", "store_then_drop", "trickle", "huge")
TRICKLE_INTERVAL_S = 0.05
TRICKLE_BYTES = 200
HUGE_BODY_BYTES = 256 << 20
SUCCESS = (200, 201, 204)
REPORTS_PATH = re.compile(r"^/api/user/([^/]+)/installation/([^/]+)/reports/?$")
USER_PATH = re.compile(r"^/api/user/([^/]+)/?$")
INSTALLATION_PATH = re.compile(r"^/api/user/([^/]+)/installation/([^/]+)/?$")
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one POST of a report."""

    status: int | None = None
    delay_s: float = 0.0
    action: str = "answer"
    retry_after: str | None = None
    body: str | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behaviour:
        keys = ("status", "delay_s", "action", "retry_after", "body", "location")
        return cls(**{key: data[key] for key in keys if key in data})

    @classmethod
    def parse(cls, text: str) -> Behaviour:
        """``ok``, ``status:503``, ``delay:2.5``, ``hang``, ``reset``, ``store_then_drop``, joined with ``+``."""
        options: dict[str, Any] = {}
        for part in text.split("+"):
            name, _, value = part.strip().partition(":")
            if name == "ok":
                continue
            if name == "status":
                options["status"] = int(value)
            elif name == "delay":
                options["delay_s"] = float(value)
            elif name == "retry_after":
                options["retry_after"] = value
            elif name in ACTIONS:
                options["action"] = name
            else:
                raise ValueError(f"unknown behaviour part {part!r}")
        return cls(**options)


@dataclass
class _State:
    admin_user: str
    admin_password: str
    users: dict[str, tuple[str, str]]
    log_path: Path | None
    default: Behaviour = field(default_factory=Behaviour)
    per_installation: dict[str, Behaviour] = field(default_factory=dict)
    scripts: dict[str | None, deque[Behaviour]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def next_behaviour(self, installation: str) -> Behaviour:
        with self.lock:
            for key in (installation, None):
                queue = self.scripts.get(key)
                if queue:
                    return queue.popleft()
            return self.per_installation.get(installation, self.default)

    def set_behaviour(self, behaviour: Behaviour | None, installation: str | None) -> None:
        with self.lock:
            if installation is None:
                self.default = behaviour or Behaviour()
            elif behaviour is None:
                self.per_installation.pop(installation, None)
            else:
                self.per_installation[installation] = behaviour

    def script(self, behaviours: list[Behaviour], installation: str | None) -> None:
        with self.lock:
            self.scripts.setdefault(installation, deque()).extend(behaviours)

    def add_record(self, record: dict[str, Any]) -> None:
        with self.lock:
            record["seq"] = len(self.records) + 1
            self.records.append(record)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")

    def clear(self) -> None:
        with self.lock:
            self.records.clear()
            self.scripts.clear()
            self.per_installation.clear()
            self.default = Behaviour()


def _peer_gone(sock: socket.socket) -> bool:
    """True when the client closed its side (readable with end of file) or reset the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-tix-api/1"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    state: _State  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # One write per response plus TCP_NODELAY: no Nagle / delayed-ACK stall (neighbours.md §1.6).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- responses -------------------------------------------------------------------------------------------

    def _respond(self, status: int, body: bytes = b"", content_type: str = "text/plain", **headers: str) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Server: {self.server_version}"]
        if status != 204:
            lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        else:
            body = b""
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self._store_pending()  # the record exists before the client can see the answer
        self.wfile.write(data)

    _pending: dict[str, Any] | None = None

    def _store_pending(self) -> None:
        if self._pending is not None:
            self.state.add_record(self._pending)
            self._pending = None

    def _json(self, status: int, document: Any) -> None:
        self._respond(status, json.dumps(document).encode(), "application/json; charset=utf-8")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routes ----------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/api", "/api/"):
            self._respond(200)
        elif path == "/_fake/records":
            with self.state.lock:
                records = list(self.state.records)
            self._json(200, records)
        elif match := INSTALLATION_PATH.match(path):
            self._json(200, {"id": match[2], "name": "x", "publickey": "", "providers": []})
        elif match := USER_PATH.match(path):
            self._json(200, {"id": match[1], "username": "x", "enabled": True, "role": "user"})
        else:
            self._respond(404, b"Not Found")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        if path.startswith("/_fake/"):
            self._control(path, body)
        elif match := REPORTS_PATH.match(path):
            self._report(match[1], match[2], body)
        else:
            self._respond(404, b"Not Found")

    def _control(self, path: str, body: bytes) -> None:
        data = json.loads(body or b"{}")
        installation = data.get("installation")
        if path == "/_fake/behaviour":
            behaviour = None if data.get("behaviour") is None else Behaviour.from_dict(data["behaviour"])
            self.state.set_behaviour(behaviour, installation)
        elif path == "/_fake/script":
            self.state.script([Behaviour.from_dict(item) for item in data["behaviours"]], installation)
        elif path == "/_fake/clear":
            self.state.clear()
        else:
            self._respond(404, b"Not Found")
            return
        self._json(200, {"ok": True})

    def _credentials(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password

    def _report(self, user_id: str, installation_id: str, body: bytes) -> None:
        state = self.state
        installation = f"{user_id}/{installation_id}"
        behaviour = state.next_behaviour(installation)
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        record: dict[str, Any] = {
            "time": time.time(),
            "method": "POST",
            "path": self.path,
            "user_id": user_id,
            "installation_id": installation_id,
            "client_port": self.client_address[1],
            "headers": dict(self.headers.items()),
            "body": body.decode("utf-8", "replace"),
            "json": parsed,
            "behaviour": behaviour.to_dict(),
            "status": None,
            "outcome": "answered",
            "accepted": False,
        }
        self._pending = record
        try:
            self._act(behaviour, record, user_id, parsed)
        except OSError:
            record["outcome"] = "client_gone"  # the answer could not be written
            self.close_connection = True
        finally:
            self._store_pending()

    def _wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; False as soon as the client left or the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self.state.stopping.is_set() or _peer_gone(self.connection):
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.02))

    def _act(self, behaviour: Behaviour, record: dict[str, Any], user_id: str, parsed: Any) -> None:
        if behaviour.delay_s > 0 and not self._wait(behaviour.delay_s):
            record["outcome"] = "client_gone"
            self.close_connection = True
            return
        if behaviour.action == "hang":
            while self._wait(0.2):
                pass
            record["outcome"] = "hang"
            self.close_connection = True
            return
        if behaviour.action == "reset":
            # Linger 0 and a real close (no FIN first): the client sees a TCP reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            record["outcome"] = "reset"
            self.close_connection = True
            self._store_pending()  # recorded before the client can see the reset
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
            self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # the base class still flushes and closes them
            return
        if behaviour.action in ("trickle", "huge"):
            self._stream_answer(behaviour.action, record)
            return
        if behaviour.action == "store_then_drop":
            record["outcome"] = "dropped"
            record["accepted"] = True
            self.close_connection = True
            self._store_pending()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = behaviour.status
        extra: dict[str, str] = {}
        if behaviour.retry_after is not None:
            extra["Retry-After"] = behaviour.retry_after
        if status is not None and status not in SUCCESS:
            record["status"] = status
            self._fixed_status(status, behaviour.body, extra, behaviour.location)
            return
        credentials = self._credentials()
        state = self.state
        if credentials is None or (
            credentials != (state.admin_user, state.admin_password)
            and state.users.get(credentials[0], (None, None))[0] != credentials[1]
        ):
            record["status"] = 401
            self._respond(401, b"Unauthorized", WWW_Authenticate='Basic realm="Users"', **extra)
            return
        if credentials[0] != state.admin_user and state.users[credentials[0]][1] != user_id:
            record["status"] = 401
            self._json(401, {"reason": "The user cannot perform that operation"})
            return
        if not isinstance(parsed, dict):
            record["status"] = 400
            self._respond(400, b"Bad Request")
            return
        answer = status or 200
        record["status"] = answer
        record["accepted"] = True
        measure = {key: parsed.get(key) for key in ("upUsage", "downUsage", "upQuality", "downQuality")}
        ts = parsed.get("timestamp")
        measure["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts)) if isinstance(ts, int) else None
        measure.update({"location_id": 1, "provider_id": 1, "user_id": user_id})
        self._json(answer, measure)

    def _stream_answer(self, action: str, record: dict[str, Any]) -> None:
        """A stored measure whose 200 answer trickles in or is far too large; recorded once the client is gone."""
        record.update(status=200, accepted=True, outcome=action, answer_bytes=0)
        size = TRICKLE_BYTES if action == "trickle" else HUGE_BODY_BYTES
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
        self.close_connection = True
        if action == "trickle":
            for byte in head + b" " * size:
                if not self._wait(TRICKLE_INTERVAL_S):
                    break
                self.wfile.write(bytes([byte]))  # an OSError once the client closed: _report records "client_gone"
                record["answer_bytes"] += 1
            return
        self.wfile.write(head)
        chunk = bytes(64 * 1024)
        while record["answer_bytes"] < size and not self.state.stopping.is_set():
            self.wfile.write(chunk)
            record["answer_bytes"] += len(chunk)

    def _fixed_status(self, status: int, body: str | None, extra: dict[str, str], location: str | None = None) -> None:
        if status == 401:
            self._respond(status, (body or "Unauthorized").encode(), WWW_Authenticate='Basic realm="Users"', **extra)
        elif status == 500:
            self._respond(status, (body or "Could not calculate ipToAs: fake failure").encode(), **extra)
        elif 300 <= status < 400:
            self._respond(status, (body or "").encode(), Location=location or "http://127.0.0.1:9/elsewhere", **extra)
        else:
            self._respond(status, (body or f"fake status {status}").encode(), **extra)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeApi:
    """
    The fake tix-api running in a thread of the test process.

    Parameters
    ----------
    admin_user, admin_password : str
        The admin account whose Basic credentials are accepted for every user.
    users : dict, optional
        Non-admin accounts: user name → (password, user id); they may post only for their own id.
    log_path : Path, optional
        JSON-lines file that receives every request record as it is handled.
    port : int
        0 for a free port.
    """

    def __init__(
        self,
        *,
        admin_user: str = "admin",
        admin_password: str = "secret",
        users: dict[str, tuple[str, str]] | None = None,
        log_path: Path | None = None,
        port: int = 0,
    ) -> None:
        self.state = _State(admin_user, admin_password, dict(users or {}), log_path)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", port), handler)
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeApi:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-tix-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_behaviour(
        self, behaviour: Behaviour | None = None, *, installation: str | None = None, **options: Any
    ) -> None:
        """Set the mode globally or for one installation (``"<user>/<installation>"``); None restores tix-api."""
        if options:
            behaviour = Behaviour(**options)
        self.state.set_behaviour(behaviour, installation)

    def script(self, *behaviours: Behaviour, installation: str | None = None) -> None:
        """Queue one-shot behaviours for the next POSTs (of one installation, or of any); then the mode again."""
        self.state.script(list(behaviours), installation)

    def records(self) -> list[dict[str, Any]]:
        """Every POST of a report received so far, in order, with its outcome."""
        with self.state.lock:
            return list(self.state.records)

    def accepted(self) -> list[dict[str, Any]]:
        """The POSTs counted as stored."""
        return [record for record in self.records() if record["accepted"]]

    def clear(self) -> None:
        """Forget records, scripts and modes."""
        self.state.clear()


class FakeApiControl:
    """Controls a fake tix-api running in another process through its ``/_fake/`` endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    @property
    def port(self) -> int:
        """The TCP port of 127.0.0.1 the fake listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    def _post(self, path: str, document: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(document).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def set_behaviour(
        self, behaviour: Behaviour | None = None, *, installation: str | None = None, **options: Any
    ) -> None:
        if options:
            behaviour = Behaviour(**options)
        document = {"installation": installation, "behaviour": None if behaviour is None else behaviour.to_dict()}
        self._post("/_fake/behaviour", document)

    def script(self, *behaviours: Behaviour, installation: str | None = None) -> None:
        self._post("/_fake/script", {"installation": installation, "behaviours": [b.to_dict() for b in behaviours]})

    def clear(self) -> None:
        self._post("/_fake/clear", {})

    def records(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.base_url + "/_fake/records", timeout=10) as response:
            return list(json.loads(response.read()))

    def accepted(self) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["accepted"]]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``--log`` file (complete lines only)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


@dataclass
class FakeApiProcess:
    """The stand-in tix-api running as its own process: its control client and its JSON-lines request log."""

    process: subprocess.Popen[bytes]
    control: FakeApiControl
    log_path: Path

    @property
    def port(self) -> int:
        return self.control.port

    def records(self) -> list[dict[str, Any]]:
        """Every POST of a report handled so far, asked of the process over HTTP."""
        return self.control.records()

    def logged_records(self) -> list[dict[str, Any]]:
        """The same from the log file (complete lines only): readable while the process is busy or gone."""
        return read_log(self.log_path)

    def accepted(self) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["accepted"]]

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace_s)


def start_fake_api_process(
    directory: Path, *, admin_user: str = "admin", admin_password: str = "secret", mode: str = "ok"
) -> FakeApiProcess:
    """Start ``python tests/fake_api.py`` as a separate process on a free port; stop it with ``stop()``."""
    port_file = directory / "fake-api.port"
    log_path = directory / "fake-api.jsonl"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--port=0",
        f"--port-file={port_file}",
        f"--log={log_path}",
        f"--admin-user={admin_user}",
        f"--admin-password={admin_password}",
        f"--mode={mode}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the fake tix-api process did not start")
        time.sleep(0.02)
    port = int(port_file.read_text().strip())
    return FakeApiProcess(process, FakeApiControl(f"http://127.0.0.1:{port}"), log_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a fake tix-api on 127.0.0.1 (neighbours.md §1.6).",
        epilog=(
            "examples:\n"
            "  python tests/fake_api.py --port 3001 --admin-user admin --admin-password secret\n"
            "  python tests/fake_api.py --port 0 --port-file /tmp/p --log /tmp/api.jsonl --mode status:503\n"
            "  python tests/fake_api.py --mode delay:20 --mode-for 23/41=status:400"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--log", type=Path, help="append every request as a JSON line")
    parser.add_argument("--admin-user", default="admin")
    parser.add_argument("--admin-password", default="secret")
    parser.add_argument("--mode", default="ok", help="ok, status:N, delay:S, hang, reset, store_then_drop, joined by +")
    parser.add_argument("--mode-for", action="append", default=[], metavar="USER/INST=MODE")
    args = parser.parse_args(argv)

    api = FakeApi(admin_user=args.admin_user, admin_password=args.admin_password, log_path=args.log, port=args.port)
    api.set_behaviour(Behaviour.parse(args.mode))
    for item in args.mode_for:
        installation, _, mode = item.partition("=")
        api.set_behaviour(Behaviour.parse(mode), installation=installation)

    def stop(signum: int, frame: object) -> None:
        api.state.stopping.set()
        threading.Thread(target=api._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{api.port}\n")
        os.replace(tmp, args.port_file)
    print(f"fake tix-api listening on {api.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        api.serve_forever()
    api._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
