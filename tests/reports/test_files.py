"""Tests of processor.reports.files: reading, validating and writing report files (reports spec §2, §5)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from processor.errors import BadAddress, UnusableReport
from processor.observations import observations
from processor.reports.files import (
    EARLIEST_TS,
    MAX_REPORT_BYTES,
    MAX_TS_AHEAD_OF_MTIME_S,
    is_young,
    parse_address,
    parse_report,
    read_report,
    report_candidates,
    report_json,
    write_report,
)
from processor.reports.records import encode_records
from tests.privileges import without_dac_override


def _records(count: int = 60, start_ts: int = 1_700_000_000):
    seconds = np.arange(count)
    t1 = 40_000_000_000_000 + seconds * 1_000_000_000
    return observations(start_ts + seconds, t1, t1 + 5_000_000, t1 + 5_100_000, t1 + 30_000_000)


def _document(**changes):
    document = json.loads(report_json(_records(3), from_address="203.0.113.45:4501", user_id=7, installation_id=12))
    document.update(changes)
    return document


def _write(tmp_path: Path, content: bytes | str, name: str = "tix-report-1700000000.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _reason(path: Path) -> str:
    with pytest.raises(UnusableReport) as caught:
        read_report(path)
    return caught.value.reason


class TestReadReport:
    def test_written_report_reads_back_with_its_address_and_records(self, tmp_path):
        records = _records(60)
        path = write_report(tmp_path, records, from_address="203.0.113.45:4501", user_id=7, installation_id=12)

        report = read_report(path)

        assert "tix-report-1700000000.json" == path.name
        assert "203.0.113.45" == report.ip
        assert (7, 12) == (report.user_id, report.installation_id)
        assert 60 == report.count
        assert (1_700_000_000, 1_700_000_059, 59) == (report.first_ts, report.last_ts, report.span_s)
        assert records["t4"].tolist() == report.observations["t4"].tolist()

    def test_written_file_has_the_condenser_key_order_and_no_newline(self, tmp_path):
        path = write_report(tmp_path, _records(2), from_address="1.2.3.4:4501", user_id=1, installation_id=2)

        text = path.read_text()

        assert not text.endswith("\n")
        assert [
            "from", "to", "type", "initialTimestamp", "receptionTimestamp", "sentTimestamp", "finalTimestamp",
            "publicKey", "message", "signature", "userId", "installationId",
        ] == list(json.loads(text))  # fmt: skip

    def test_real_sample_report_is_read(self, shared_data):
        report = read_report(shared_data / "samples" / "test-tix-report.json")

        assert "181.167.39.126" == report.ip
        assert 59 == report.count
        assert {ord("S")} == set(report.observations["type"].tolist())

    def test_extra_keys_are_ignored(self, tmp_path):
        """S11: the original crashed on keys beyond the 12 required ones."""
        path = _write(tmp_path, json.dumps(_document(extra={"a": 1})))

        assert 3 == read_report(path).count

    def test_duplicated_key_keeps_its_last_value(self, tmp_path):
        text = json.dumps(_document(type="SHORT"))[:-1] + ', "type": "LONG"}'

        assert 3 == read_report(_write(tmp_path, text)).count


class TestUnusableReasons:
    """Every row of reports spec §5.1 gives its reason code."""

    def test_symlink(self, tmp_path):
        target = write_report(tmp_path, _records(3), from_address="1.2.3.4:1", user_id=1, installation_id=1)
        link = tmp_path / "link.json"
        link.symlink_to(target)

        assert "symlink" == _reason(link)

    def test_directory(self, tmp_path):
        (tmp_path / "dir.json").mkdir()

        assert "not_regular_file" == _reason(tmp_path / "dir.json")

    def test_fifo(self, tmp_path):
        os.mkfifo(tmp_path / "pipe.json")

        assert "not_regular_file" == _reason(tmp_path / "pipe.json")

    def test_too_large(self, tmp_path):
        assert "too_large" == _reason(_write(tmp_path, b" " * (MAX_REPORT_BYTES + 1)))

    def test_empty(self, tmp_path):
        assert "empty" == _reason(_write(tmp_path, b""))

    @pytest.mark.parametrize(
        "content",
        [
            b"{not json",
            b'{"a": NaN}',
            b"[1, 2]",
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{}",
            b'{"from": "1.2.3.4"} trailing',
        ],
        ids=["syntax", "nan", "array", "bom", "not-utf8", "trailing-garbage"],
    )
    def test_not_json(self, tmp_path, content):
        assert "not_json" == _reason(_write(tmp_path, content))

    @pytest.mark.parametrize(
        "changes",
        [
            {"message": None},
            {"userId": "7"},
            {"userId": 7.0},
            {"installationId": True},
            {"initialTimestamp": 1e3},
            {"type": "SHORT"},
            {"to": 4500},
        ],
        ids=["null-message", "string-id", "float-id", "bool-id", "exponent", "type-not-long", "to-not-string"],
    )
    def test_schema(self, tmp_path, changes):
        assert "schema" == _reason(_write(tmp_path, json.dumps(_document(**changes))))

    def test_missing_key_is_schema(self, tmp_path):
        document = _document()
        del document["signature"]

        assert "schema" == _reason(_write(tmp_path, json.dumps(document)))

    @pytest.mark.parametrize("address", ["", "[2001:db8::1", "1.2.3.4:99999", "1.2.3.4:port", "bad_host:1", "a..b"])
    def test_bad_address(self, tmp_path, address):
        assert "bad_address" == _reason(_write(tmp_path, json.dumps(_document(**{"from": address}))))

    @pytest.mark.parametrize("message", ["AAAA AAAA", "AA=A", "$$$$", "AAA", "ñAAA"])
    def test_bad_base64(self, tmp_path, message):
        assert "bad_base64" == _reason(_write(tmp_path, json.dumps(_document(message=message))))

    def test_extra_padding_after_a_full_group_is_read_as_the_standard_decoder_reads_it(self, tmp_path):
        # base64.b64decode(validate=True) accepts "=" after a complete group (pybase64, for one, refuses it).
        message = base64.b64encode(encode_records(_records(1))).decode() + "="

        report = read_report(_write(tmp_path, json.dumps(_document(message=message))))

        assert 1 == report.count

    def test_bad_base64_is_what_the_standard_decoder_refuses_on_every_short_text(self, tmp_path):
        alphabet = "Aa+/=-_ "
        texts = ["".join(chars) for n in range(6) for chars in itertools.product(alphabet, repeat=n)]
        document = _document()
        for text in texts:
            try:
                base64.b64decode(text, validate=True)
                refused = False
            except ValueError:  # binascii.Error is one
                refused = True
            data = json.dumps(document | {"message": text}).encode()
            with pytest.raises(UnusableReport) as caught:  # no short text decodes to a whole 45-byte record
                parse_report(data, tmp_path / "tix-report-1700000000.json", time.time())
            assert refused == ("bad_base64" == caught.value.reason), text

    def test_bad_record_length(self, tmp_path):
        message = base64.b64encode(b"\0" * 44).decode()

        assert "bad_record_length" == _reason(_write(tmp_path, json.dumps(_document(message=message))))

    def test_no_records(self, tmp_path):
        assert "no_records" == _reason(_write(tmp_path, json.dumps(_document(message=""))))

    def test_unusable_file_carries_its_mtime_for_the_young_rule(self, tmp_path):
        path = _write(tmp_path, b"")
        os.utime(path, (time.time() - 61, time.time() - 61))
        with pytest.raises(UnusableReport) as caught:
            read_report(path)

        assert not is_young(caught.value, time.time())
        assert is_young(caught.value, caught.value.mtime_s + 59.9)

    def test_a_file_dated_more_than_60_s_ahead_is_not_young(self, tmp_path):
        """H5: a future mtime is no trustworthy age, so the file is judged as old."""
        path = _write(tmp_path, b"")
        now_s = time.time()
        os.utime(path, (now_s + 61, now_s + 61))
        with pytest.raises(UnusableReport) as caught:
            read_report(path)

        assert not is_young(caught.value, now_s)
        assert is_young(caught.value, now_s + 1.1)  # 59.9 s ahead: within the tolerated clock difference

    def test_vanished_file_raises_file_not_found(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            read_report(tmp_path / "gone.json")


class TestParseAddress:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("203.0.113.45:4501", "203.0.113.45"),
            ("203.0.113.45", "203.0.113.45"),
            ("[2001:DB8:0:0:0:0:0:1]:4501", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("Client.Example.net:4501", "client.example.net"),
            ("client.example.net.", "client.example.net"),
            ("[::ffff:192.0.2.7]:4501", "192.0.2.7"),
            ("[fe80::1%eth0]:4501", "fe80::1"),
            ("[0:0:0:0:0:0:0:0%0]:4500", "::"),
            ("localhost:0", "localhost"),
        ],
    )
    def test_accepted_forms(self, text, expected):
        """reports spec §2.2, change D5."""
        assert expected == parse_address(text)

    @pytest.mark.parametrize(
        "text", ["", "[", "[1.2.3.4]:1", "[2001:db8::1]x", "1.2.3.4:", "1.2.3.4:65536", "-bad.example", "a" * 64]
    )
    def test_rejected_forms(self, text):
        with pytest.raises(BadAddress):
            parse_address(text)

    def test_ipv4_with_port_equals_the_original_text_before_the_colon(self):
        """D5 keeps the original's IP rule for IPv4: windows and payloads do not change there."""
        rng = np.random.default_rng(5)
        texts = [".".join(str(b) for b in rng.integers(0, 256, 4)) + f":{rng.integers(0, 65536)}" for _ in range(200)]

        assert [text.partition(":")[0] for text in texts] == [parse_address(text) for text in texts]


