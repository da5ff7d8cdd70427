"""
Hostile report files in a real one-shot cycle (reliability spec §6: H2, H4, H5, H10; reports spec §5).

Each test plants the hostile file in installation 1/1 (2/2 where a second case is needed) of a simulated tree,
runs ``python -m processor process`` against a fake tix-api, and checks that the file was judged with its reason,
that every installation still got its window posted, and that nothing outside the tree changed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import numpy as np
import pytest

from processor.reports.files import EARLIEST_TS, report_json
from processor.reports.records import decode_records
from tests.hostile.rig import INSTALLATIONS, age
from tests.privileges import without_dac_prefix


def posted_installations(api) -> list[str]:
    return sorted(f"{r['user_id']}/{r['installation_id']}" for r in api.accepted())


def moved(cycle) -> dict[str, str]:
    """File name -> reason of every 'unusable report moved' line."""
    return {line.fields["name"]: line.fields["reason"] for line in cycle.events("unusable report moved")}


def with_records(report: bytes, change) -> bytes:
    """The report ``report`` with its records passed through ``change`` (a function of a writable record array)."""
    document = json.loads(report)
    records = decode_records(base64.b64decode(document["message"])).copy()
    change(records)
    return report_json(records, from_address=document["from"], user_id=document["userId"],
                       installation_id=document["installationId"])  # fmt: skip


class TestUnreadableReports:
    """H4: a report that cannot be opened for lack of permission, in a cycle run without CAP_DAC_OVERRIDE."""

    def test_an_old_unreadable_report_is_moved_aside_and_the_young_one_waits(self, rig, api):
        old = age(rig.plant("1", 3))
        young = rig.plant("2", 1)
        for path in (old, young):
            path.chmod(0)
        before_2 = rig.reports("2")

        cycle = rig.process(api.port, prefix=without_dac_prefix())

        assert 0 == cycle.returncode, cycle.stderr
        assert {old.name: "unreadable"} == moved(cycle)
        assert [old.name] == rig.invalid("1")
        assert before_2 == rig.reports("2")  # the scan stopped at the young file: nothing of 2/2 touched
        assert ["1/1", "3/3"] == posted_installations(api)
        rig.assert_outside_untouched()

    def test_a_young_unreadable_report_is_moved_once_old(self, rig, api):
        young = rig.plant("2", 1)
        young.chmod(0)
        rig.process(api.port, prefix=without_dac_prefix())
        age(young)

        cycle = rig.process(api.port, prefix=without_dac_prefix())

        assert {young.name: "unreadable"} == moved(cycle)
        assert [young.name] == rig.invalid("2")
        assert sorted(f"{u}/{i}" for u, i in INSTALLATIONS) == posted_installations(api)


class TestFutureModificationTimes:
    def test_an_unusable_report_dated_a_year_ahead_is_judged_old(self, rig, api):
        """H5: a future mtime is no trustworthy age; the file does not stop its installation for a year."""
        planted = age(rig.plant("1", 1, b""), time.time() + 365 * 86_400)

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert {planted.name: "empty"} == moved(cycle)
        assert sorted(f"{u}/{i}" for u, i in INSTALLATIONS) == posted_installations(api)


class TestImplausibleTimes:
    """H10: observations no working client can have made."""

    def test_a_record_dated_far_ahead_is_moved_and_neither_times_the_result_nor_drops_reports(self, rig, api):
        """The case that posted a result timestamped 10^12 and made the gap rule drop 13 real reports."""
        first = rig.installation("1") / rig.reports("1")[4]

        def far_ahead(records):
            records["ts"][-1] = 10**12

        planted = age(rig.plant("1", 4, with_records(first.read_bytes(), far_ahead)))
        before_2010 = age(
            rig.plant("1", 6, with_records(first.read_bytes(), lambda r: r["ts"].__isub__(10**9)), suffix="7")
        )

        cycle = rig.process(api.port)

        assert 0 == cycle.returncode, cycle.stderr
        assert {planted.name: "implausible_time", before_2010.name: "implausible_time"} == moved(cycle)
        assert [] == cycle.events("reports discarded")
        timestamps = [r["json"]["timestamp"] for r in api.accepted()]
        assert 3 == len(timestamps)
        assert all(EARLIEST_TS < ts < time.time() for ts in timestamps)


class TestFilesThatCannotBeRead:
    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            # H2: the 1 MiB cap holds for a file whose size alone would exhaust memory.
            (lambda path: subprocess.run(["truncate", "-s", "5G", str(path)], check=True), "too_large"),
            # A FIFO is judged on lstat and never opened: an open would wait for a writer for ever.
            (os.mkfifo, "not_regular_file"),
        ],
        ids=["sparse-5-gib", "fifo"],
    )
    def test_a_file_that_must_not_be_read_is_moved_without_being_read(self, rig, api, make, reason):
        planted = rig.installation("1") / rig.reports("1")[2].replace(".json", "5.json")
        make(planted)
        age(planted)

        cycle = rig.process(api.port, timeout_s=60)

        assert 0 == cycle.returncode, cycle.stderr
        assert {planted.name: reason} == moved(cycle)
        assert 3 == len(api.accepted())
        assert cycle.max_rss_kib < 512 * 1024

    def test_a_report_linking_outside_the_tree_is_moved_and_its_target_kept(self, rig, api):
        link = rig.installation("1") / rig.reports("1")[2].replace(".json", "5.json")
        link.symlink_to(rig.outside / "secret.json")
        age(link)

        cycle = rig.process(api.port)

        assert {link.name: "symlink"} == moved(cycle)
        assert (rig.installation("1") / "invalid-reports" / link.name).is_symlink()
        assert 3 == len(api.accepted())
        rig.assert_outside_untouched()


def test_the_simulated_reports_are_plausible(template):
    """The cases above start from a tree every report of which is usable."""
    for user, installation in INSTALLATIONS:
        for path in (template / user / installation).glob("*.json"):
            ts = decode_records(base64.b64decode(json.loads(path.read_bytes())["message"]))["ts"]
            assert EARLIEST_TS <= int(np.min(ts)) and int(np.max(ts)) <= path.stat().st_mtime + 86_400
