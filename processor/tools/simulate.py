"""
Synthetic condenser trees with a known truth: clocks, one-way delays, queueing and loss of simulated clients.

The generator plays the TiX client (one short probe a second, one data packet every 61-65 s) and the condenser
(one ``tix-report-<first ts>.json`` per packet, reports spec §1.1 and §2) for many installations at once. Every
random choice comes from a ``numpy.random.Generator`` derived from the seed, so a seed gives a byte-identical tree.

Model of one installation (all times in nanoseconds unless the name says otherwise):

* **True time** runs from ``start_s``. Probe i leaves when the client's clock reads ``i`` seconds past its first
  tick (plus a timer jitter), so the probes are one *client* second apart.
* **Clocks.** Each clock domain (client, server) reads ``true + offset + skew·(true − start)``, truncated to its
  resolution (1 ns, or 1 ms for older clients). Its nanoseconds-of-day are taken as the reports spec §3.1 says:
  reading minus the UTC epoch of 00:00 of the host's *local* date (``utc_offset_s`` east of UTC), so a UTC−3 client
  runs from 3 h to 27 h and every clock wraps by one day at its own local midnight. A clock with ``local_midnight``
  counts from local midnight in local time instead (0 to 24 h: what the real 2017 client data look like), which
  adds the time-zone offset to the apparent client-server offset — the "hours" of real data.
* **One-way delays** = base (RTT 10-300 ms split asymmetrically) + path jitter (exponential, sub-millisecond) +
  queueing delay. Queueing follows a per-installation schedule of segments (idle / moderate / saturated) per
  direction; inside a segment a two-state Markov chain of seconds (busy share ρ, mean busy run ``burst_s``) decides
  which probes queue, and each busy run draws its own queue level (gamma) modulated per second (log-normal).
* **Loss**: independent losses (1-3 %), loss bursts (geometric lengths), extra loss while saturated, and optionally
  one off-line interval longer than the 300 s gap threshold.
* ``ts`` of a record is the client's wall-clock second when it handled the reply (reports spec §3).

The truth of each installation comes back as a :class:`GroundTruth`; the tree writer can keep it too.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from processor.observations import Observations, observations
from processor.reports.files import write_report

#: One day of nanoseconds: the size of the midnight wrap.
DAY_NS = 86_400 * 10**9

#: Default start of a simulated run, Unix seconds (2023-11-14 22:13:20 UTC): fixed so a seed gives one tree.
DEFAULT_START_S = 1_700_000_000

#: Most records a condenser report holds (one data packet's capacity, reports spec §3.1).
MAX_SERVER_RECORDS = 63

#: Client ticks between two data packets: 61 most of the time, up to 65 after retransmissions (neighbours §4).
PACKET_INTERVALS_S = (61, 62, 63, 64, 65)
#: Probabilities of :data:`PACKET_INTERVALS_S` (real tree 23/41: 74 % of the name steps are 61 s).
PACKET_INTERVAL_WEIGHTS = (0.74, 0.08, 0.07, 0.06, 0.05)

#: Queueing delay that counts a probe as queued in :meth:`GroundTruth.queued_share` (usage-queueing margin).
QUEUED_MARGIN_NS = 3_000_000

#: First octets of the "public" client addresses (LACNIC blocks, where TiX clients lived). A prefix table for
#: the IP-to-AS resolver in tests can cover these; documentation and private addresses resolve to null.
PUBLIC_FIRST_OCTETS = (181, 186, 190, 200, 201)
#: The three documentation networks of RFC 5737 (reserved: the resolver gives no AS for them).
DOCUMENTATION_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
#: Private networks (RFC 1918): a client behind a NAT that the server saw unmapped.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")

AddressKind = Literal["public", "documentation", "private"]
LevelName = Literal["idle", "moderate", "saturated"]
ScheduleMode = Literal["mixed", "idle", "moderate", "saturated"]
Direction = Literal["up", "down"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# --------------------------------------------------------------------------------------------------------------
# Model parameters
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueLevel:
    """Queueing regime of one direction during one schedule segment."""

    name: LevelName
    busy_share: float  #: ρ, stationary share of seconds in which probes queue, in [0, 1)
    mean_delay_ns: float  #: mean queue level of a busy run, nanoseconds
    burst_s: float  #: mean length of a busy run, seconds
    extra_loss: float  #: loss probability added to every probe of the segment, dimensionless


@dataclass(frozen=True, slots=True)
class QueueSegment:
    """One step of the induced-queueing schedule, ``[start_s, end_s)`` in seconds of true time after the start."""

    start_s: float
    end_s: float
    down: QueueLevel
    up: QueueLevel


@dataclass(frozen=True, slots=True)
class ClockModel:
    """One clock domain: its error against true time, its resolution and how it counts nanoseconds of day."""

    offset_ns: float  #: reading minus true time at the start of the run, nanoseconds
    skew_ppm: float  #: rate error, parts per million (tens of ppm for a PC clock)
    utc_offset_s: int  #: local time zone, seconds east of UTC (−10800 for UTC−3)
    resolution_ns: int = 1  #: 1, or 1_000_000 for the millisecond clocks of older clients
    local_midnight: bool = False  #: count from local midnight in local time (0-24 h) instead of reports §3.1

    def reading_ns(self, start_ns: int, rel_ns: FloatArray) -> IntArray:
        """Epoch reading (Unix nanoseconds) of this clock at true times ``start_ns + rel_ns``, truncated."""
        error = self.offset_ns + self.skew_ppm * 1e-6 * rel_ns
        reading = start_ns + np.rint(rel_ns + error).astype(np.int64)
        if self.resolution_ns > 1:
            reading -= reading % self.resolution_ns
        return reading

    def ns_of_day(self, reading_ns: IntArray) -> IntArray:
        """Nanoseconds of day as the client library computes them (reports spec §3.1); wraps at local midnight."""
        local = reading_ns + self.utc_offset_s * 10**9
        midnight = (local // DAY_NS) * DAY_NS
        return (local if self.local_midnight else reading_ns) - midnight

    @property
    def day_shift_ns(self) -> int:
        """Constant the ns-of-day count adds to the epoch reading (modulo a day): the zone offset or 0."""
        return self.utc_offset_s * 10**9 if self.local_midnight else 0


@dataclass(frozen=True, slots=True)
class InstallationProfile:
    """Every parameter of one simulated installation; :func:`draw_profile` draws a realistic one."""

    base_up_ns: float  #: propagation + transmission time client → server, nanoseconds
    base_down_ns: float  #: server → client, nanoseconds
    jitter_up_ns: float  #: mean of the exponential path jitter upstream, nanoseconds
    jitter_down_ns: float
    server_processing_ns: float  #: mean of t3 − t2 (exponential), nanoseconds
    timer_jitter_ns: float  #: mean lateness of the client's one-second probe timer, nanoseconds
    client: ClockModel
    server: ClockModel
    loss_rate: float  #: probability of an independent loss per probe
    loss_burst_rate_per_s: float  #: probability per second that a loss burst starts
    loss_burst_mean_s: float  #: mean length of a loss burst, seconds
    schedule: tuple[QueueSegment, ...]  #: covers the whole run, in order
    offline: tuple[float, float] | None = None  #: client off-line during [a, b) seconds after the start

    @property
    def base_rtt_ns(self) -> float:
        return self.base_up_ns + self.base_down_ns


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """
    What really happened during one simulated run, probe by probe (index i = probe sent in second i).

    Arrays over all probes, lost ones included, in sending order. ``probe_index[k]`` is the probe of record k of the
    returned observations. The clock offset is "client minus server" in the records' own ns-of-day terms (reports
    spec §3: φ > 0 when the client is ahead), so for every record, modulo a day,
    ``t1 − t2 = clock_offset_ns(send) − up`` and ``t4 − t3 = clock_offset_ns(receive) + down`` up to the clock
    resolution.
    """

    profile: InstallationProfile
    start_ns: int  #: true Unix time of probe 0's nominal send, nanoseconds
    send_rel_ns: FloatArray  #: true send time of each probe, nanoseconds after ``start_ns``
    up_ns: FloatArray  #: true one-way time client → server, nanoseconds (base + jitter + queueing)
    down_ns: FloatArray  #: true one-way time server → client, nanoseconds
    queue_up_ns: FloatArray  #: queueing part of ``up_ns``, nanoseconds (0 when the probe met no queue)
    queue_down_ns: FloatArray
    lost: BoolArray  #: probe or reply lost (off-line seconds included)
    offline: BoolArray  #: probe not sent because the client was off-line
    probe_index: IntArray  #: for each observation record, the index of its probe

    @property
    def schedule(self) -> tuple[QueueSegment, ...]:
        return self.profile.schedule

    @property
    def loss_rate(self) -> float:
        """Share of the probes sent (off-line seconds excluded) that left no record, dimensionless."""
        sent = np.count_nonzero(~self.offline)
        return float(np.count_nonzero(self.lost & ~self.offline) / sent) if sent else 0.0

    @property
    def relative_skew_ppm(self) -> float:
        """Rate of the client clock against the server clock, parts per million (drift of the offset)."""
        return self.profile.client.skew_ppm - self.profile.server.skew_ppm

    def clock_offset_ns(self, rel_ns: FloatArray | float) -> FloatArray:
        """
        Client minus server clock at true times ``start_ns + rel_ns``, nanoseconds (meaningful modulo a day).

        Includes the zone offset of a ``local_midnight`` clock, since that offset is in the records.
        """
        rel = np.asarray(rel_ns, dtype=np.float64)
        client, server = self.profile.client, self.profile.server
        return (
            (client.offset_ns - server.offset_ns)
            + (client.skew_ppm - server.skew_ppm) * 1e-6 * rel
            + float(client.day_shift_ns - server.day_shift_ns)
        )

    def queued_share(
        self, direction: Direction, probes: BoolArray | IntArray | None = None, *, margin_ns: float = QUEUED_MARGIN_NS
    ) -> float:
        """
        Share of probes whose queueing delay in ``direction`` exceeds ``margin_ns``: the true usage.

        ``probes`` selects probes (a mask or indices over all probes); by default the received ones.
        """
        queue = self.queue_up_ns if direction == "up" else self.queue_down_ns
        chosen = queue[self.probe_index] if probes is None else queue[probes]
        return float(np.count_nonzero(chosen > margin_ns) / chosen.size) if chosen.size else 0.0


# --------------------------------------------------------------------------------------------------------------
# Drawing a profile
# --------------------------------------------------------------------------------------------------------------


def draw_level(rng: np.random.Generator, name: LevelName) -> QueueLevel:
    """A queueing regime of kind ``name`` with parameters drawn in realistic ranges."""
    if name == "idle":
        return QueueLevel(name, rng.uniform(0.0, 0.04), rng.uniform(2e6, 6e6), rng.uniform(1.0, 3.0), 0.0)
    if name == "moderate":
        return QueueLevel(name, rng.uniform(0.3, 0.6), rng.uniform(8e6, 40e6), rng.uniform(2.0, 8.0), 0.002)
    if name == "saturated":
        return QueueLevel(
            name, rng.uniform(0.85, 0.97), rng.uniform(40e6, 400e6), rng.uniform(10.0, 60.0), rng.uniform(0.01, 0.03)
        )
    raise ValueError(f"unknown queueing level {name!r}")


def draw_schedule(rng: np.random.Generator, minutes: float, mode: ScheduleMode = "mixed") -> tuple[QueueSegment, ...]:
    """
    The induced-queueing schedule of a run of ``minutes``.

    ``mixed``: segments of 3-12 minutes, downstream idle / moderate / saturated (40/35/25 %), upstream usually
    idle and otherwise one level lighter or the same. ``idle``, ``moderate``, ``saturated``: one segment with that
    downstream level and an idle upstream (handy for behavioural tests).
    """
    end_s = minutes * 60.0
    if mode != "mixed":
        return (QueueSegment(0.0, end_s, draw_level(rng, mode), draw_level(rng, "idle")),)
    names: tuple[LevelName, ...] = ("idle", "moderate", "saturated")
    segments = []
    start = 0.0
    while start < end_s:
        stop = min(end_s, start + rng.uniform(3.0, 12.0) * 60.0)
        down: LevelName = names[rng.choice(3, p=(0.40, 0.35, 0.25))]
        up: LevelName = names[max(0, names.index(down) - 1)] if rng.random() < 0.4 else "idle"
        segments.append(QueueSegment(start, stop, draw_level(rng, down), draw_level(rng, up)))
        start = stop
    return tuple(segments)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_profile(
    rng: np.random.Generator,
    *,
    minutes: float,
    schedule: ScheduleMode = "mixed",
    ms_clock: bool | None = None,
    ms_clock_share: float = 0.25,
    offline: bool = False,
    server_utc_offset_s: int = 0,
) -> InstallationProfile:
    """
    Draw a realistic installation.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    minutes : float
        Length of the run, minutes (the schedule and the off-line interval must fit in it).
    schedule : {"mixed", "idle", "moderate", "saturated"}
        Queueing schedule kind (:func:`draw_schedule`).
    ms_clock : bool or None
        Millisecond client clock (older clients); None draws it with probability ``ms_clock_share``.
    offline : bool
        Put one off-line interval of 301-900 s (longer than the 300 s gap threshold) in the middle of the run,
        when the run is long enough to keep at least a minute on each side.
    server_utc_offset_s : int
        Time zone of the server, seconds east of UTC.
    """
    base_rtt = _log_uniform(rng, 10e6, 300e6)
    up_share = rng.uniform(0.3, 0.7)
    if ms_clock is None:
        ms_clock = bool(rng.random() < ms_clock_share)
    # Client zone: mostly Argentina (TiX's users), some others; east of UTC gives negative ns-of-day (§3.1).
    zones_h = (-3, -3, -3, -3, 0, -5, 1, 9)
    client_zone_s = int(zones_h[rng.integers(len(zones_h))]) * 3600
    magnitude = _log_uniform(rng, 1e6, 30e9) if rng.random() < 0.8 else _log_uniform(rng, 30e9, 3600e9)
    client = ClockModel(
        offset_ns=float(magnitude * rng.choice((-1.0, 1.0))),
        skew_ppm=float(np.clip(rng.normal(0.0, 30.0), -100.0, 100.0)),
        utc_offset_s=client_zone_s,
        resolution_ns=1_000_000 if ms_clock else 1,
        local_midnight=bool(client_zone_s != 0 and rng.random() < 0.3),
    )
    server = ClockModel(
        offset_ns=float(rng.normal(0.0, 2e6)),
        skew_ppm=float(rng.normal(0.0, 0.5)),
        utc_offset_s=server_utc_offset_s,
    )
    run_s = minutes * 60.0
    gap = None
    if offline:
        length = rng.uniform(301.0, 900.0)
        if run_s >= length + 120.0:
            first = rng.uniform(60.0, run_s - length - 60.0)
            gap = (float(first), float(first + length))
    return InstallationProfile(
        base_up_ns=base_rtt * up_share,
        base_down_ns=base_rtt * (1.0 - up_share),
        jitter_up_ns=rng.uniform(50e3, 600e3) + 0.002 * base_rtt * up_share,
        jitter_down_ns=rng.uniform(50e3, 600e3) + 0.002 * base_rtt * (1.0 - up_share),
        server_processing_ns=rng.uniform(10e3, 150e3),
        timer_jitter_ns=rng.uniform(50e3, 2e6),
        client=client,
        server=server,
        loss_rate=rng.uniform(0.01, 0.03),
        loss_burst_rate_per_s=rng.uniform(1 / 900, 1 / 200),
        loss_burst_mean_s=rng.uniform(2.0, 8.0),
        schedule=draw_schedule(rng, minutes, schedule),
        offline=gap,
    )


# --------------------------------------------------------------------------------------------------------------
# Simulating one installation
# --------------------------------------------------------------------------------------------------------------


def _runs(rng: np.random.Generator, n: int, level: QueueLevel) -> tuple[BoolArray, IntArray]:
    """Busy flags of ``n`` seconds from the two-state chain of ``level``, and the id of each second's run."""
    rho = level.busy_share
    if n <= 0 or rho <= 0.0:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    p_end_busy = 1.0 / max(level.burst_s, 1.0)
    p_start_busy = min(1.0, rho * p_end_busy / (1.0 - rho)) if rho < 1.0 else 1.0
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


