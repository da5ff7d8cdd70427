"""
The original's analysis classes (compat spec §3): ``Analyzer`` and the internals its notebook reads.

Delegates to the new exact analysis: the original's numbers wherever the original did not crash and saw
observations in time order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from processor.analysis import MEANINGFUL_WINDOW_S, Histogram, analyse
from processor.analysis.clock import OffsetFunction, observation_offsets, reference_set, unwrap_clocks
from processor.analysis.histogram import ALPHA, histogram
from processor.analysis.hurst import hurst_estimates_rows, hurst_series_length
from processor.analysis.quality import (
    CONGESTED_ABOVE_HURST,
    CONGESTED_BELOW_USAGE,
    minute_usages,
    quality,
    quality_minutes,
)
from processor.analysis.usage import DirectionUsage, one_way_times, set_usage
from processor.compat.observations import Observation, from_array, to_array
from processor.errors import NotAnalysable, NotAnalysableReason
from processor.observations import Observations
from processor.reports.records import window_observations

FloatArray = NDArray[np.float64]
PhiFunction = Callable[[int], float]

#: Span of the meaningful observations at the end of a window.
MEANINGFUL_OBSERVATIONS_DELTA = timedelta(seconds=MEANINGFUL_WINDOW_S)
#: A minute is congested when its usage is below this …
CONGESTION_THRESHOLD = CONGESTED_BELOW_USAGE
#: … while the direction's mean Hurst exponent is above this.
HURST_CONGESTION_THRESHOLD = CONGESTED_ABOVE_HURST

SPAN_TOO_SHORT_MESSAGE = "Meaningful observations time delta is lower than expected: {span} < {expected}"


class DegenerateWindowError(NotAnalysable, ValueError):
    """
    A window the analysis cannot give a result for (C3): a ValueError, as the original raised, with ``reason``.

    ``reason`` is the not-analysable reason code of the service (``span_too_short``, ``too_few_bins``, …).
    """

    def __init__(self, reason: NotAnalysableReason, message: str = "") -> None:
        super().__init__(reason)
        if message:
            self.args = (message,)


@contextmanager
def value_errors() -> Iterator[None]:
    """Raise the exact analysis' :class:`NotAnalysable` as a :class:`DegenerateWindowError` (C3)."""
    try:
        yield
    except NotAnalysable as exc:
        raise DegenerateWindowError(exc.reason) from exc


def chronological(observations: Iterable[Observation]) -> Observations:
    """The observations de-duplicated and sorted by (ts, t1, t2, t3, t4, type, size) (C1: the service's D1)."""
    return window_observations([to_array(observations)])


def observation_rtt_key_function(observation: Observation) -> int:
    """Round-trip time t4 − t1 of an observation, nanoseconds of the client clock."""
    return observation.final_timestamp - observation.initial_timestamp


def one_way_arrays(records: Observations, phi_function: PhiFunction) -> tuple[FloatArray, FloatArray]:
    """Upstream and downstream one-way times (ns) of raw records, φ evaluated at each ts (no midnight unwrap)."""
    t1, t2, t3, t4 = (records[field].astype(np.int64) for field in ("t1", "t2", "t3", "t4"))
    offsets = np.array([phi_function(int(ts)) for ts in records["ts"]], dtype=np.float64)
    return one_way_times(t1, t2, t3, t4, offsets)


def upstream_time_function(observation: Observation, phi_function: PhiFunction) -> float:
    """Upstream one-way time t2 + φ(ts) − t1 of one observation, nanoseconds."""
    return float(one_way_arrays(to_array([observation]), phi_function)[0][0])


def downstream_time_function(observation: Observation, phi_function: PhiFunction) -> float:
    """Downstream one-way time t4 − t3 − φ(ts) of one observation, nanoseconds."""
    return float(one_way_arrays(to_array([observation]), phi_function)[1][0])


