"""One simulated installation probing once a second, and its records cut into the client's data packets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from processor.observations import Observations, observations
from processor_tools.simulate.model import (
    DEFAULT_START_S,
    MAX_SERVER_RECORDS,
    PACKET_INTERVAL_WEIGHTS,
    PACKET_INTERVALS_S,
    BoolArray,
    Direction,
    FloatArray,
    GroundTruth,
    InstallationProfile,
    IntArray,
    QueueLevel,
    QueueSegment,
    ScheduleMode,
    draw_profile,
)


def _runs(rng: np.random.Generator, n: int, level: QueueLevel) -> tuple[BoolArray, IntArray]:
    """Busy flags of ``n`` seconds from the two-state chain of ``level``, and the id of each second's run."""
    rho = level.busy_share
    if n <= 0 or rho <= 0.0:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    if rho >= 1.0:  # a standing queue: one busy run over the whole segment
        return np.ones(n, dtype=bool), np.ones(n, dtype=np.int64)
    p_end_busy = 1.0 / max(level.burst_s, 1.0)
    p_start_busy = min(1.0, rho * p_end_busy / (1.0 - rho))
    mean_pair = 1.0 / p_end_busy + 1.0 / p_start_busy
    # Start inside a busy run with probability ρ (the chain's stationary state): then drop the first idle run.
    first_busy = bool(rng.random() < rho)
    lengths: list[IntArray] = []
    total = 0
    while total < n:
        pairs = int(n / mean_pair) + 4
        drawn = np.empty(2 * pairs, dtype=np.int64)
        drawn[0::2] = rng.geometric(p_start_busy, pairs)  # idle run
        drawn[1::2] = rng.geometric(p_end_busy, pairs)  # busy run
        if first_busy and not lengths:
            drawn[0] = 0
        lengths.append(drawn)
        total += int(drawn.sum())
    run_lengths = np.concatenate(lengths)
    run_id = np.repeat(np.arange(run_lengths.size), run_lengths)[:n]
    busy = run_id % 2 == 1
    return busy, run_id


def _queueing(
    rng: np.random.Generator, schedule: Sequence[QueueSegment], n: int, direction: Direction
) -> tuple[FloatArray, FloatArray]:
    """Queueing delay of each of ``n`` seconds in ``direction`` (ns), and each second's extra loss probability."""
    delay = np.zeros(n, dtype=np.float64)
    extra_loss = np.zeros(n, dtype=np.float64)
    for segment in schedule:
        first = min(n, max(0, math.ceil(segment.start_s)))
        stop = min(n, max(0, math.ceil(segment.end_s)))
        if stop <= first:
            continue
        level = segment.up if direction == "up" else segment.down
        busy, run_id = _runs(rng, stop - first, level)
        extra_loss[first:stop] = level.extra_loss
        if not busy.any():
            continue
        run_levels = rng.gamma(2.0, level.mean_delay_ns / 2.0, int(run_id[-1]) + 1)
        modulation = rng.lognormal(0.0, 0.3, stop - first)
        delay[first:stop] = np.where(busy, run_levels[run_id] * modulation, 0.0)
    return delay, extra_loss


def _losses(rng: np.random.Generator, profile: InstallationProfile, extra: FloatArray) -> BoolArray:
    n = extra.size
    lost = rng.random(n) < profile.loss_rate + extra
    starts = np.flatnonzero(rng.random(n) < profile.loss_burst_rate_per_s)
    if starts.size:
        lengths = rng.geometric(1.0 / profile.loss_burst_mean_s, starts.size)
        edges = np.zeros(n + 1, dtype=np.int64)
        np.add.at(edges, starts, 1)
        np.add.at(edges, np.minimum(starts + lengths, n), -1)
        lost |= np.cumsum(edges[:n]) > 0
    return lost


