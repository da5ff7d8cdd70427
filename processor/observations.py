"""The observation array that reports produce and the analysis consumes: one structured record per probe reply."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: The same fields in native byte order: what the analysis works on.
#: ``ts`` is Unix seconds; ``t1``..``t4`` are nanoseconds since the local midnight of the clock that took them.
OBSERVATION_DTYPE = np.dtype(
    [("ts", "i8"), ("type", "u1"), ("size", "i4"), ("t1", "i8"), ("t2", "i8"), ("t3", "i8"), ("t4", "i8")]
)

#: The seven field names, in record order.
OBSERVATION_FIELDS: tuple[str, ...] = ("ts", "type", "size", "t1", "t2", "t3", "t4")

#: Type byte of a reply to a short probe, the only records the analysis uses.
SHORT = ord("S")
#: Type byte of a reply to a long probe (kept, never analysed).
LONG = ord("L")

Observations = NDArray[np.void]


def observations(
    ts: Sequence[int] | NDArray[np.int64],
    t1: Sequence[int] | NDArray[np.int64],
    t2: Sequence[int] | NDArray[np.int64],
    t3: Sequence[int] | NDArray[np.int64],
    t4: Sequence[int] | NDArray[np.int64],
    *,
    type_byte: int = SHORT,
    size: int = 32,
) -> Observations:
    """Build an observation array from columns (tests, the generator and the legacy text-log reader use it)."""
    result = np.empty(len(ts), dtype=OBSERVATION_DTYPE)
    result["ts"] = ts
    result["type"] = type_byte
    result["size"] = size
    result["t1"] = t1
    result["t2"] = t2
    result["t3"] = t3
    result["t4"] = t4
    return result
