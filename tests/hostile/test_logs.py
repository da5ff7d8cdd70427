"""
H6 through a real cycle: file and directory names that try to forge log lines stay one logfmt value each.

Whoever may write into the reports tree chooses the names the processor logs. Names below carry a newline, a
carriage return, an escape character, quotes, spaces and ``=``: every line the cycle writes on standard error must
still be one event that a strict logfmt parser reads, with the hostile name intact as one field value.
"""

from __future__ import annotations

import json

from tests.hostile.rig import age

#: What an attacker would like to see as a line of its own in the operator's log.
FORGED = '\n2031-01-01 00:00:00,000 ERROR processor: lock lost user=9 installation=9 \r\x1b[2J "quoted" a=b'


def test_hostile_names_give_one_parseable_line_per_event(rig, api):
    hostile_user = rig.base / f"1{FORGED}"
    hostile_user.mkdir()
    (rig.base / "2" / f"2 x={FORGED}").mkdir()
    not_json = age(rig.plant("1", 2, b"{not json", suffix=f"{FORGED}"))
    directory = rig.installation("3")
    first = directory / rig.reports("3")[0]
    window_start = directory / first.name.replace(".json", f"{FORGED}.json")
    first.rename(window_start)
    report = json.loads(window_start.read_bytes())
    report["from"] = "198.51.100.7:4501"  # another IP: the next report's change of IP discards this one
    other_ip = directory / first.name.replace(".json", f"{FORGED} other ip.json")
    other_ip.write_bytes(json.dumps(report).encode())
    age(other_ip)

    cycle = rig.process(api.port)
    log = cycle.log()  # fails on any line that is not one logfmt event

    assert 0 == cycle.returncode, cycle.stderr
    skipped = {line.fields.get("installation", line.fields.get("user")) for line in log if "skipping" in line.event}
    assert {f"1{FORGED}", f"2 x={FORGED}"} <= skipped
    assert [not_json.name] == [line.fields["name"] for line in cycle.events("unusable report moved")]
    assert [other_ip.name] == [line.fields["names"] for line in cycle.events("reports discarded")]
    assert window_start.name in {line.fields.get("first") for line in log}
    assert not any(line.fields.get("user") == "9" for line in log)  # no forged event got through
    assert 3 == len(api.accepted())
    rig.assert_outside_untouched()
