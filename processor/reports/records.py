"""The 45-byte observation record on the wire and the merge of a window's reports (reports spec §3, windows spec §4)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from processor.observations import OBSERVATION_DTYPE, OBSERVATION_FIELDS, Observations

#: Size of one observation record on the wire, in bytes (struct format ``>qciqqqq``).
RECORD_SIZE = 45

#: The record exactly as it is on the wire: big-endian, no padding.
WIRE_DTYPE = np.dtype(
    [("ts", ">i8"), ("type", "u1"), ("size", ">i4"), ("t1", ">i8"), ("t2", ">i8"), ("t3", ">i8"), ("t4", ">i8")]
)

assert WIRE_DTYPE.itemsize == RECORD_SIZE
assert OBSERVATION_DTYPE.names == WIRE_DTYPE.names == OBSERVATION_FIELDS


def decode_records(message: bytes) -> Observations:
    """View the decoded ``message`` bytes as wire records, without copying (length must be a multiple of 45)."""
    return np.frombuffer(message, dtype=WIRE_DTYPE)


def encode_records(observations: Observations) -> bytes:
    """Return the wire bytes of ``observations`` (any array with the observation fields)."""
    return np.asarray(observations).astype(WIRE_DTYPE).tobytes()


#: The fields in the order of the chronological sort of :func:`window_observations`.
_SORT_KEYS = ("ts", "t1", "t2", "t3", "t4", "type", "size")


def _after_previous(records: Observations) -> NDArray[np.bool_]:
    """For each record but the first: whether it sorts strictly after the one before it by :data:`_SORT_KEYS`."""
    later = np.zeros(max(records.size - 1, 0), dtype=bool)
    tied = ~later
    for field in _SORT_KEYS:
        column = records[field]
        later |= tied & (column[1:] > column[:-1])
        tied &= column[1:] == column[:-1]
        if not tied.any():  # every pair is decided
            break
    return later


def window_observations(parts: Sequence[Observations]) -> Observations:
    """
    Merge the records of a window's reports into the window's observations.

    Identical records (all seven fields equal) count once, and the result is sorted by
    (ts, t1, t2, t3, t4, type, size), with type compared as an unsigned byte and size as a signed
    32-bit integer: the chronological order of change D1 (the original iterated a set in hash order).
    """
    if not parts:
        return np.empty(0, dtype=OBSERVATION_DTYPE)
    merged = np.concatenate(parts, dtype=OBSERVATION_DTYPE, casting="equiv")  # byte order only
    merged = merged[np.lexsort([merged[field] for field in reversed(_SORT_KEYS)])]
    # Sorted, a record that does not come strictly after the one before it is equal to it: a duplicate.
    kept = np.ones(merged.size, dtype=bool)
    kept[1:] = _after_previous(merged)
    return merged[kept]
