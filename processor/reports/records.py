"""The 45-byte observation record on the wire and the merge of a window's reports (reports spec §3, windows spec §4)."""

from __future__ import annotations

import sys
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


def _native_concatenation(parts: Sequence[Observations]) -> Observations:
    """The records of ``parts`` one after the other, in :data:`OBSERVATION_DTYPE` (a new, writable array)."""
    if sys.byteorder == "little" and all(part.dtype == WIRE_DTYPE and part.flags.c_contiguous for part in parts):
        # The reports as decoded: the two dtypes have the same packed layout, so joining the bytes and swapping
        # each field's bytes in place is the conversion. A structured concatenate with a cast costs five times
        # more (one cast per field and part).
        merged = np.frombuffer(bytearray(b"".join([part.data for part in parts])), dtype=WIRE_DTYPE)
        return merged.byteswap(inplace=True).view(OBSERVATION_DTYPE)
    return np.concatenate(parts, dtype=OBSERVATION_DTYPE, casting="equiv")  # byte order only


def window_observations(parts: Sequence[Observations]) -> Observations:
    """
    Merge the records of a window's reports into the window's observations.

    Identical records (all seven fields equal) count once, and the result is sorted by
    (ts, t1, t2, t3, t4, type, size), with type compared as an unsigned byte and size as a signed
    32-bit integer: the chronological order of change D1 (the original iterated a set in hash order).
    """
    if not parts:
        return np.empty(0, dtype=OBSERVATION_DTYPE)
    merged = _native_concatenation(parts)
    ts = merged["ts"]
    if (ts[1:] > ts[:-1]).all() or _after_previous(merged).all():
        # The usual window: reports in time order without overlap, so the sort and the merge change nothing.
        # Seconds alone decide most windows (one probe a second); only ties need the other fields.
        return merged
    merged = merged[np.lexsort([merged[field] for field in reversed(_SORT_KEYS)])]
    # Sorted, a record that does not come strictly after the one before it is equal to it: a duplicate.
    return merged[np.concatenate(([True], _after_previous(merged)))]