def simulate_installation(
    rng: np.random.Generator,
    *,
    start_s: int = DEFAULT_START_S,
    minutes: float,
    profile: InstallationProfile | None = None,
    schedule: ScheduleMode = "mixed",
    offline: bool = False,
) -> tuple[Observations, GroundTruth]:
    """
    Simulate one installation probing once a second for ``minutes`` from true Unix time ``start_s``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    start_s : int
        True Unix time of the first probe, seconds.
    minutes : float
        Length of the run, minutes; ``round(60 · minutes)`` probes are sent (fewer when off-line).
    profile : InstallationProfile, optional
        The installation's parameters; drawn by :func:`draw_profile` with ``schedule`` and ``offline`` if omitted.

    Returns
    -------
    observations : ndarray of OBSERVATION_DTYPE
        One ``'S'`` record of size 32 per received reply, in the order the client received them; t1..t4 are raw
        nanoseconds of local day (they wrap at each clock's local midnight), ``ts`` the client's Unix second.
    truth : GroundTruth
        The true delays, queueing, losses and clock offsets behind the records.
    """
    if minutes <= 0:
        raise ValueError(f"`minutes` must be positive, got {minutes!r}")
    if profile is None:
        profile = draw_profile(rng, minutes=minutes, schedule=schedule, offline=offline)
    n = round(minutes * 60.0)
    start_ns = int(start_s) * 10**9
    client, server = profile.client, profile.server

    # The client ticks once per second of its own clock, a little late each time.
    tick = np.arange(n, dtype=np.float64) * 1e9 + rng.exponential(profile.timer_jitter_ns, n)
    send = tick / (1.0 + client.skew_ppm * 1e-6)

    queue_up, loss_up = _queueing(rng, profile.schedule, n, "up")
    queue_down, loss_down = _queueing(rng, profile.schedule, n, "down")
    up = profile.base_up_ns + rng.exponential(profile.jitter_up_ns, n) + queue_up
    down = profile.base_down_ns + rng.exponential(profile.jitter_down_ns, n) + queue_down
    processing = rng.exponential(profile.server_processing_ns, n)

    offline_mask = np.zeros(n, dtype=bool)
    if profile.offline is not None:
        seconds = np.arange(n)
        offline_mask = (seconds >= profile.offline[0]) & (seconds < profile.offline[1])
    lost = _losses(rng, profile, np.maximum(loss_up, loss_down)) | offline_mask

    received = np.flatnonzero(~lost)
    arrive = send[received] + up[received] + processing[received] + down[received]
    received = received[np.argsort(arrive, kind="stable")]  # the client records replies as they come
    send_r = send[received]
    t2_rel = send_r + up[received]
    t3_rel = t2_rel + processing[received]
    t4_rel = t3_rel + down[received]

    client_t1 = client.reading_ns(start_ns, send_r)
    client_t4 = client.reading_ns(start_ns, t4_rel)
    records = observations(
        ts=client_t4 // 10**9,
        t1=client.ns_of_day(client_t1),
        t2=server.ns_of_day(server.reading_ns(start_ns, t2_rel)),
        t3=server.ns_of_day(server.reading_ns(start_ns, t3_rel)),
        t4=client.ns_of_day(client_t4),
    )
    truth = GroundTruth(
        profile=profile,
        start_ns=start_ns,
        send_rel_ns=send,
        up_ns=up,
        down_ns=down,
        queue_up_ns=queue_up,
        queue_down_ns=queue_down,
        lost=lost,
        offline=offline_mask,
        probe_index=received.astype(np.int64),
    )
    return records, truth


# --------------------------------------------------------------------------------------------------------------
# Reports and the tree
# --------------------------------------------------------------------------------------------------------------


def split_into_reports(
    observations: Observations, rng: np.random.Generator, *, max_records: int = MAX_SERVER_RECORDS
) -> list[Observations]:
    """
    Cut an installation's records into the data packets the client would send, one condenser report each.

    A packet goes out every 61-65 client seconds (:data:`PACKET_INTERVALS_S`) with the records whose ts fell since
    the previous one, at most ``max_records`` (the excess waits for the next packet). Intervals without a record
    send nothing. A cut never separates two records of the same ts, so the reports' first ts — their names — are
    strictly increasing and unique. The parts are views of ``observations`` in its order.
    """
    records = np.asarray(observations)
    ts = records["ts"]
    n = ts.size
    parts: list[Observations] = []
    if n == 0:
        return parts
    # Packet times of the client, in its seconds: enough of them to pass the last record.
    count = int(ts[-1] - ts[0]) // min(PACKET_INTERVALS_S) + 2
    intervals = rng.choice(np.asarray(PACKET_INTERVALS_S), size=count, p=PACKET_INTERVAL_WEIGHTS)
    packet_ts = (int(ts[0]) + np.cumsum(intervals)).tolist()
    # Where each packet time falls among the records: a packet takes the records before its time.
    packet_cuts = np.searchsorted(ts, packet_ts, side="left").tolist()
    same_as_previous = np.zeros(n + 1, dtype=bool)
    same_as_previous[1:n] = ts[1:] == ts[:-1]
    start = 0
    packet = 0
    while start < n:
        while packet_cuts[packet] <= start:
            packet += 1
        end = min(packet_cuts[packet], start + max_records)
        if same_as_previous[end]:
            # Keep equal seconds together: cut before them, or after them if they fill the whole packet.
            cut = int(np.searchsorted(ts, ts[end], side="left"))
            end = cut if cut > start else int(np.searchsorted(ts, ts[end], side="right"))
        parts.append(records[start:end])
        start = end
    return parts
