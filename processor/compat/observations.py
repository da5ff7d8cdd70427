"""The original's ``Observation`` object and its 45-byte record codec (compat spec §2)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from processor.observations import OBSERVATION_DTYPE, OBSERVATION_FIELDS, Observations
from processor.reports.records import RECORD_SIZE, decode_records

#: The record as the original packed it: ts, type, size, t1…t4, big-endian, no padding.
RECORD_STRUCT = struct.Struct(">qciqqqq")

assert RECORD_STRUCT.size == RECORD_SIZE


class Observation:
    """
    One probe reply as the original represented it.

    ``day_timestamp`` is Unix seconds, ``type_identifier`` the 1-byte type (b'S' or b'L'), ``packet_size`` bytes;
    the four ``*_timestamp_nanos`` are nanoseconds since the local midnight of the clock that took them (t1, t4
    client; t2, t3 server), never converted.
    """

    def __init__(
        self,
        day_timestamp: int,
        type_identifier: bytes,
        packet_size: int,
        initial_timestamp: int,
        reception_timestamp: int,
        sent_timestamp: int,
        final_timestamp: int,
    ) -> None:
        self.day_timestamp = day_timestamp
        self.type_identifier = type_identifier
        self.packet_size = packet_size
        self.initial_timestamp_nanos = initial_timestamp
        self.reception_timestamp_nanos = reception_timestamp
        self.sent_timestamp_nanos = sent_timestamp
        self.final_timestamp_nanos = final_timestamp
        # The original kept per-observation offsets here; the exact analysis keeps φ in its own result instead.
        self.upstream_phi = 0.0
        self.downstream_phi = 0.0
        self.estimated_phi = 0.0

    @property
    def initial_timestamp(self) -> int:
        """t1, client clock, nanoseconds since its local midnight."""
        return self.initial_timestamp_nanos

    @property
    def reception_timestamp(self) -> int:
        """t2, server clock, nanoseconds since its local midnight."""
        return self.reception_timestamp_nanos

    @property
    def sent_timestamp(self) -> int:
        """t3, server clock, nanoseconds since its local midnight."""
        return self.sent_timestamp_nanos

    @property
    def final_timestamp(self) -> int:
        """t4, client clock, nanoseconds since its local midnight."""
        return self.final_timestamp_nanos

    def record(self) -> tuple[int, bytes, int, int, int, int, int]:
        """(ts, type, size, t1, t2, t3, t4): the seven fields of the wire record."""
        return (
            self.day_timestamp,
            self.type_identifier,
            self.packet_size,
            self.initial_timestamp_nanos,
            self.reception_timestamp_nanos,
            self.sent_timestamp_nanos,
            self.final_timestamp_nanos,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(self.record())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(OBSERVATION_FIELDS, self.record(), strict=True))
        return f"Observation({fields})"


def from_array(records: Observations) -> list[Observation]:
    """Observation objects (plain int and bytes) of an array with the observation fields, in array order."""
    return [
        Observation(ts, bytes((kind,)), size, t1, t2, t3, t4)
        for ts, kind, size, t1, t2, t3, t4 in records[list(OBSERVATION_FIELDS)].tolist()
    ]


def to_array(observations: Iterable[Observation]) -> Observations:
    """The observation array (``OBSERVATION_DTYPE``) of Observation objects, in iteration order."""
    rows: list[tuple[Any, ...]] = [(o.day_timestamp, o.type_identifier[0], *o.record()[2:]) for o in observations]
    return np.array(rows, dtype=OBSERVATION_DTYPE)


def serialize_observations(observations: Iterable[Observation]) -> str:
    """
    The ``message`` of a report: the 45-byte records end to end, in standard base64 with padding ('' for none).

    Raises ``struct.error`` for a type that is not one byte or a value out of its field's range.
    """
    packed = b"".join(RECORD_STRUCT.pack(*observation.record()) for observation in observations)
    return base64.b64encode(packed).decode("ascii")


def deserialize_observations(message: str | bytes) -> list[Observation]:
    """
    The observations of a report's ``message`` (str or bytes, standard base64), in record order.

    Raises ``binascii.Error`` for text that is not base64 and ``struct.error`` when the decoded length is not a
    multiple of 45.
    """
    data = base64.b64decode(message, validate=True)
    if len(data) % RECORD_SIZE:
        raise struct.error(f"message of {len(data)} bytes is not a whole number of {RECORD_SIZE}-byte records")
    return from_array(decode_records(data))