def test_candidates_are_json_names_in_name_order_without_dot_files(tmp_path):
    for name in ["tix-report-2.json", "tix-report-1.json", ".tix-processor-state", ".hidden.json", "notes.txt"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "failed-results").mkdir()

    assert ["tix-report-1.json", "tix-report-2.json"] == report_candidates(tmp_path)


class TestImplausibleTime:
    """H10: observations a working client cannot have made are an unusable report, reason ``implausible_time``."""

    def _report(self, tmp_path: Path, first_ts: int, mtime_s: float, count: int = 60) -> Path:
        path = write_report(tmp_path, _records(count, first_ts), from_address="1.2.3.4:1", user_id=1, installation_id=1)
        os.utime(path, (mtime_s, mtime_s))
        return path

    def test_a_ts_before_2010_is_implausible(self, tmp_path):
        path = self._report(tmp_path, EARLIEST_TS - 30, mtime_s=EARLIEST_TS + 100)  # 30 records before 2010

        assert "implausible_time" == _reason(path)

    def test_the_first_second_of_2010_is_plausible(self, tmp_path):
        path = self._report(tmp_path, 1_262_304_000, mtime_s=1_262_304_100)  # 2010-01-01T00:00:00Z

        assert 1_262_304_000 == read_report(path).first_ts

    def test_a_ts_more_than_a_day_after_the_mtime_is_implausible(self, tmp_path):
        """One record 10^12 s ahead made a POST timestamped 10^12 and the gap rule drop 13 real reports."""
        records = _records(60)
        records["ts"][30] = 10**12
        path = write_report(tmp_path, records, from_address="1.2.3.4:1", user_id=1, installation_id=1)
        os.utime(path, (1_700_000_100, 1_700_000_100))

        with pytest.raises(UnusableReport) as caught:
            read_report(path)

        assert "implausible_time" == caught.value.reason
        assert "1000000000000" in caught.value.detail
        assert 1_700_000_100 == caught.value.mtime_s

    def test_a_ts_exactly_a_day_after_the_mtime_is_plausible(self, tmp_path):
        mtime_s = 1_700_000_000 - MAX_TS_AHEAD_OF_MTIME_S
        path = self._report(tmp_path, 1_700_000_000 - 59, mtime_s=mtime_s)  # last record at mtime + 1 day

        assert 1_700_000_000 == read_report(path).last_ts
        assert "implausible_time" == _reason(self._report(tmp_path, 1_700_000_000 - 58, mtime_s=mtime_s))

    def test_the_check_comes_after_the_record_checks(self, tmp_path):
        """Rows 1-10 of reports spec §5.1 keep their reasons: a file without records is ``no_records``."""
        path = _write(tmp_path, json.dumps(_document(message="")))
        os.utime(path, (EARLIEST_TS - 10**6, EARLIEST_TS - 10**6))

        assert "no_records" == _reason(path)

    def test_the_batch_formatter_may_skip_the_check(self, tmp_path):
        """tools spec §1.2 cuts archived client logs with changes D5, S1 and D12 only."""
        path = self._report(tmp_path, 1_000_000_000, mtime_s=1_000_000_100)

        assert 1_000_000_000 == read_report(path, check_time=False).first_ts