def draw_address(rng: np.random.Generator, kind: AddressKind, *, nat_port_share: float = 0.2) -> str:
    """A ``from`` value ``"a.b.c.d:port"`` of ``kind``; the port is 4501, or a NAT port with ``nat_port_share``."""
    if kind == "public":
        while True:
            octets = (PUBLIC_FIRST_OCTETS[rng.integers(len(PUBLIC_FIRST_OCTETS))], *rng.integers(0, 256, 2))
            address = ipaddress.IPv4Address(".".join(str(int(o)) for o in (*octets, rng.integers(1, 255))))
            if address.is_global:
                break
    else:
        networks = DOCUMENTATION_NETWORKS if kind == "documentation" else PRIVATE_NETWORKS
        network = ipaddress.IPv4Network(networks[rng.integers(len(networks))])
        address = network[int(rng.integers(1, network.num_addresses - 1))]
    port = 4501 if rng.random() >= nat_port_share else int(rng.integers(1024, 65536))
    return f"{address}:{port}"


def _address_kind(rng: np.random.Generator, shares: Sequence[float]) -> AddressKind:
    kinds: tuple[AddressKind, ...] = ("public", "documentation", "private")
    return kinds[int(rng.choice(3, p=np.asarray(shares) / np.sum(shares)))]


