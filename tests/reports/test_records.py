"""Tests of processor.reports.records: the wire record and the window's observation array."""

import base64
import struct

import numpy as np

from processor.observations import OBSERVATION_DTYPE, observations
from processor.reports.records import (
    WIRE_DTYPE,
    decode_records,
    encode_records,
    window_observations,
)

#: The example record of reports spec §3 and its base64 text.
EXAMPLE = (1_700_000_000, b"S", 32, 79_999_950_000_000, 79_997_968_000_000, 79_997_968_004_000, 79_999_986_004_000)
EXAMPLE_BASE64 = "AAAAAGVT8QBTAAAAIAAASMJwmg+AAABIwfp3JAAAAEjB+nczoAAASMJyv3Ag"


def test_decodes_the_spec_example_record():
    record = decode_records(base64.b64decode(EXAMPLE_BASE64))

    assert 1 == record.size
    assert (1_700_000_000, ord("S"), 32, *EXAMPLE[3:]) == tuple(int(v) for v in record[0].tolist())


def test_encoding_is_the_struct_layout_of_the_original():
    array = observations([EXAMPLE[0]], [EXAMPLE[3]], [EXAMPLE[4]], [EXAMPLE[5]], [EXAMPLE[6]])

    assert struct.pack(">qciqqqq", *EXAMPLE) == encode_records(array)


def test_window_observations_removes_duplicates_and_sorts_chronologically():
    """D1: identical records count once; order is (ts, t1, t2, t3, t4, type, size)."""
    a = observations([10, 5, 10], [300, 100, 200], [1, 1, 1], [2, 2, 2], [3, 3, 3])
    b = observations([10, 5], [300, 100], [1, 1], [2, 2], [3, 3])
    long_copy = observations([5], [100], [1], [2], [3], type_byte=ord("L"))

    merged = window_observations([a.astype(WIRE_DTYPE), b, long_copy])

    assert OBSERVATION_DTYPE == merged.dtype
    assert [5, 5, 10, 10] == merged["ts"].tolist()
    assert [100, 100, 200, 300] == merged["t1"].tolist()
    assert [ord("L"), ord("S"), ord("S"), ord("S")] == merged["type"].tolist()


def test_size_breaks_the_last_ties_as_a_signed_integer():
    a = observations([1, 1], [7, 7], [1, 1], [2, 2], [3, 3])
    a["size"] = [5, -5]

    assert [-5, 5] == window_observations([a])["size"].tolist()


def test_no_parts_give_an_empty_window():
    assert 0 == window_observations([]).size


def test_empty_parts_give_an_empty_window():
    merged = window_observations([np.empty(0, dtype=WIRE_DTYPE), np.empty(0, dtype=OBSERVATION_DTYPE)])

    assert (0, OBSERVATION_DTYPE) == (merged.size, merged.dtype)


def test_records_equal_but_for_one_timestamp_are_kept_apart():
    rng = np.random.default_rng(3)
    base = observations(np.full(50, 100), rng.integers(0, 1000, 50), np.zeros(50), np.zeros(50), np.zeros(50))

    merged = window_observations([base, base])

    assert len(set(base["t1"].tolist())) == merged.size


def _reference_merge(parts):
    """D1 the slow and obvious way: the set of record tuples, sorted by (ts, t1, t2, t3, t4, type, size)."""
    records = {tuple(int(v) for v in record.tolist()) for part in parts for record in part.astype(OBSERVATION_DTYPE)}
    return sorted(records, key=lambda r: (r[0], r[3], r[4], r[5], r[6], r[1], r[2]))


def test_ordered_reports_without_overlap_come_out_unchanged_and_others_are_sorted():
    rng = np.random.default_rng(11)
    ts = 1_700_000_000 + np.arange(300)
    t1 = rng.integers(0, 10**12, 300)
    ordered = observations(ts, t1, t1 + 1, t1 + 2, t1 + 3)
    parts_in_order = [ordered[:100].astype(WIRE_DTYPE), ordered[100:]]
    same_second = observations(np.full(4, 7), [4, 3, 3, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0])
    cases = {
        "in order": parts_in_order,
        "overlapping": [ordered[:150], ordered[100:]],
        "reversed files": [ordered[150:], ordered[:150]],
        "ties in ts": [same_second],
        "one record": [ordered[:1]],
    }
    for case, parts in cases.items():
        merged = window_observations(parts)
        assert _reference_merge(parts) == [tuple(int(v) for v in r.tolist()) for r in merged], case
    assert ordered.tobytes() == window_observations(parts_in_order).tobytes()
