"""The simulated installation's model: clocks, delays, queueing schedule, loss, and the ground truth they give."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

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
    busy_share: float  #: ρ, stationary share of seconds in which probes queue, in [0, 1] (1: a standing queue)
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