class TestHostileFiles:
    """Files a hostile writer can plant in an installation directory (reliability spec §6)."""

    def test_a_sparse_5_gib_file_is_too_large_and_never_read(self, tmp_path):
        """H2: the 1 MiB cap is decided on lstat's size; nothing of the file is read."""
        path = tmp_path / "tix-report-1700000000.json"
        subprocess.run(["truncate", "-s", "5G", str(path)], check=True)

        with pytest.raises(UnusableReport) as caught:
            read_report(path)

        assert "too_large" == caught.value.reason
        assert f"{5 << 30} bytes" == caught.value.detail

    def test_a_file_that_grows_past_the_cap_while_read_is_too_large(self, tmp_path):
        """H2: the read stops at 1 MiB + 1 byte whatever lstat said."""
        path = _write(tmp_path, json.dumps(_document()))
        info = os.lstat(path)
        with open(path, "ab") as grown:
            grown.write(b" " * MAX_REPORT_BYTES)

        with pytest.raises(UnusableReport) as caught:
            read_report(path, info)

        assert ("too_large", "grew while read") == (caught.value.reason, caught.value.detail)

    def test_a_fifo_swapped_in_after_lstat_is_not_opened_for_ever(self, tmp_path):
        """H1's O_NONBLOCK for reports: opening a FIFO without a writer would wait for one for ever."""
        path = _write(tmp_path, json.dumps(_document()))
        info = os.lstat(path)
        path.unlink()
        os.mkfifo(path)
        outcome: list[BaseException] = []
        reader = threading.Thread(target=lambda: outcome.append(_raised(read_report, path, info)), daemon=True)

        reader.start()
        reader.join(5.0)
        if reader.is_alive():  # free the reader before failing: open a writer end, then close it
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(5.0)

        assert [("not_regular_file",)] == [(getattr(error, "reason", repr(error)),) for error in outcome]

    def test_a_symlink_swapped_in_after_lstat_is_not_followed(self, tmp_path):
        secret = tmp_path / "outside.json"
        secret.write_text(json.dumps(_document()))
        path = _write(tmp_path, json.dumps(_document()))
        info = os.lstat(path)
        path.unlink()
        path.symlink_to(secret)

        with pytest.raises(UnusableReport) as caught:
            read_report(path, info)

        assert "symlink" == caught.value.reason

    def test_a_report_nobody_may_read_is_unreadable_with_its_mtime(self, tmp_path):
        """H4, run without CAP_DAC_OVERRIDE (the tests run as root, who may read anything)."""
        path = _write(tmp_path, json.dumps(_document()))
        path.chmod(0)
        os.utime(path, (1_700_000_100, 1_700_000_100))

        outcome = without_dac_override(
            "import json, sys\n"
            "from pathlib import Path\n"
            "from processor.errors import UnusableReport\n"
            "from processor.reports.files import read_report\n"
            "try:\n"
            "    read_report(Path(sys.argv[1]))\n"
            "except UnusableReport as error:\n"
            "    print(json.dumps([error.reason, error.mtime_s, error.detail]))\n",
            str(path),
        )

        assert ["unreadable", 1_700_000_100, "Permission denied"] == json.loads(outcome)


def _raised(function, *args) -> BaseException | None:
    try:
        function(*args)
    except BaseException as error:
        return error
    return None
