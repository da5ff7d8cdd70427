"""End to end: unusable report files and a non-decimal user directory in the tree (reliability.md F13, I6)."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path

import pytest

from processor_tools.simulate import simulate_tree
from tests.service.harness import assert_accepted, log_lines, report, wait_until

pytestmark = pytest.mark.service

#: Modification time of the injected files: an hour ago, well past the 60 s young-file limit.
OLD_S = time.time() - 3600

_MOVED = re.compile(r"unusable report moved user=(\d+) installation=(\d+) name=(\S+) reason=(\w+) moved_to=(\S+)")


def mutated(valid: Path, **changes) -> bytes:
    document = json.loads(valid.read_bytes())
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document).encode()


def inject_bad_files(directory: Path, outside: Path) -> dict[str, str]:
    """
    One old unusable candidate of every reason of reports.md §5.1, each named to sort between two real reports.

    Returns name → expected reason code.
    """
    valid = sorted(directory.glob("tix-report-*.json"))
    contents: dict[str, bytes | None] = {
        "symlink": None,
        "not_regular_file": None,
        "too_large": b'{"from": "' + b"x" * (1 << 20) + b'"}',
        "empty": b"",
        "not_json": b"this is not json {",
        "schema": mutated(valid[0], type="SHORT"),
        "bad_address": mutated(valid[0], **{"from": "[2001:db8::1:4501"}),
        "bad_base64": mutated(valid[0], message="not*base64=="),
        "bad_record_length": mutated(valid[0], message=base64.b64encode(bytes(44)).decode()),
        "no_records": mutated(valid[0], message=""),
    }
    names: dict[str, str] = {}
    for position, (reason, content) in enumerate(contents.items()):
        neighbour = valid[2 + (3 * position) % (len(valid) - 3)]
        path = directory / f"tix-report-{int(neighbour.stem.rsplit('-', 1)[1]) + 1}.json"
        if reason == "symlink":
            outside.write_bytes(valid[1].read_bytes())
            path.symlink_to(outside)
        elif reason == "not_regular_file":
            path.mkdir()
        else:
            path.write_bytes(content)
        os.utime(path, (OLD_S, OLD_S), follow_symlinks=False)
        names[path.name] = reason
    return names


def test_every_kind_of_unusable_file_is_moved_aside_and_the_windows_stay_those_of_the_dry_run(rig):
    simulate_tree(rig.base, installations=3, minutes=40, seed=3106)
    expected = rig.expectations()  # before the bad files: the dry run of reliability.md §3 leaves them out
    total = sum(len(e.analysable) for e in expected.values())
    keys = sorted(expected)
    bad: dict[str, dict[str, str]] = {}
    for index, key in enumerate(keys[:2]):
        bad[key] = inject_bad_files(rig.base / key, rig.work / f"outside-{index}.json")
    stray = rig.base / "abc" / "1"
    stray.mkdir(parents=True)
    stray_report = stray / next((rig.base / keys[0]).glob("tix-report-*.json")).name
    stray_report.write_bytes(next((rig.base / keys[0]).glob("tix-report-*.json")).read_bytes())
    rig.start_worker("w1")

    rig.broker.fan_out(rig.base)
    wait_until(lambda: len(rig.api.accepted()) >= total, timeout_s=90, what=lambda: f"{total} posts")
    rig.drain()
    result = rig.tally(expected)
    report(result, "unusable files")
    moved = [_MOVED.search(line).groups() for line in log_lines(rig.workers, "unusable report moved")]

    assert_accepted(result, invalid_reports=sum(len(names) for names in bad.values()))
    assert total == result.total["posted"]
    for key, names in bad.items():
        user_id, installation_id = key.split("/")
        logged = {name: reason for u, i, name, reason, _ in moved if (u, i) == (user_id, installation_id)}
        assert names == logged
        invalid = rig.base / key / "invalid-reports"
        assert sorted(names) == sorted(entry.name for entry in invalid.iterdir())
        assert (invalid / next(n for n, r in names.items() if r == "symlink")).is_symlink()
        assert (invalid / next(n for n, r in names.items() if r == "not_regular_file")).is_dir()
        state = json.loads((rig.base / key / ".tix-processor-state").read_text(encoding="utf-8"))
        assert len(names) == state["counters"]["invalid_reports"]
    assert stray_report.exists()
    assert log_lines(rig.workers, "skipping entry not named by a decimal id user=abc")
    assert 0 == rig.activity().failures
    assert [] == [line for line in log_lines(rig.workers, "ERROR/") if "processor" in line or "Task" in line]
