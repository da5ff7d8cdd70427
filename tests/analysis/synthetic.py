"""Synthetic windows for the analysis tests: known clock offset, one-way times chosen per observation."""

from __future__ import annotations

import numpy as np

from processor.observations import observations

#: Start of the synthetic windows, Unix seconds (2017-09-10 00:00:00 UTC).
START_S = 1_505_001_600

#: Client nanoseconds-of-day at START_S (the client clock runs 3 h ahead of UTC midnight).
CLIENT_START_NS = 3 * 3600 * 10**9

#: Server clock minus client clock, nanoseconds.
SERVER_MINUS_CLIENT_NS = -2_000_000_000


def window(up_ns: np.ndarray, down_ns: np.ndarray, ts_s: np.ndarray | None = None, *, server_ns: int = 0):
    """
    Observations, one per ts, whose true one-way times are ``up_ns`` and ``down_ns`` (integers, nanoseconds).

    ts defaults to one observation per second from START_S. The server spends 40 µs between t2 and t3.
    ``server_ns`` shifts the server clock (to place it near midnight, for instance).
    """
    up = np.asarray(up_ns, dtype=np.int64)
    down = np.asarray(down_ns, dtype=np.int64)
    ts = START_S + np.arange(up.size, dtype=np.int64) if ts_s is None else np.asarray(ts_s, dtype=np.int64)
    t1 = CLIENT_START_NS + (ts - START_S) * 10**9 + 123_456
    t2 = t1 + SERVER_MINUS_CLIENT_NS + up + server_ns
    t3 = t2 + 40_000
    t4 = t3 - SERVER_MINUS_CLIENT_NS - server_ns + down
    return observations(ts, t1, t2, t3, t4)


def queueing_times(rng: np.random.Generator, n: int, base_ns: int = 5_000_000, scale_ns: float = 4e5) -> np.ndarray:
    """A base propagation time plus exponential queueing, integer nanoseconds."""
    return base_ns + rng.exponential(scale_ns, n).astype(np.int64)
