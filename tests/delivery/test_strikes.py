"""Tests of processor.delivery.strikes: a result refused alone with a 5xx is retired after 3 strikes (H9)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from processor.delivery.failed_results import delete_failed_result, ensure_failed_results_dir, write_failed_result
from processor.delivery.strikes import MAX_STRIKES, strike_refused, strikes_of
from processor.logs import event_logger
from tests.delivery.test_failed_results import names, results


@pytest.fixture
def failed_dir(tmp_path: Path) -> Path:
    return ensure_failed_results_dir(tmp_path)


def _no_fence() -> None:
    """The lock is held for the whole test."""


def _strike(path, caplog) -> int:
    with caplog.at_level(logging.WARNING):
        return strike_refused([path], fence=_no_fence, run_log=event_logger("test").bind(user="7"))


def test_strikes_count_up_to_three_then_the_result_moves_to_rejected_with_an_error(failed_dir, caplog):
    path = write_failed_result(failed_dir, results(100), ip="2001:db8::1", asn=None, as_owner=None).path

    counts = []
    for _ in range(MAX_STRIKES - 1):
        assert 0 == _strike(path, caplog)
        counts.append(strikes_of(path))
    retired = _strike(path, caplog)

    assert [1, 2] == counts
    assert 1 == retired
    assert [path.name] == names(failed_dir / "rejected")
    assert [] == [name for name in os.listdir(failed_dir) if name != "rejected"]  # the sidecar went too
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [("refused_while_api_up", 3)] == [(r.fields["reason"], r.fields["strikes"]) for r in errors]


def test_a_result_delivered_later_takes_its_sidecar_with_it(failed_dir, caplog):
    path = write_failed_result(failed_dir, results(100), ip="2001:db8::1", asn=None, as_owner=None).path
    _strike(path, caplog)

    delete_failed_result(path)

    assert [] == os.listdir(failed_dir)


def test_an_unreadable_sidecar_counts_as_no_strike(failed_dir):
    path = write_failed_result(failed_dir, results(100), ip="2001:db8::1", asn=None, as_owner=None).path
    os.mkfifo(failed_dir / f".strikes-{path.name}")

    assert 0 == strikes_of(path)