@dataclass(frozen=True, slots=True)
class SimulatedInstallation:
    """One installation of a generated tree."""

    user_id: int
    installation_id: int
    directory: Path
    addresses: tuple[str, ...]  #: ``from`` values in use order (two when the IP changed mid-run)
    files: tuple[Path, ...]  #: report files in name order
    observations: int  #: records written
    truth: GroundTruth | None  #: kept when ``simulate_tree(keep_truth=True)``


@dataclass(frozen=True, slots=True)
class TreeSummary:
    """What :func:`simulate_tree` wrote."""

    installations: int
    users: int
    files: int
    observations: int
    seconds: float  #: wall-clock time the generation took, seconds
    detail: tuple[SimulatedInstallation, ...] = field(repr=False, default=())

    def as_dict(self) -> dict[str, int | float]:
        """The one-line summary of the CLI."""
        return {
            "installations": self.installations,
            "users": self.users,
            "files": self.files,
            "observations": self.observations,
            "seconds": round(self.seconds, 3),
        }


def simulate_tree(
    out: Path,
    *,
    installations: int,
    minutes: float,
    seed: int = 0,
    start_s: int | None = None,
    max_installations_per_user: int = 4,
    ip_change_share: float = 0.0,
    gap_share: float = 0.0,
    ms_clock_share: float = 0.25,
    address_shares: tuple[float, float, float] = (0.7, 0.2, 0.1),
    schedule: ScheduleMode = "mixed",
    stagger_s: int = 60,
    keep_truth: bool = False,
) -> TreeSummary:
    """
    Write a condenser tree ``out/<user>/<installation>/tix-report-<first ts>.json`` of simulated installations.

    Parameters
    ----------
    out : Path
        Base directory (created if missing). Existing report files of the same names are overwritten.
    installations : int
        Number of installations; users 1, 2, … own 1 to ``max_installations_per_user`` each, and installation ids
        are 1, 2, … across the tree (as the tix-api database numbers them).
    minutes : float
        Length of every installation's run, minutes.
    seed : int
        Seed of everything: the same arguments give a byte-identical tree.
    start_s : int or None
        True Unix time the runs start, seconds; each installation starts up to ``stagger_s`` seconds later.
        Default :data:`DEFAULT_START_S` (never the current time, so the output is deterministic).
    ip_change_share : float
        Share of installations whose client address changes once, at a report in the middle third of the run
        (exercises the IP rule of windows spec §3). Default 0.
    gap_share : float
        Share of installations with one off-line interval of 301-900 s (exercises the gap rule). Default 0.
    ms_clock_share : float
        Share of installations with a millisecond-resolution client clock (older clients).
    address_shares : (float, float, float)
        Weights of public, documentation (RFC 5737) and private (RFC 1918) client addresses; the IP-to-AS
        resolver finds no AS for the last two.
    schedule : {"mixed", "idle", "moderate", "saturated"}
        Queueing schedule kind of every installation.
    keep_truth : bool
        Keep each installation's :class:`GroundTruth` in the summary's ``detail`` (memory: ~100 KB per
        installation for 25 minutes).

    Every file's modification time is set to the true time its packet was sent (the receipt of its last record),
    or to 61 s before now if that lies later, so the processor never takes a report for one still being written.
    Directories are created with mode 0750 as the condenser does.
    """
    if installations < 1:
        raise ValueError(f"`installations` must be at least 1, got {installations!r}")
    if minutes <= 0:
        raise ValueError(f"`minutes` must be positive, got {minutes!r}")
    began = time.perf_counter()
    start = DEFAULT_START_S if start_s is None else int(start_s)
    layout = np.random.default_rng([seed, 0])
    latest_mtime = time.time() - 61.0
    details: list[SimulatedInstallation] = []
    user_id, left_for_user = 0, 0
    for index in range(installations):
        if left_for_user == 0:
            user_id += 1
            left_for_user = int(layout.integers(1, max_installations_per_user + 1))
        left_for_user -= 1
        installation_id = index + 1
        rng = np.random.default_rng([seed, 1, installation_id])
        profile = draw_profile(
            rng,
            minutes=minutes,
            ms_clock_share=ms_clock_share,
            offline=bool(rng.random() < gap_share),
            schedule=schedule,
        )
        run_start = start + int(rng.integers(0, stagger_s + 1))
        records, truth = simulate_installation(rng, start_s=run_start, minutes=minutes, profile=profile)
        parts = split_into_reports(records, rng)
        addresses = [draw_address(rng, _address_kind(rng, address_shares))]
        change_at = len(parts)
        if rng.random() < ip_change_share and len(parts) >= 3:
            change_at = int(rng.integers(len(parts) // 3, max(len(parts) // 3 + 1, 2 * len(parts) // 3)))
            addresses.append(draw_address(rng, _address_kind(rng, address_shares)))
        directory = out / str(user_id) / str(installation_id)
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        # The condenser writes a packet once its last record is in: true receipt time of that record.
        receipt_ns = truth.start_ns + truth.send_rel_ns + truth.up_ns + truth.down_ns
        files = []
        written = 0
        for number, part in enumerate(parts):
            path = write_report(
                directory,
                part,
                from_address=addresses[0 if number < change_at else 1],
                user_id=user_id,
                installation_id=installation_id,
                rng=rng,
            )
            last_probe = truth.probe_index[written + part.size - 1]
            mtime = min(float(receipt_ns[last_probe]) / 1e9 + 1.0, latest_mtime)
            os.utime(path, (mtime, mtime))
            files.append(path)
            written += part.size
        details.append(
            SimulatedInstallation(
                user_id=user_id,
                installation_id=installation_id,
                directory=directory,
                addresses=tuple(addresses),
                files=tuple(files),
                observations=written,
                truth=truth if keep_truth else None,
            )
        )
    return TreeSummary(
        installations=installations,
        users=user_id,
        files=sum(len(d.files) for d in details),
        observations=sum(d.observations for d in details),
        seconds=time.perf_counter() - began,
        detail=tuple(details),
    )


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"not a share between 0 and 1: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m processor simulate``."""
    if parser.description is None:
        parser.description = (
            "Write a synthetic condenser tree OUT/<user>/<installation>/tix-report-<first ts>.json: one probe a\n"
            "second, ~60 records a file, realistic loss, delays, clock offsets and drift, midnight wraps and a\n"
            "per-installation schedule of induced queueing. The same arguments give a byte-identical tree.\n"
            "Prints one JSON line: installations, users, files, observations, seconds."
        )
    parser.add_argument("--out", type=Path, required=True, help="base directory of the tree (created if missing)")
    parser.add_argument("--installations", type=_positive_int, required=True, help="number of installations")
    parser.add_argument("--minutes", type=_positive_float, required=True, help="length of every run, minutes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=int,
        default=None,
        metavar="UNIX_S",
        help=f"true Unix second the runs start (default {DEFAULT_START_S}, fixed for reproducibility)",
    )
    parser.add_argument(
        "--ip-changes", type=_share, default=0.0, metavar="SHARE", help="share of installations changing IP (0)"
    )
    parser.add_argument(
        "--gaps", type=_share, default=0.0, metavar="SHARE", help="share of installations off-line 301-900 s (0)"
    )
    parser.add_argument(
        "--ms-clocks",
        type=_share,
        default=0.25,
        metavar="SHARE",
        help="share of installations with a millisecond client clock (0.25)",
    )
    parser.add_argument(
        "--schedule",
        choices=("mixed", "idle", "moderate", "saturated"),
        default="mixed",
        help="queueing schedule of every installation (mixed)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate the tree the arguments describe; print the one-line JSON summary; return the exit status."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"simulate: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        print(f"simulate: --out {out} is not empty; choose a new or empty directory", file=sys.stderr)
        return 2
    summary = simulate_tree(
        out,
        installations=args.installations,
        minutes=args.minutes,
        seed=args.seed,
        start_s=args.start,
        ip_change_share=args.ip_changes,
        gap_share=args.gaps,
        ms_clock_share=args.ms_clocks,
        schedule=args.schedule,
    )
    print(json.dumps(summary.as_dict()))
    return 0


__all__ = [
    "DAY_NS",
    "DEFAULT_START_S",
    "ClockModel",
    "GroundTruth",
    "InstallationProfile",
    "QueueLevel",
    "QueueSegment",
    "SimulatedInstallation",
    "TreeSummary",
    "add_arguments",
    "draw_address",
    "draw_level",
    "draw_profile",
    "draw_schedule",
    "run",
    "simulate_installation",
    "simulate_tree",
    "split_into_reports",
]
