"""
A hostile reports tree, a one-shot cycle over it as a real process, and what the cycle left and logged.

Every case of reliability spec §6 is built for real in a copy of a simulated tree (3 installations of 25 minutes:
one analysable window each): real symbolic links, FIFOs, sparse files, files nobody may read. Next to the tree
lies ``outside/``, which the hostile entries point at; the cycle must leave it byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import logfmt
from tests.commands import REPO, processor_command

#: The installations of the simulated tree, as (user, installation) directory names.
INSTALLATIONS = (("1", "1"), ("2", "2"), ("3", "3"))

#: The log prefix of ``python -m processor process`` (``logging.basicConfig`` in processor/cli.py).
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)\Z")

#: A time well in the past for files that must count as old (2023-11-15), Unix seconds.
OLD_S = 1_700_100_000.0


def simulate_tree(base: Path) -> None:
    """Write the simulated tree (the same bytes for every call) below ``base``."""
    done = processor_command("simulate", "--out", str(base), "--installations", "3", "--minutes", "25", "--seed", "11")
    assert 0 == done.returncode, done.stderr


@dataclass(frozen=True)
class LogLine:
    """One line the cycle wrote on standard error, parsed as logfmt."""

    level: str
    logger: str
    event: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Cycle:
    """A finished ``python -m processor process``."""

    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    max_rss_kib: int  #: peak resident memory of the process, KiB

    @property
    def summary(self) -> dict[str, Any]:
        """The JSON summary, the last line of standard output."""
        return dict(json.loads(self.stdout.splitlines()[-1])["summary"])

    def log(self) -> list[LogLine]:
        """Every standard error line, parsed; a line that is not one logfmt event fails the test (H6)."""
        parsed = []
        for line in self.stderr.splitlines():
            match = _LOG_LINE.match(line)
            assert match is not None, f"not a log line of its own: {line!r}\n{self.stderr}"
            event, fields = logfmt.parse(match["message"])
            parsed.append(LogLine(match["level"], match["logger"], event, fields))
        return parsed

    def events(self, event: str) -> list[LogLine]:
        return [line for line in self.log() if line.event == event]


class Rig:
    """A reports tree at ``<root>/reports`` with ``<root>/outside`` beside it, and the cycles run over it."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        self.base = root / "reports"
        shutil.copytree(template, self.base, symlinks=True)
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "secret.json").write_bytes(
            (template / "1" / "1" / self.names(template / "1" / "1")[0]).read_bytes()
        )
        (self.outside / "results").mkdir()
        self.remember_outside()

    @staticmethod
    def names(directory: Path) -> list[str]:
        return sorted(name for name in os.listdir(directory) if name.endswith(".json") and not name.startswith("."))

    def installation(self, user: str, installation: str | None = None) -> Path:
        return self.base / user / (installation or user)

    def reports(self, user: str, installation: str | None = None) -> list[str]:
        return self.names(self.installation(user, installation))

    def invalid(self, user: str, installation: str | None = None) -> list[str]:
        directory = self.installation(user, installation) / "invalid-reports"
        return sorted(os.listdir(directory)) if directory.is_dir() else []

    def plant(self, user: str, position: int, content: bytes | None = None, *, suffix: str = "5") -> Path:
        """
        A new file named to sort right after report number ``position`` of ``<user>/<user>``.

        Its content is ``content`` or, when None, the bytes of that report (a valid report). Returns its path.
        """
        directory = self.installation(user)
        neighbour = self.reports(user)[position]
        path = directory / neighbour.replace(".json", f"{suffix}.json")
        path.write_bytes((directory / neighbour).read_bytes() if content is None else content)
        return path

    def outside_snapshot(self) -> dict[str, tuple[str, int, int, int, str]]:
        """Every entry below ``outside/``: type, mode, size, mtime and a digest of its first MiB."""
        snapshot = {}
        for path in sorted(self.outside.rglob("*")):
            info = path.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as file:
                    digest = hashlib.sha256(file.read(1 << 20)).hexdigest()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            snapshot[str(path.relative_to(self.outside))] = (kind, info.st_mode, info.st_size, info.st_mtime_ns, digest)
        return snapshot

    def remember_outside(self) -> None:
        """Take what ``outside/`` holds now as what every cycle must leave."""
        self._outside_before = self.outside_snapshot()

    def assert_outside_untouched(self) -> None:
        assert self._outside_before == self.outside_snapshot()

    def process(
        self,
        api_port: int | None,
        *,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        timeout_s: float = 120.0,
    ) -> Cycle:
        """Run ``python -m processor process`` over the tree (posting to ``api_port``, or a dry run when None)."""
        environment = {key: value for key, value in os.environ.items() if not key.startswith("TIX_")}
        environment.update({"TIX_REPORTS_BASE_PATH": str(self.base), "TIX_API_TIMEOUT": "2"})
        if api_port is not None:
            environment.update(
                {
                    "TIX_API_HOST": "127.0.0.1",
                    "TIX_API_PORT": str(api_port),
                    "TIX_API_USER": "admin",
                    "TIX_API_PASSWORD": "secret",
                }
            )
        environment.update(env or {})
        started = time.monotonic()
        process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "processor", "process"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        outputs: dict[str, bytes] = {}
        readers = [
            threading.Thread(target=lambda key=key, pipe=pipe: outputs.update({key: pipe.read()}))
            for key, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
        ]
        for reader in readers:
            reader.start()
        killer = threading.Timer(timeout_s, process.kill)
        killer.start()
        # wait4 rather than Popen.wait: the resource usage of this very process (its peak memory).
        _, status, usage = os.wait4(process.pid, 0)
        elapsed_s = time.monotonic() - started
        killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join()
        assert elapsed_s < timeout_s, f"the cycle did not end within {timeout_s} s"
        return Cycle(
            process.returncode,
            outputs["stdout"].decode(),
            outputs["stderr"].decode(),
            elapsed_s,
            usage.ru_maxrss,
        )


def age(path: Path, mtime_s: float = OLD_S) -> Path:
    """Set the modification time of ``path`` itself (not of a link's target)."""
    os.utime(path, (mtime_s, mtime_s), follow_symlinks=False)
    return path


def failed_result(timestamp: int, ip: str = "203.0.113.45") -> str:
    """A failed-results file's content as service spec §6.1 writes it, for result ``timestamp`` of client ``ip``."""
    direction = {"usage": 0.25, "quality": 1.0, "hurst": {"wavelet": 0.6, "rs": 0.7}}
    results = {"timestamp": timestamp, "upstream": direction, "downstream": direction}
    return json.dumps({"results": results, "ip": ip, "asn": None, "asOwner": None})
