"""Report files: reading and validating one condenser report or client log, and writing one (reports spec §2, §5)."""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import ipaddress
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processor.errors import BadAddress, UnusableReport
from processor.observations import Observations
from processor.reports.records import RECORD_SIZE, decode_records, encode_records

#: Largest report file accepted, in bytes (a real report is about 4.5 KB).
MAX_REPORT_BYTES = 1 << 20

#: A report file that is unusable and younger than this, in seconds, may still be being written by the condenser.
YOUNG_FILE_S = 60.0

#: A modification time further ahead of now than this, in seconds, is not trusted to make a file young (H5).
MAX_MTIME_AHEAD_S = 60.0

#: Earliest plausible observation time, Unix seconds (2010-01-01T00:00:00Z): no working client is older (H10).
EARLIEST_TS = 1_262_304_000

#: Largest plausible lead of an observation's ts over its file's modification time, in seconds (H10).
MAX_TS_AHEAD_OF_MTIME_S = 86_400

#: The 12 required keys and the JSON type each must have (``int`` excludes ``bool``).
REQUIRED_KEYS: dict[str, type] = {
    "from": str,
    "to": str,
    "type": str,
    "initialTimestamp": int,
    "receptionTimestamp": int,
    "sentTimestamp": int,
    "finalTimestamp": int,
    "publicKey": str,
    "message": str,
    "signature": str,
    "userId": int,
    "installationId": int,
}

_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


@dataclass(frozen=True, slots=True)
class Report:
    """One usable report file: its client address and its observation records in file order."""

    path: Path
    ip: str  #: client address parsed from ``from`` (change D5)
    user_id: int  #: as written in the file; the directory names are authoritative
    installation_id: int
    observations: Observations  #: wire-dtype records in file order, duplicates and 'L' records included
    mtime_s: float  #: modification time (Unix seconds, from lstat)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def count(self) -> int:
        """n(R): records in the file, all types, duplicates included."""
        return int(self.observations.size)

    @property
    def first_ts(self) -> int:
        """ts of the first record in file order, in Unix seconds."""
        return int(self.observations["ts"][0])

    @property
    def last_ts(self) -> int:
        """ts of the last record in file order, in Unix seconds."""
        return int(self.observations["ts"][-1])

    @property
    def span_s(self) -> int:
        """last_ts - first_ts, in seconds."""
        return self.last_ts - self.first_ts


def _parse_port(text: str, original: str) -> None:
    if not _PORT.match(text) or int(text) > 65535:
        raise BadAddress(f"bad port in {original!r}")


