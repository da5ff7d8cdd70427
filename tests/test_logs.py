"""Tests of processor.logs: event lines that a logfmt parser reads, whatever the values hold."""

from __future__ import annotations

import logging

import pytest

from processor.logs import event_logger, logfmt_value
from tests.logfmt import parse


class TestLogfmtValue:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(None, ""), (12, "12"), ("1700000000.txt", "1700000000.txt"), ("", '""'), ("a b", '"a b"'), (0.5, "0.5")],
    )
    def test_writes_plain_values_bare_and_others_quoted(self, value, expected):
        assert expected == logfmt_value(value)

    @pytest.mark.parametrize("hostile", ["x\ny=1", 'a"b', "k=v", "back\\slash", "tab\there", "line\u2028sep", "é ü"])
    def test_a_hostile_value_reads_back_as_itself_on_one_line(self, hostile):
        """A newline, quote or ``=`` in a file name can neither end the line nor forge a field."""
        line = f"report moved name={logfmt_value(hostile)} reason=bad_json"

        assert ("report moved", {"name": hostile, "reason": "bad_json"}) == parse(line)


class TestEventLogger:
    def test_bound_fields_come_first_then_the_call_fields(self, caplog):
        log = event_logger("processor.test").bind(user="23", installation="41")

        with caplog.at_level(logging.INFO, logger="processor.test"):
            log.info("window posted", first="1700000000.txt", posted=12, asn=None)

        (record,) = caplog.records
        assert "window posted user=23 installation=41 first=1700000000.txt posted=12 asn=" == record.getMessage()
        assert "window posted" == record.event
        assert {"user": "23", "installation": "41", "first": "1700000000.txt", "posted": 12, "asn": None} == (
            record.fields
        )

    def test_a_percent_sign_in_a_value_is_not_a_format_directive(self, caplog):
        with caplog.at_level(logging.INFO, logger="processor.test"):
            event_logger("processor.test").info("report moved", name="100%s.txt")

        assert ("report moved", {"name": "100%s.txt"}) == parse(caplog.records[0].getMessage())

    def test_exc_info_still_reaches_logging(self, caplog):
        with caplog.at_level(logging.ERROR, logger="processor.test"):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                event_logger("processor.test").error("run failed", user="23", exc_info=True)

        assert caplog.records[0].exc_info is not None
        assert {"user": "23"} == caplog.records[0].fields
