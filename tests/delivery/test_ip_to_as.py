"""Tests of processor.delivery.ip_to_as: the rules of service.md §7 with a real MariaDB and real prefix files."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.config import Config
from processor.delivery import open_delivery
from processor.delivery.ip_to_as import (
    NO_AS,
    AsInfo,
    MysqlBackend,
    Pfx2asBackend,
    PrefixTable,
    Resolver,
    best_router_row,
    lookup_address,
    parse_as_field,
    parse_names,
    parse_prefix_line,
    resolver_from_config,
)
from processor.errors import ResolverUnavailable

MARIADB = ("127.0.0.1", 3306)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingBackend:
    """In-memory stand-in for one resolver unit test; the real backends are tested below."""

    name = "counting"

    def __init__(self, answers: dict[str, AsInfo] | None = None, fail: bool = False) -> None:
        self.answers = answers or {}
        self.fail = fail
        self.calls: list[str] = []

    def lookup(self, address):
        self.calls.append(str(address))
        if self.fail:
            raise ResolverUnavailable("backend down")
        return self.answers.get(str(address), NO_AS)


class TestLookupAddress:
    @pytest.mark.parametrize(
        "ip",
        [
            "tix.example.org",  # host name: no DNS resolution
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "240.0.0.1",
            "0.0.0.0",
            "100.64.0.1",  # shared address space
            "192.0.2.10",  # documentation
            "198.51.100.7",
            "203.0.113.45",
            "::1",
            "fe80::1",
            "fc00::1",
            "2001:db8::1",
            "ff02::1",
            "::",
        ],
    )
    def test_non_global_addresses_and_host_names_are_not_looked_up(self, ip):
        assert lookup_address(ip) is None

    def test_global_addresses_are_looked_up(self):
        assert lookup_address("8.8.8.8") == ipaddress.IPv4Address("8.8.8.8")
        assert lookup_address("2800:40::1") == ipaddress.IPv6Address("2800:40::1")

    def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(self):
        assert lookup_address("::ffff:8.8.4.4") == ipaddress.IPv4Address("8.8.4.4")


class TestParsing:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ("8.8.8.0\t24\t15169", (4, 0x08080800, 24, 15169)),
            ("8.8.8.0 24 15169", (4, 0x08080800, 24, 15169)),
            ("8.8.8.0/24 15169", (4, 0x08080800, 24, 15169)),
            ("1.2.3.0\t24\t64501_64500", (4, 0x01020300, 24, 64500)),
            ("1.2.3.0\t24\t64502,64500,64501", (4, 0x01020300, 24, 64500)),
            ("2800:40::\t32\t6057", (6, 0x28000040 << 96, 32, 6057)),
        ],
    )
    def test_prefix_lines_of_both_formats(self, line, expected):
        assert parse_prefix_line(line) == expected

    @pytest.mark.parametrize(
        "line",
        ["8.8.8.0\t24", "8.8.8.0\t33\t1", "8.8.8\t24\t1", "8.8.8.0\t24\tAS1", "x/24 1", "8.8.8.0/24", "1.0.0.0 8 1 2"],
    )
    def test_malformed_prefix_lines_are_refused(self, line):
        assert parse_prefix_line(line) is None

    def test_as_field_gives_the_lowest_number(self):
        assert parse_as_field("7_3_5") == 3
        assert parse_as_field("9,4") == 4
        assert parse_as_field("1__2") is None
        assert parse_as_field("{1,2}") is None

    def test_names_file_lines(self):
        names = parse_names(
            [
                "64500\tEXAMPLE-NET - Example Networks, AR  \n",
                "  AS64501   Other Net\n",
                "as64502 lower-case prefix\n",
                "not a line\n",
                "64503\n",
                "64500\tAAA first in order\n",
            ]
        )

        assert names == {64500: "AAA first in order", 64501: "Other Net", 64502: "lower-case prefix"}


class TestPrefixTable:
    def table(self) -> PrefixTable:
        lines = [
            "8.0.0.0 8 3356",
            "8.8.0.0 16 15170",
            "8.8.8.0 24 15169",
            "8.8.8.0 24 15168",  # the same prefix twice: the lowest AS wins
            "200.0.0.0 7 1",
            "2800:40:: 32 6057",
            "2800:40:1:: 48 7000",
            "2800:40:1:2::5 128 7001",
            "2800:40:1:2:: 80 7002",
        ]
        return PrefixTable(parse_prefix_line(line) for line in lines)

    @pytest.mark.parametrize(
        ("ip", "asn"),
        [
            ("8.8.8.8", 15168),
            ("8.8.9.1", 15170),
            ("8.200.0.1", 3356),
            ("201.1.1.1", 1),
            ("9.0.0.1", None),
            ("2800:40:1:2::5", 7001),
            ("2800:40:1:2::6", 7002),
            ("2800:40:1:3::1", 7000),
            ("2800:40:ffff::1", 6057),
            ("2a00::1", None),
        ],
    )
    def test_longest_prefix_wins(self, ip, asn):
        assert self.table().lookup(ipaddress.ip_address(ip)) == asn

    def test_size_counts_every_accepted_line(self):
        assert self.table().size == 9


class TestBestRouterRow:
    def test_longest_mask_then_lowest_as(self):
        rows = [("8.8.0.0", 15170, 16), ("8.8.8.0", 20, 24), ("8.8.8.0", 10, 24), ("8.0.0.0", 3356, 8)]

        assert best_router_row(rows, ipaddress.IPv4Address("8.8.8.8")) == 10

    def test_malformed_rows_are_ignored(self):
        rows = [("8.8.8.x", 1, 24), ("8.8.8.0", None, 24), ("8.8.8.0", 2, 0), ("8.8.8.0", 3, 33), ("8.8.0.0", 4, 16)]

        assert best_router_row(rows, ipaddress.IPv4Address("8.8.8.8")) == 4

    def test_no_containing_row(self):
        assert best_router_row([("8.8.4.0", 1, 24)], ipaddress.IPv4Address("8.8.8.8")) is None


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def pfx2as_files(tmp_path: Path) -> tuple[Path, Path]:
    prefixes = tmp_path / "routeviews.pfx2as"
    prefixes.write_text(
        "# comment line\n"
        "\n"
        "8.8.8.0\t24\t15169\n"
        "8.8.0.0/16 15170\n"
        "1.1.1.0\t24\t13335_13336\n"
        "garbage line\n"
        "2800:40::\t32\t6057\n"
    )
    names = tmp_path / "as-names.txt"
    names.write_text("15169\tGOOGLE - Google LLC, US\n13335\tCLOUDFLARENET - Cloudflare, Inc., US\n6057\tAntel, UY\n")
    return prefixes, names


class TestPfx2asBackend:
    def test_lookups_with_names(self, pfx2as_files, caplog):
        backend = Pfx2asBackend(*pfx2as_files)

        with caplog.at_level(logging.INFO, logger="processor.delivery.ip_to_as"):
            google = backend.lookup(ipaddress.ip_address("8.8.8.8"))

        assert google == AsInfo(15169, "GOOGLE - Google LLC, US")
        assert backend.lookup(ipaddress.ip_address("8.8.4.4")) == AsInfo(15170, None)
        assert backend.lookup(ipaddress.ip_address("1.1.1.1")) == AsInfo(13335, "CLOUDFLARENET - Cloudflare, Inc., US")
        assert backend.lookup(ipaddress.ip_address("2800:40::9")) == AsInfo(6057, "Antel, UY")
        assert backend.lookup(ipaddress.ip_address("9.9.9.9")) == NO_AS
        (loaded,) = [r for r in caplog.records if r.getMessage().startswith("ip-to-as prefix file loaded")]
        assert "prefixes=4 malformed_lines=1 names=3" in loaded.getMessage()

    def test_without_names_file_the_owner_is_null(self, pfx2as_files):
        backend = Pfx2asBackend(pfx2as_files[0])

        assert backend.lookup(ipaddress.ip_address("8.8.8.8")) == AsInfo(15169, None)

    def test_changed_file_is_reloaded_at_the_next_check(self, pfx2as_files):
        prefixes, names = pfx2as_files
        clock = FakeClock()
        backend = Pfx2asBackend(prefixes, names, check_interval_s=60, clock=clock)
        backend.lookup(ipaddress.ip_address("8.8.8.8"))
        prefixes.write_text("8.8.8.0\t24\t64999\n")
        os.utime(prefixes, ns=(1, 1))

        clock.now += 30
        before_check = backend.lookup(ipaddress.ip_address("8.8.8.8"))
        clock.now += 31
        after_check = backend.lookup(ipaddress.ip_address("8.8.8.8"))

        assert before_check.asn == 15169
        assert after_check.asn == 64999

    def test_missing_file_is_a_failure(self, tmp_path):
        backend = Pfx2asBackend(tmp_path / "absent")

        with pytest.raises(ResolverUnavailable, match="absent"):
            backend.lookup(ipaddress.ip_address("8.8.8.8"))

    def test_removed_file_is_a_failure_at_the_next_check(self, pfx2as_files):
        clock = FakeClock()
        backend = Pfx2asBackend(*pfx2as_files, clock=clock)
        backend.lookup(ipaddress.ip_address("8.8.8.8"))
        pfx2as_files[0].unlink()
        clock.now += 61

        with pytest.raises(ResolverUnavailable):
            backend.lookup(ipaddress.ip_address("8.8.8.8"))


class TestResolver:
    def test_none_backend_answers_null_without_warning(self, caplog):
        with caplog.at_level(logging.DEBUG):
            assert Resolver(None).resolve("8.8.8.8") == NO_AS

        assert caplog.records == []

    def test_non_global_addresses_never_reach_the_backend(self):
        backend = CountingBackend()

        answers = [Resolver(backend).resolve(ip) for ip in ("10.0.0.1", "tix.example.org", "203.0.113.45")]

        assert answers == [NO_AS, NO_AS, NO_AS]
        assert backend.calls == []

    def test_answers_found_and_not_found_are_cached_until_their_ttl(self):
        clock = FakeClock()
        backend = CountingBackend({"8.8.8.8": AsInfo(15169, "GOOGLE")})
        resolver = Resolver(backend, cache_ttl_s=100, clock=clock)

        first = [resolver.resolve("8.8.8.8"), resolver.resolve("9.9.9.9")]
        again = [resolver.resolve("8.8.8.8"), resolver.resolve("9.9.9.9")]
        clock.now += 101
        resolver.resolve("8.8.8.8")

        assert first == again == [AsInfo(15169, "GOOGLE"), NO_AS]
        assert backend.calls == ["8.8.8.8", "9.9.9.9", "8.8.8.8"]

    def test_cache_keeps_the_most_recently_used_addresses(self):
        backend = CountingBackend()
        resolver = Resolver(backend, cache_size=2)

        for ip in ("8.8.8.8", "9.9.9.9", "8.8.8.8", "1.1.1.1", "8.8.8.8", "9.9.9.9"):
            resolver.resolve(ip)

        assert backend.calls == ["8.8.8.8", "9.9.9.9", "1.1.1.1", "9.9.9.9"]

    def test_ttl_zero_disables_the_cache(self):
        backend = CountingBackend()
        resolver = Resolver(backend, cache_ttl_s=0)

        resolver.resolve("8.8.8.8")
        resolver.resolve("8.8.8.8")

        assert backend.calls == ["8.8.8.8", "8.8.8.8"]

    def test_failure_gives_null_suspends_the_backend_for_60_s_and_warns_once_per_minute(self, caplog):
        clock = FakeClock()
        backend = CountingBackend({"8.8.8.8": AsInfo(15169, None)}, fail=True)
        resolver = Resolver(backend, clock=clock)

        with caplog.at_level(logging.WARNING, logger="processor.delivery.ip_to_as"):
            during = [resolver.resolve("8.8.8.8")]
            clock.now += 59
            during.append(resolver.resolve("1.1.1.1"))
            calls_while_suspended = len(backend.calls)
            clock.now += 2
            during.append(resolver.resolve("8.8.8.8"))
            backend.fail = False
            clock.now += 61
            recovered = resolver.resolve("8.8.8.8")

        assert during == [NO_AS, NO_AS, NO_AS]
        assert calls_while_suspended == 1
        assert recovered == AsInfo(15169, None)
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2  # at t=0 and at t=61: never twice within a minute
        assert all(w.startswith("ip-to-as lookup failed backend=counting") for w in warnings)

    def test_failures_are_not_cached(self):
        clock = FakeClock()
        backend = CountingBackend({"8.8.8.8": AsInfo(1, None)}, fail=True)
        resolver = Resolver(backend, clock=clock)
        resolver.resolve("8.8.8.8")
        backend.fail = False
        clock.now += 61

        assert resolver.resolve("8.8.8.8") == AsInfo(1, None)

    def test_an_unexpected_backend_exception_is_a_failure_too(self):
        class Broken:
            name = "broken"

            def lookup(self, address):
                raise KeyError("bug")

        assert Resolver(Broken()).resolve("8.8.8.8") == NO_AS

    def test_pfx2as_resolver_from_config(self, pfx2as_files):
        prefixes, names = pfx2as_files
        config = Config.from_env(
            {
                "TIX_IPTOAS_BACKEND": "pfx2as",
                "TIX_IPTOAS_PFX2AS_FILE": str(prefixes),
                "TIX_IPTOAS_ASNAMES_FILE": str(names),
            }
        )

        resolver = resolver_from_config(config)

        assert resolver.resolve("8.8.8.8") == AsInfo(15169, "GOOGLE - Google LLC, US")
        assert open_delivery(config).resolver.resolve("8.8.8.8") == AsInfo(15169, "GOOGLE - Google LLC, US")

    def test_missing_prefix_file_resolves_to_null(self, tmp_path, caplog):
        config = Config.from_env({"TIX_IPTOAS_BACKEND": "pfx2as", "TIX_IPTOAS_PFX2AS_FILE": str(tmp_path / "gone")})

        with caplog.at_level(logging.WARNING, logger="processor.delivery.ip_to_as"):
            answer = resolver_from_config(config).resolve("8.8.8.8")

        assert answer == NO_AS
        assert len(caplog.records) == 1


# ---------------------------------------------------------------------------------------------------------------
# The mysql backend against the real MariaDB


def _mariadb_reachable() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(MARIADB) == 0


@pytest.fixture(scope="module")
def iptoas_db() -> Iterator[str]:
    """A throw-away database with the iptoas schema of neighbours.md §3, dropped at the end."""
    if not _mariadb_reachable():
        pytest.skip("MariaDB is not running on 127.0.0.1:3306 (CI starts it)")
    import pymysql

    name = f"test_iptoas_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"USE `{name}`")
            cursor.execute(
                "CREATE TABLE routerviews (ip_router varchar(255) NOT NULL, noderouter int, mask int NOT NULL,"
                " PRIMARY KEY (ip_router, mask))"
            )
            cursor.execute(
                "CREATE TABLE namenodes (noden int NOT NULL, name varchar(255) NOT NULL, PRIMARY KEY (noden, name))"
            )
            cursor.executemany(
                "INSERT INTO routerviews (ip_router, noderouter, mask) VALUES (%s, %s, %s)",
                [
                    ("8.0.0.0", 3356, 8),
                    ("8.8.0.0", 15170, 16),
                    ("8.8.8.0", 15169, 24),
                    ("181.0.0.0", 7303, 12),
                    ("181.16.0.0", 22927, 12),  # different /12 than 181.0/12
                    ("200.0.0.0", 1, 7),  # shorter than /8: never found (first-octet rule)
                    ("190.0.0.0", 999, 40),  # malformed mask
                    ("190.x.0.0", 998, 16),  # malformed address
                    ("190.64.0.0", 6057, 10),
                ],
            )
            cursor.executemany(
                "INSERT INTO namenodes (noden, name) VALUES (%s, %s)",
                [
                    (15169, "GOOGLE - Google LLC, US"),
                    (6057, "Administracion Nacional de Telecomunicaciones, UY"),
                    (6057, "ANTEL - Administracion Nacional de Telecomunicaciones, UY"),
                    (7303, "Telecom Argentina S.A., AR"),
                ],
            )
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def kill_connection(thread_id: int) -> None:
    import pymysql

    admin = pymysql.connect(host=MARIADB[0], port=MARIADB[1], user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute("KILL %s", (thread_id,))
    finally:
        admin.close()


def mysql_backend(database: str, *, port: int = MARIADB[1], timeout_s: float = 5.0) -> MysqlBackend:
    return MysqlBackend(host=MARIADB[0], port=port, user="root", password="", database=database, timeout_s=timeout_s)


@pytest.mark.mariadb
class TestMysqlBackend:
    @pytest.mark.parametrize(
        ("ip", "expected"),
        [
            ("8.8.8.8", AsInfo(15169, "GOOGLE - Google LLC, US")),
            ("8.8.4.4", AsInfo(15170, None)),
            ("8.1.2.3", AsInfo(3356, None)),
            ("181.1.2.3", AsInfo(7303, "Telecom Argentina S.A., AR")),
            ("181.17.2.3", AsInfo(22927, None)),
            ("201.1.1.1", NO_AS),
            ("190.64.1.1", AsInfo(6057, "ANTEL - Administracion Nacional de Telecomunicaciones, UY")),
            ("190.128.0.1", NO_AS),
            ("9.9.9.9", NO_AS),
        ],
    )
    def test_longest_prefix_and_first_name_in_ascending_order(self, iptoas_db, ip, expected):
        backend = mysql_backend(iptoas_db)
        try:
            assert backend.lookup(ipaddress.ip_address(ip)) == expected
        finally:
            backend.close()

    def test_ipv6_resolves_to_null_without_a_connection(self):
        backend = mysql_backend("no_such_database", port=1)

        assert backend.lookup(ipaddress.ip_address("2800:40::1")) == NO_AS

    def test_connection_is_reused(self, iptoas_db):
        backend = mysql_backend(iptoas_db)
        try:
            backend.lookup(ipaddress.ip_address("8.8.8.8"))
            first = backend._connection
            backend.lookup(ipaddress.ip_address("8.8.4.4"))

            assert backend._connection is first
        finally:
            backend.close()

    def test_the_connection_is_opened_at_the_first_lookup_and_closed_with_the_resolver(self, iptoas_db):
        """Made by open_delivery in the process that uses it: nothing is opened before a lookup there."""
        backend = mysql_backend(iptoas_db)
        resolver = Resolver(backend)
        before = backend._connection

        resolver.resolve("8.8.8.8")
        opened = backend._connection
        was_open = opened.open
        resolver.close()

        assert (None, True, None) == (before, was_open, backend._connection)
        assert opened.open is False

    def test_connection_is_reopened_after_an_error(self, iptoas_db):
        backend = mysql_backend(iptoas_db)
        try:
            backend.lookup(ipaddress.ip_address("8.8.8.8"))
            kill_connection(backend._connection.thread_id())  # the server dropped it
            with pytest.raises(ResolverUnavailable):
                backend.lookup(ipaddress.ip_address("8.8.4.4"))

            assert backend.lookup(ipaddress.ip_address("8.8.4.4")) == AsInfo(15170, None)
        finally:
            backend.close()

    def test_unknown_database_is_a_failure(self, iptoas_db):
        backend = mysql_backend(iptoas_db + "_missing")

        with pytest.raises(ResolverUnavailable, match="mysql"):
            backend.lookup(ipaddress.ip_address("8.8.8.8"))

    def test_refused_connection_is_a_failure(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]

        with pytest.raises(ResolverUnavailable):
            mysql_backend("iptoas", port=port).lookup(ipaddress.ip_address("8.8.8.8"))

    def test_hanging_server_is_a_failure_after_the_timeout(self):
        """A server that accepts the connection and never speaks: the read timeout ends the lookup."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
        thread.start()
        try:
            with pytest.raises(ResolverUnavailable):
                mysql_backend("iptoas", port=listener.getsockname()[1], timeout_s=0.3).lookup(
                    ipaddress.ip_address("8.8.8.8")
                )
        finally:
            thread.join(5)
            for connection in accepted:
                connection.close()
            listener.close()

    def test_resolver_from_config_uses_the_database(self, iptoas_db):
        config = Config.from_env(
            {
                "TIX_IPTOAS_BACKEND": "mysql",
                "TIX_IPTOAS_DB_HOST": MARIADB[0],
                "TIX_IPTOAS_DB_PORT": str(MARIADB[1]),
                "TIX_IPTOAS_DB_USER": "root",
                "TIX_IPTOAS_DB_PASSWORD": "",
                "TIX_IPTOAS_DB_NAME": iptoas_db,
            }
        )

        resolver = resolver_from_config(config)

        assert resolver.resolve("8.8.8.8") == AsInfo(15169, "GOOGLE - Google LLC, US")
        assert resolver.resolve("192.168.0.1") == NO_AS

    def test_database_down_resolves_to_null_with_a_warning(self, caplog):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        resolver = Resolver(mysql_backend("iptoas", port=port))

        with caplog.at_level(logging.WARNING, logger="processor.delivery.ip_to_as"):
            answers = [resolver.resolve("8.8.8.8"), resolver.resolve("1.1.1.1")]

        assert answers == [NO_AS, NO_AS]
        assert len(caplog.records) == 1
        assert "backend=mysql" in caplog.records[0].getMessage()