def _ip_text(text: str) -> str | None:
    """Canonical text of an IP address (zone dropped, IPv4-mapped IPv6 as IPv4), or None if not an IP."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> str:
    """
    Return the client address of a report's ``from`` field (reports spec §2.2, change D5).

    Accepts ``a.b.c.d[:port]``, ``[ipv6][:port]``, a bare IPv6 address and ``host.name[:port]``; IPs come
    back in canonical text (IPv6 compressed lower case), host names lower-cased without a trailing dot.
    Raises :class:`BadAddress` for anything else.
    """
    if not isinstance(text, str) or not text:
        raise BadAddress("empty address")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise BadAddress(f"unbalanced bracket in {text!r}")
        rest = text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise BadAddress(f"text after bracket in {text!r}")
            _parse_port(rest[1:], text)
        ip = _ip_text(text[1:close])
        if ip is None or ":" not in text[1:close]:
            raise BadAddress(f"not an IPv6 address in brackets: {text!r}")
        return ip
    if text.count(":") > 1:
        ip = _ip_text(text)
        if ip is None:
            raise BadAddress(f"not an address: {text!r}")
        return ip
    host, sep, port = text.partition(":")
    if sep:
        _parse_port(port, text)
    ip = _ip_text(host)
    if ip is not None:
        return ip
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise BadAddress(f"not a host name: {text!r}")
    if labels[-1].isdigit():
        # A dotted all-numeric name that is not a valid IPv4 address (e.g. 300.1.2.3) is no host name either.
        raise BadAddress(f"not an address: {text!r}")
    return name


def _reject_constant(token: str) -> Any:
    raise ValueError(f"not strict JSON: {token}")


#: One strict decoder for every report: ``json.loads`` with a keyword argument builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_report(data: bytes, path: Path, mtime_s: float, *, check_time: bool = True) -> Report:
    """
    Validate the bytes of a report file (reports spec §2.1, checks 5-10 of §5.1, then H10) and return the report.

    ``check_time=False`` skips H10 (``implausible_time``): the batch formatter cuts archived client logs with the
    selection of changes D5, S1 and D12 only (tools spec §1.2).
    """

    def unusable(reason: Any, detail: str = "") -> UnusableReport:
        return UnusableReport(path, reason, detail, mtime_s)

    try:
        if data.startswith(b"\xef\xbb\xbf"):
            raise ValueError("byte-order mark")
        document = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise unusable("not_json", str(exc)[:200]) from None
    if not isinstance(document, dict):
        raise unusable("not_json", "not a JSON object")
    for key, kind in REQUIRED_KEYS.items():
        value = document.get(key)
        if type(value) is not kind:
            raise unusable("schema", f"{key} missing or not a JSON {kind.__name__}")
    if document["type"] != "LONG":
        raise unusable("schema", "type is not LONG")
    try:
        ip = parse_address(document["from"])
    except BadAddress as exc:
        raise unusable("bad_address", str(exc)) from None
    try:
        message = base64.b64decode(document["message"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise unusable("bad_base64", str(exc)) from None
    if len(message) % RECORD_SIZE:
        raise unusable("bad_record_length", f"{len(message)} bytes")
    if not message:
        raise unusable("no_records")
    records = decode_records(message)
    earliest, latest = int(records["ts"].min()), int(records["ts"].max())
    if check_time and (earliest < EARLIEST_TS or latest > mtime_s + MAX_TS_AHEAD_OF_MTIME_S):
        # H10: one such file would push a result timestamp into the far future or drop real reports by the gap rule.
        raise unusable("implausible_time", f"ts from {earliest} to {latest}, file modified at {int(mtime_s)}")
    return Report(
        path=path,
        ip=ip,
        user_id=document["userId"],
        installation_id=document["installationId"],
        observations=records,
        mtime_s=mtime_s,
    )


def read_report(path: Path, info: os.stat_result | None = None, *, check_time: bool = True) -> Report:
    """
    Read and validate one report or client-log file, never following a symbolic link, opening no FIFO or device.

    ``info`` is the caller's ``os.lstat(path)`` when it has just taken one (it is not taken again);
    ``check_time`` as for :func:`parse_report`.

    Raises :class:`UnusableReport` with the reason code of reports spec §5.1 (its ``mtime_s`` tells the caller
    whether the file is young), ``FileNotFoundError`` when the file vanished, and ``OSError`` on an I/O error.
    """
    if info is None:
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnusableReport(path, "symlink", mtime_s=info.st_mtime)
    if not stat.S_ISREG(info.st_mode):
        raise UnusableReport(path, "not_regular_file", mtime_s=info.st_mtime)
    if info.st_size > MAX_REPORT_BYTES:
        raise UnusableReport(path, "too_large", f"{info.st_size} bytes", info.st_mtime)
    if info.st_size == 0:
        raise UnusableReport(path, "empty", mtime_s=info.st_mtime)
    # O_NOFOLLOW and O_NONBLOCK: the entry may have been swapped for a link or a FIFO since lstat; opening a FIFO
    # without O_NONBLOCK waits for a writer for ever. Plain os.read: a buffered file object costs three more
    # system calls per report (fstat, ioctl, lseek), a tenth of a window's reading.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        # H4: a property of the file, not of the volume: quarantined when old, like any unusable report.
        raise UnusableReport(path, "unreadable", exc.strerror or "", info.st_mtime) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symbolic link since lstat
            raise UnusableReport(path, "symlink", mtime_s=info.st_mtime) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO or a device since lstat
            raise UnusableReport(path, "not_regular_file", mtime_s=info.st_mtime)
        # Ask for the size lstat saw plus one byte (a file that grew shows as longer): a read of 1 MiB + 1
        # would allocate that much for every 4.5 KB report.
        data = _read_up_to(fd, min(info.st_size, MAX_REPORT_BYTES) + 1)
        if len(data) > info.st_size:
            data += _read_up_to(fd, MAX_REPORT_BYTES + 1 - len(data))
    finally:
        os.close(fd)
    if len(data) > MAX_REPORT_BYTES:
        raise UnusableReport(path, "too_large", "grew while read", info.st_mtime)
    if not data:
        raise UnusableReport(path, "empty", mtime_s=info.st_mtime)
    return parse_report(data, path, info.st_mtime, check_time=check_time)


def _read_up_to(fd: int, size: int) -> bytes:
    """Read until ``size`` bytes or the end of the file, whichever comes first (``os.read`` may return less)."""
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)  # a single chunk comes back as is, not copied


def is_young_mtime(mtime_s: float | None, now_s: float) -> bool:
    """
    True when a file modified at ``mtime_s`` (Unix seconds) is young at ``now_s``: less than 60 s old.

    An unknown time, and one more than 60 s ahead of ``now_s`` (H5: an age that cannot be trusted), count as old.
    """
    return mtime_s is not None and -MAX_MTIME_AHEAD_S <= now_s - mtime_s < YOUNG_FILE_S


def is_young(error: UnusableReport, now_s: float) -> bool:
    """True when an unusable file is young (:func:`is_young_mtime`): leave it for a later run."""
    return is_young_mtime(error.mtime_s, now_s)


def report_candidates(directory: Path) -> list[str]:
    """
    Names of the report candidates of an installation directory, in name order (reports spec §1.2).

    Entries directly in ``directory`` whose name ends in ``.json`` and does not start with ``.`` (change S2),
    sorted as plain strings.
    """
    return sorted(name for name in os.listdir(directory) if name.endswith(".json") and not name.startswith("."))


def iter_reports(directory: Path) -> Iterator[Report | UnusableReport]:
    """Read every candidate in name order; an unusable one comes back as its error, a vanished one is skipped."""
    for name in report_candidates(directory):
        try:
            yield read_report(directory / name)
        except UnusableReport as error:
            yield error
        except FileNotFoundError:
            continue


def _filler_base64(rng: np.random.Generator, size: int) -> str:
    return base64.b64encode(rng.bytes(size)).decode("ascii")


def report_json(
    observations: Observations,
    *,
    from_address: str,
    user_id: int,
    installation_id: int,
    to_address: str = "[0:0:0:0:0:0:0:0%0]:4500",
    initial_timestamp_ns: int | None = None,
    rng: np.random.Generator | None = None,
) -> bytes:
    """
    The bytes of a report file holding ``observations``: the condenser's 12 keys in its order, no newline.

    ``publicKey`` and ``signature`` carry random bytes of the real lengths (294 and 256): the processor never
    verifies them. ``initialTimestamp`` defaults to the t1 of the last record.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    records = np.asarray(observations)
    if initial_timestamp_ns is None:
        initial_timestamp_ns = int(records["t1"][-1]) if records.size else 0
    document = {
        "from": from_address,
        "to": to_address,
        "type": "LONG",
        "initialTimestamp": int(initial_timestamp_ns),
        "receptionTimestamp": 0,
        "sentTimestamp": 0,
        "finalTimestamp": 0,
        "publicKey": _filler_base64(rng, 294),
        "message": base64.b64encode(encode_records(records)).decode("ascii"),
        "signature": _filler_base64(rng, 256),
        "userId": int(user_id),
        "installationId": int(installation_id),
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def report_name(observations: Observations) -> str:
    """The condenser's name for a report: ``tix-report-<ts of the first record>.json``."""
    return f"tix-report-{int(np.asarray(observations)['ts'][0])}.json"


def write_report(directory: Path, observations: Observations, **fields: Any) -> Path:
    """Write a report file named as the condenser names it into ``directory``; return its path."""
    path = directory / report_name(observations)
    path.write_bytes(report_json(observations, **fields))
    return path