def divide_observations_into_minutes(observations: Iterable[Observation]) -> dict[int, list[Observation]]:
    """The observations grouped by UTC minute (its first second, Unix s), in chronological order."""
    minutes: dict[int, list[Observation]] = {}
    for observation in from_array(chronological(observations)):
        minutes.setdefault(observation.day_timestamp // 60 * 60, []).append(observation)
    return minutes


class Bin:
    """One bin of an equal-count histogram: its items and the range of their keys."""

    def __init__(self, data: list[Any], min_value: Any, max_value: Any, width: Any, mid_value: Any) -> None:
        self.data = data
        self.min_value = min_value
        self.max_value = max_value
        self.width = width  # max_value − min_value
        self.mid_value = mid_value  # min_value + ⌊width / 2⌋


class FixedSizeBinHistogram:
    """
    The equal-count histogram of ``data`` by ``characterization_function`` (analysis spec §5), built by the exact one.

    ``data`` is kept sorted by key (stable); ``bins`` hold ⌊n/k⌋ items each, the last also the left-overs;
    ``bins_probabilities`` are the scores (+inf for a zero-width bin, where the original crashed).
    """

    def __init__(
        self, data: Iterable[Any], characterization_function: Callable[[Any], Any], alpha: float = ALPHA
    ) -> None:
        if alpha != ALPHA:
            raise ValueError(f"only alpha={ALPHA} is supported: it is the one the analysis uses")
        items = list(data)
        with value_errors():
            exact = histogram([characterization_function(item) for item in items])
        self._fill(items, characterization_function, exact)

    @classmethod
    def of_keys(cls, items: Sequence[Hashable], keys: ArrayLike, exact: Histogram) -> FixedSizeBinHistogram:
        """The histogram ``exact`` over ``items`` whose keys are ``keys``; the key function looks them up."""
        self = cls.__new__(cls)
        self._fill(list(items), dict(zip(items, np.asarray(keys).tolist(), strict=True)).__getitem__, exact)
        return self

    def _fill(self, items: list[Any], characterization_function: Callable[[Any], Any], exact: Histogram) -> None:
        self.characterization_function = characterization_function
        self.alpha = ALPHA
        self.data = [items[i] for i in exact.order.tolist()]
        size = exact.items_per_bin
        lo, hi, mid = exact.lo.tolist(), exact.hi.tolist(), exact.mid.tolist()
        self.bins = [
            Bin(self.data[i * size : (i + 1) * size if i < exact.k - 1 else None], lo[i], hi[i], hi[i] - lo[i], mid[i])
            for i in range(exact.k)
        ]
        self.bins_probabilities: list[float] = exact.scores.tolist()
        self.mode = self.bins[exact.mode_index].mid_value
        self.threshold = exact.threshold


class ClockFixer:
    """The clock offset φ (client minus server, ns) interpolated through the lowest-RTT observations (§6)."""

    def __init__(self, observations: Iterable[Observation], tau: object = None) -> None:
        # tau: the original's parameter, which it never used either.
        chosen = sorted(observations, key=lambda observation: observation.day_timestamp)
        if not chosen:
            raise DegenerateWindowError("too_few_bins", "ClockFixer needs at least one observation")
        records = to_array(chosen)
        t1, t2, t3, t4 = (records[field].astype(np.int64) for field in ("t1", "t2", "t3", "t4"))
        self._fill(
            chosen, OffsetFunction(ts_s=records["ts"].astype(np.int64), offset_ns=observation_offsets(t1, t2, t3, t4))
        )

    @classmethod
    def of_offset(cls, observations: list[Observation], offset: OffsetFunction) -> ClockFixer:
        """The clock fixer of the exact analysis' φ, whose reference set is ``observations`` (in ts order)."""
        self = cls.__new__(cls)
        self._fill(observations, offset)
        return self

    def _fill(self, observations: list[Observation], offset: OffsetFunction) -> None:
        self.observations = observations
        self._offset = offset

    def phi_function(self, ts: ArrayLike) -> Any:
        """φ at the second ``ts`` (Unix s, or an array of them), in nanoseconds: a float, or an array."""
        value = self._offset(np.asarray(ts, dtype=np.int64))
        return float(value) if np.ndim(value) == 0 else value


class UsageCalculator:
    """Usage of each direction of a set of observations (§7.2) with its two histograms of one-way times."""

    def __init__(self, observations: Iterable[Observation], phi_function: PhiFunction) -> None:
        records = chronological(observations)
        up, down = one_way_arrays(records, phi_function)
        with value_errors():
            usage = set_usage(up, down)
        self._fill(from_array(records), up, down, usage.upstream, usage.downstream)

    @classmethod
    def of_usage(
        cls,
        observations: list[Observation],
        up_ns: FloatArray,
        down_ns: FloatArray,
        upstream: DirectionUsage,
        downstream: DirectionUsage,
    ) -> UsageCalculator:
        """The usage the exact analysis computed over ``observations`` with one-way times ``up_ns``/``down_ns``."""
        self = cls.__new__(cls)
        self._fill(observations, up_ns, down_ns, upstream, downstream)
        return self

    def _fill(
        self,
        observations: list[Observation],
        up_ns: FloatArray,
        down_ns: FloatArray,
        upstream: DirectionUsage,
        downstream: DirectionUsage,
    ) -> None:
        self.observations = observations
        self.upstream_histogram = FixedSizeBinHistogram.of_keys(observations, up_ns, upstream.histogram)
        self.downstream_histogram = FixedSizeBinHistogram.of_keys(observations, down_ns, downstream.histogram)
        self.upstream_usage = upstream.usage
        self.downstream_usage = downstream.usage


class HurstCalculator:
    """Wavelet and R/S Hurst exponents of the last 2^k one-way times of each direction (§7.3–§7.5)."""

    def __init__(self, observations: Iterable[Observation], phi_function: PhiFunction) -> None:
        records = chronological(observations)
        up, down = one_way_arrays(records, phi_function)
        length = hurst_series_length(int(records.size))
        with value_errors():
            up_hurst, down_hurst = hurst_estimates_rows(np.stack((up[len(up) - length :], down[len(down) - length :])))
        self.upstream = {"wavelet": up_hurst.wavelet.hurst, "rs": up_hurst.rs.hurst}
        self.downstream = {"wavelet": down_hurst.wavelet.hurst, "rs": down_hurst.rs.hurst}


class QualityCalculator:
    """Share of the minutes of ≥ 30 probes that are not congested (usage < 0.5 while the mean Hurst > 0.7)."""

    def __init__(
        self,
        observations: Iterable[Observation],
        phi_function: PhiFunction,
        upstream_hurst: float,
        downstream_hurst: float,
    ) -> None:
        records = chronological(observations)
        up, down = one_way_arrays(records, phi_function)
        with value_errors():
            usages = minute_usages(up, down, quality_minutes(records["ts"].astype(np.int64)))
        self.upstream_quality = quality(usages.upstream, upstream_hurst)
        self.downstream_quality = quality(usages.downstream, downstream_hurst)


class Analyzer:
    """
    The analysis of one window's observations, with the intermediate values the analysis notebook draws.

    Delegates to the new exact analysis: the original's numbers wherever the original did not crash and saw
    observations in time order. Only the b'S' observations count; they are de-duplicated and sorted (C1),
    their clocks unwrapped at midnight (C2), and a degenerate window raises :class:`DegenerateWindowError`,
    a ValueError with the reason code (C3; a span under 10 minutes gives the original's message, K6).
    """

    MEANINGFUL_OBSERVATIONS_DELTA = MEANINGFUL_OBSERVATIONS_DELTA
    CONGESTION_THRESHOLD = CONGESTION_THRESHOLD
    HURST_CONGESTION_THRESHOLD = HURST_CONGESTION_THRESHOLD

    def __init__(self, observations_set: Iterable[Observation]) -> None:
        records = chronological(o for o in observations_set if o.type_identifier == b"S")
        ts = records["ts"].astype(np.int64)
        try:
            self._result = analyse(records)
        except NotAnalysable as exc:
            span = timedelta(seconds=int(ts[-1] - ts[0]) if ts.size else 0)
            message = SPAN_TOO_SHORT_MESSAGE.format(span=span, expected=MEANINGFUL_OBSERVATIONS_DELTA)
            raise DegenerateWindowError(exc.reason, message if exc.reason == "span_too_short" else "") from exc
        diagnostics = self._result.diagnostics
        self.observations = from_array(records)
        first = len(self.observations) - diagnostics.window_observations
        self.meaningful_observations = self.observations[first:]
        # The keys the exact analysis used: clocks unwrapped at midnight (C2), φ of the exact analysis.
        t1, t2, t3, t4 = unwrap_clocks(*(records[field].astype(np.int64) for field in ("t1", "t2", "t3", "t4")))
        self.rtt_histogram = FixedSizeBinHistogram.of_keys(self.observations, t4 - t1, diagnostics.rtt_histogram)
        reference = [self.observations[i] for i in reference_set(diagnostics.rtt_histogram, ts).tolist()]
        self.clock_fixer = ClockFixer.of_offset(reference, diagnostics.offset)
        up, down = one_way_times(t1[first:], t2[first:], t3[first:], t4[first:], diagnostics.offset(ts[first:]))
        self.usage_calculator = UsageCalculator.of_usage(
            self.meaningful_observations, up, down, diagnostics.upstream.usage, diagnostics.downstream.usage
        )

    def get_results(self) -> dict[str, Any]:
        """``{'timestamp': int, 'upstream': {'usage', 'quality', 'hurst': {'wavelet', 'rs'}}, 'downstream': …}``."""
        results = self._result.as_results_dict()
        for direction in ("upstream", "downstream"):
            del results[direction]["usage_queueing"]  # the service's addition; not in the original's dict
        return results
