"""IP-to-AS resolution of the client address (service.md §7, change D13): backends none, mysql and pfx2as."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
import socket
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from processor.errors import ResolverUnavailable
from processor.logs import event_logger

if TYPE_CHECKING:
    from processor.config import Config

log = event_logger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: After a backend failure, seconds during which lookups return (null, null) at once (§7.1).
SUSPEND_AFTER_FAILURE_S = 60.0

#: Shortest interval between two failure warnings of one process, in seconds (§7.1).
WARNING_INTERVAL_S = 60.0

#: Shortest interval between two modification-time checks of the pfx2as files, in seconds (§7.4).
FILE_CHECK_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class AsInfo:
    """The autonomous system of an address; both fields None when unknown."""

    asn: int | None = None  #: AS number
    owner: str | None = None  #: AS name, sent as ``asOwner``


#: The answer for host names, non-global addresses, unknown prefixes and failures.
NO_AS = AsInfo()


def lookup_address(ip: str) -> Address | None:
    """
    The address to look up for the client ``ip``, or None when no lookup is done (§7.1).

    Host names are never resolved (no DNS). Addresses that are not globally routable (``is_global`` false:
    private, loopback, link-local, multicast, reserved, unspecified, shared, documentation) give None. An
    IPv4-mapped IPv6 address is looked up as its IPv4 address.
    """
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        return None
    return address


class Backend(Protocol):
    """A source of AS answers; ``lookup`` raises :class:`ResolverUnavailable` when the source fails."""

    name: str

    def lookup(self, address: Address) -> AsInfo: ...


def best_router_row(rows: Iterable[Sequence[Any]], address: ipaddress.IPv4Address) -> int | None:
    """
    The AS of the longest ``routerviews`` prefix containing ``address`` (§7.3 step 2), or None.

    ``rows`` are ``(ip_router, noderouter, mask)``; malformed ones (unparseable address, mask outside 1–32, missing
    AS) are ignored. Among equal masks the lowest ``noderouter`` wins.
    """
    target = int(address)
    best: tuple[int, int] | None = None  # (-mask, asn): the smallest wins
    for ip_router, noderouter, mask in rows:
        try:
            network = int(ipaddress.IPv4Address(str(ip_router).strip()))
            length = int(mask)
            asn = int(noderouter)
        except (TypeError, ValueError):
            continue
        if not 1 <= length <= 32:
            continue
        shift = 32 - length
        if network >> shift != target >> shift:
            continue
        candidate = (-length, asn)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else best[1]


class MysqlBackend:
    """
    Longest-prefix lookup in the ``routerviews`` and ``namenodes`` tables of the TiX ``iptoas`` database.

    One connection, opened at the first lookup in the process that uses the backend, reused and re-opened after
    an error; connect and read timeouts ``timeout_s``; read-only queries with bound parameters. IPv4 only: the
    database holds no IPv6 prefix.
    """

    name = "mysql"

    def __init__(self, *, host: str, port: int, user: str, password: str, database: str, timeout_s: float) -> None:
        self.host, self.port, self.user, self.database = host, port, user, database
        self._password = password
        self.timeout_s = timeout_s
        self._connection: Any = None

    def __repr__(self) -> str:
        return f"MysqlBackend(host={self.host!r}, port={self.port}, user={self.user!r}, database={self.database!r})"

    def _connect(self) -> Any:
        import pymysql

        if self._connection is not None:
            return self._connection
        self._connection = pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self._password,
            database=self.database,
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            write_timeout=self.timeout_s,
            charset="utf8mb4",
            autocommit=True,
        )
        return self._connection

    def close(self) -> None:
        """Close the connection, if one is open."""
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing a broken connection may fail in any way; there is nothing left to do then.
            with contextlib.suppress(Exception):
                connection.close()

    def lookup(self, address: Address) -> AsInfo:
        if not isinstance(address, ipaddress.IPv4Address):
            return NO_AS
        import pymysql

        first_octet = str(address).split(".", 1)[0]
        try:
            connection = self._connect()
            with connection.cursor() as cursor:
                # As tix-api does: only rows starting with the first octet, so prefixes shorter than /8 never match.
                cursor.execute(
                    "SELECT ip_router, noderouter, mask FROM routerviews WHERE ip_router LIKE %s",
                    (f"{first_octet}.%",),
                )
                asn = best_router_row(cursor.fetchall(), address)
                if asn is None:
                    return NO_AS
                cursor.execute("SELECT name FROM namenodes WHERE noden = %s", (asn,))
                names = [row[0] for row in cursor.fetchall() if row[0] is not None]
        except (pymysql.Error, OSError) as exc:
            self.close()
            raise ResolverUnavailable(f"mysql {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc
        return AsInfo(asn, min(names) if names else None)


_AS_SPLIT = re.compile(r"[_,]")
_NAME_LINE = re.compile(r"^\s*(?:[Aa][Ss])?(\d+)\s+(\S.*?)\s*$")
_MAX_ASN = 2**32 - 1


def parse_as_field(text: str) -> int | None:
    """The lowest AS number of a pfx2as AS field (``64500``, ``64500_64501``, ``64500,64501``), or None."""
    parts = _AS_SPLIT.split(text)
    if not parts or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    lowest = min(int(part) for part in parts)
    return lowest if lowest <= _MAX_ASN else None


def parse_prefix_line(line: str) -> tuple[int, int, int, int] | None:
    """
    One pfx2as line as ``(version, network, length, asn)``, or None when malformed.

    Accepts ``<network> <length> <AS field>`` (CAIDA RouteViews, any white space) and ``<network>/<length> <AS
    field>`` (the ip_to_as job's format). The network is an integer; host bits are kept (lookups ignore them).
    """
    parts = line.split()
    if len(parts) == 3:
        text, length_text, as_text = parts
    elif len(parts) == 2 and "/" in parts[0]:
        (text, _, length_text), as_text = parts[0].partition("/"), parts[1]
    else:
        return None
    if not (length_text.isascii() and length_text.isdigit()):
        return None
    length = int(length_text)
    try:
        if ":" in text:
            version, bits = 6, 128
            network = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        else:
            version, bits = 4, 32
            network = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        return None
    asn = int(as_text) if as_text.isascii() and as_text.isdigit() else parse_as_field(as_text)
    if asn is None or asn > _MAX_ASN or length > bits:
        return None
    return version, network, length, asn


def parse_names(lines: Iterable[str]) -> dict[int, str]:
    """AS number → name from an AS-names file; non-matching lines are skipped; several names → the lowest."""
    names: dict[int, str] = {}
    for line in lines:
        match = _NAME_LINE.match(line)
        if match is None:
            continue
        asn, name = int(match[1]), match[2]
        if asn not in names or name < names[asn]:
            names[asn] = name
    return names


class PrefixTable:
    """
    Longest-prefix match over IPv4 and IPv6 prefixes, compact enough for a full RouteViews table.

    For each (address family, prefix length) the prefixes are kept as a sorted ``uint64`` array of their top
    ``length`` bits with a parallel ``uint32`` array of AS numbers; a lookup tries the lengths from the longest
    down with one binary search each. IPv6 prefixes longer than /64 (rare) live in a dictionary. ``entries`` are
    ``(version, network, length, asn)`` from :func:`parse_prefix_line`; a prefix listed twice keeps its lowest AS.
    """

    def __init__(self, entries: Iterable[tuple[int, int, int, int]]) -> None:
        # Typed arrays while collecting: 12 bytes per prefix instead of two Python int objects and two pointers.
        keys: dict[tuple[int, int], array[int]] = {}
        asns: dict[tuple[int, int], array[int]] = {}
        self._long6: dict[tuple[int, int], int] = {}
        count = 0
        for version, network, length, asn in entries:
            bits = 32 if version == 4 else 128
            key = network >> (bits - length)
            if version == 6 and length > 64:
                previous = self._long6.get((length, key))
                self._long6[(length, key)] = asn if previous is None else min(previous, asn)
            else:
                slot = (version, length)
                if slot not in keys:
                    keys[slot], asns[slot] = array("Q"), array("I")
                keys[slot].append(key)
                asns[slot].append(asn)
            count += 1
        self.size = count
        self._arrays: dict[tuple[int, int], tuple[NDArray[np.uint64], NDArray[np.uint32]]] = {}
        for slot, key_list in keys.items():
            key_array = np.frombuffer(key_list, dtype=np.uint64)
            asn_array = np.frombuffer(asns[slot], dtype=np.uint32)
            order = np.lexsort((asn_array, key_array))  # by key, then lowest AS first
            key_array, asn_array = key_array[order], asn_array[order]
            first = np.ones(key_array.size, dtype=bool)
            first[1:] = key_array[1:] != key_array[:-1]
            self._arrays[slot] = (key_array[first], asn_array[first])
        self._lengths = {
            version: sorted(
                {length for v, length in self._arrays if v == version}
                | ({length for length, _ in self._long6} if version == 6 else set()),
                reverse=True,
            )
            for version in (4, 6)
        }

    def lookup(self, address: Address) -> int | None:
        """The AS number of the longest prefix containing ``address``, or None."""
        version = address.version
        bits = 32 if version == 4 else 128
        value = int(address)
        for length in self._lengths[version]:
            key = value >> (bits - length)
            if version == 6 and length > 64:
                asn = self._long6.get((length, key))
                if asn is not None:
                    return asn
                continue
            key_array, asn_array = self._arrays[(version, length)]
            index = int(np.searchsorted(key_array, np.uint64(key)))
            if index < key_array.size and int(key_array[index]) == key:
                return int(asn_array[index])
        return None


def _file_signature(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size


class Pfx2asBackend:
    """
    Lookups in a local prefix-to-AS file, with an optional AS-names file (§7.4).

    Loaded lazily at the first lookup of a process; reloaded when a file's modification time (or size) changes,
    checked at most once per ``check_interval_s``. A file that cannot be read is a failure.
    """

    name = "pfx2as"

    def __init__(
        self,
        prefix_file: Path,
        names_file: Path | None = None,
        *,
        check_interval_s: float = FILE_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix_file = Path(prefix_file)
        self.names_file = None if names_file is None else Path(names_file)
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._table: PrefixTable | None = None
        self._names: dict[int, str] = {}
        self._signature: tuple[Any, ...] | None = None
        self._checked_at = -math.inf

    def _signatures(self) -> tuple[Any, ...]:
        names = None if self.names_file is None else _file_signature(self.names_file)
        return _file_signature(self.prefix_file), names

    def _load(self, signature: tuple[Any, ...]) -> None:
        """Read both files; an OSError propagates."""
        skipped = 0

        def entries(lines: Iterable[str]) -> Iterable[tuple[int, int, int, int]]:
            nonlocal skipped
            for line in lines:
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    entry = parse_prefix_line(stripped)
                    skipped += entry is None
                    if entry is not None:
                        yield entry

        with self.prefix_file.open("r", encoding="utf-8", errors="replace") as handle:
            table = PrefixTable(entries(handle))
        names: dict[int, str] = {}
        if self.names_file is not None:
            with self.names_file.open("r", encoding="utf-8", errors="replace") as handle:
                names = parse_names(handle)
        self._table, self._names, self._signature = table, names, signature
        log.info(
            "ip-to-as prefix file loaded",
            file=self.prefix_file,
            prefixes=table.size,
            malformed_lines=skipped,
            names=len(names),
        )

    def _ensure_loaded(self) -> PrefixTable:
        """The table, read again when a file changed (looked at once per ``check_interval_s`` at most)."""
        now = self._clock()
        if self._table is not None and now - self._checked_at < self.check_interval_s:
            return self._table
        self._checked_at = now
        try:
            signature = self._signatures()
            if self._table is None or signature != self._signature:
                self._load(signature)
        except OSError as exc:
            self._table, self._names, self._signature = None, {}, None
            raise ResolverUnavailable(f"pfx2as: cannot read {exc.filename}: {exc.strerror or exc}") from exc
        assert self._table is not None
        return self._table

    def lookup(self, address: Address) -> AsInfo:
        table = self._ensure_loaded()
        asn = table.lookup(address)
        if asn is None:
            return NO_AS
        return AsInfo(asn, self._names.get(asn))


class Resolver:
    """
    Resolves client addresses to AS numbers and names with the rules of §7.1; one per process.

    No lookup for host names and non-global addresses; a least-recently-used cache of ``cache_size`` entries valid
    ``cache_ttl_s`` seconds (found and not-found answers, never failures); after a backend failure (null, null)
    for ``suspend_s`` seconds without asking the backend, and at most one WARNING per ``warning_interval_s``.
    :meth:`resolve` never raises. A ``backend`` of None is the ``none`` backend: always (null, null), no warning.
    """

    def __init__(
        self,
        backend: Backend | None,
        *,
        cache_size: int = 4096,
        cache_ttl_s: float = 86400.0,
        suspend_s: float = SUSPEND_AFTER_FAILURE_S,
        warning_interval_s: float = WARNING_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.cache_size = cache_size
        self.cache_ttl_s = cache_ttl_s
        self.suspend_s = suspend_s
        self.warning_interval_s = warning_interval_s
        self._clock = clock
        self._cache: OrderedDict[Address, tuple[float, AsInfo]] = OrderedDict()
        self._suspended_until: float | None = None
        self._warned_at: float | None = None

    def resolve(self, ip: str) -> AsInfo:
        """The AS of the client address ``ip`` (text without port); :data:`NO_AS` when unknown or failing."""
        if self.backend is None:
            return NO_AS
        address = lookup_address(ip)
        if address is None:
            return NO_AS
        now = self._clock()
        cached = self._cache.get(address)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(address)
                return cached[1]
            del self._cache[address]
        if self._suspended_until is not None and now < self._suspended_until:
            return NO_AS
        try:
            answer = self.backend.lookup(address)
        except Exception as exc:  # §7.1: a resolver failure never fails a window
            self._failed(exc)
            return NO_AS
        self._suspended_until = None
        if self.cache_ttl_s > 0:
            self._cache[address] = (self._clock() + self.cache_ttl_s, answer)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return answer

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._suspended_until = now + self.suspend_s
        if self._warned_at is None or now - self._warned_at >= self.warning_interval_s:
            self._warned_at = now
            log.warning(
                "ip-to-as lookup failed",
                backend=getattr(self.backend, "name", type(self.backend).__name__),
                error=exc if isinstance(exc, ResolverUnavailable) else f"{type(exc).__name__}: {exc}",
                suspended_s=f"{self.suspend_s:g}",
            )

    def close(self) -> None:
        """Close the backend's connection, if it has one (the mysql backend)."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def backend_from_config(config: Config) -> Backend | None:
    """The backend selected by ``TIX_IPTOAS_BACKEND``; None for ``none``."""
    if config.iptoas_backend == "mysql":
        return MysqlBackend(
            host=config.iptoas_db_host,
            port=config.iptoas_db_port,
            user=config.iptoas_db_user,
            password=config.iptoas_db_password,
            database=config.iptoas_db_name,
            timeout_s=config.iptoas_timeout_s,
        )
    if config.iptoas_backend == "pfx2as":
        assert config.iptoas_pfx2as_file is not None  # Config.from_env requires it
        return Pfx2asBackend(config.iptoas_pfx2as_file, config.iptoas_asnames_file)
    return None


def resolver_from_config(config: Config) -> Resolver:
    """A new resolver with the backend and cache settings of ``config``."""
    return Resolver(
        backend_from_config(config), cache_size=config.iptoas_cache_size, cache_ttl_s=config.iptoas_cache_ttl_s
    )
