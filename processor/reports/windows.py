"""Choosing the next analysis window among an installation's report files (windows spec §3–§7)."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from processor.errors import UnusableReason, UnusableReport
from processor.logs import event_logger
from processor.observations import Observations
from processor.reports.files import Report, is_young_mtime
from processor.reports.records import window_observations

log = event_logger(__name__)

#: Fewest observations (counted per file, duplicates and 'L' records included) that make a window: 1024 + 60.
MIN_WINDOW_OBSERVATIONS = 1084

#: Largest tolerated gap between the first records of consecutive reports, or inside the last report, in seconds.
MAX_REPORT_GAP_S = 300

#: A candidate as the selection sees it: a usable report, or the error that made the file unusable.
Candidate = Report | UnusableReport

DiscardReason = Literal["gap", "ip_change"]


@dataclass(frozen=True, slots=True)
class Discard:
    """Reports the selection removed before the window: everything before a gap (a) or of an older IP (b)."""

    reason: DiscardReason
    reports: tuple[Report, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(report.name for report in self.reports)


@dataclass(frozen=True, slots=True)
class Invalid:
    """An unusable candidate (reports spec §5.1) met by the scan."""

    name: str
    reason: UnusableReason
    detail: str
    mtime_s: float | None  #: lstat modification time, Unix seconds (None if unknown: counts as old)

    @classmethod
    def from_error(cls, error: UnusableReport) -> Invalid:
        return cls(name=error.path.name, reason=error.reason, detail=error.detail, mtime_s=error.mtime_s)


@dataclass(frozen=True, slots=True)
class Window:
    """A complete window: consecutive usable reports of one IP with at least 1084 records in total."""

    reports: tuple[Report, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The report file names, in window (load) order."""
        return tuple(report.name for report in self.reports)

    @property
    def id(self) -> str:
        """Lower-case hexadecimal SHA-256 of the names joined with ``\\n`` (windows spec §9.1)."""
        return window_id(self.names)

    @property
    def dispose(self) -> tuple[str, ...]:
        """The older ``max(1, ⌊n/2⌋)`` names, removed once the window is recorded (change S1)."""
        return self.names[: dispose_count(len(self.reports))]

    @property
    def ip(self) -> str:
        """The client address of the window: ip(P[0]); the IP rule makes all reports share it."""
        return self.reports[0].ip

    @property
    def count(self) -> int:
        """Q(P): records over all reports, duplicates included."""
        return sum(report.count for report in self.reports)

    @property
    def first(self) -> Report:
        return self.reports[0]

    @property
    def last(self) -> Report:
        return self.reports[-1]

    def observations(self) -> Observations:
        """The de-duplicated, chronologically sorted observations handed to the analysis (windows spec §4, D1)."""
        return window_observations([report.observations for report in self.reports])


@dataclass(frozen=True, slots=True)
class Selection:
    """
    Everything one selection decided, in the order the scan met it; nothing has been done yet.

    The caller applies ``discards`` (delete) and ``invalid`` (move to ``invalid-reports/``) before processing
    ``window``. When ``young`` is set, the scan ended at that young unusable file (change S5) and there is no
    window; files after it were not read.
    """

    window: Window | None
    discards: tuple[Discard, ...]
    invalid: tuple[Invalid, ...]  #: old unusable candidates to quarantine (change D12)
    young: Invalid | None  #: the young unusable candidate that ended the scan, if any
    scanned: int  #: candidates taken from the input (the young one included)

    @property
    def discarded_names(self) -> tuple[str, ...]:
        return tuple(name for discard in self.discards for name in discard.names)

    @property
    def removed_names(self) -> tuple[str, ...]:
        """Names that leave the directory before the window is processed: discards, then quarantined files."""
        return self.discarded_names + tuple(item.name for item in self.invalid)


def window_id(names: Sequence[str]) -> str:
    """Lower-case hexadecimal SHA-256 of ``names`` joined with ``\\n``, encoded as UTF-8."""
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def dispose_count(window_length: int) -> int:
    """Number of reports removed after a window of ``window_length`` reports: ``max(1, ⌊n/2⌋)`` (change S1)."""
    return max(1, window_length // 2)


def _quantity(reports: Sequence[Report]) -> int:
    return sum(report.count for report in reports)


def _largest_gap_s(reports: Sequence[Report]) -> int:
    """max(0, distances between consecutive first records, span of the last report), in seconds."""
    gap = max(0, reports[-1].span_s)
    for before, after in itertools.pairwise(reports):
        gap = max(gap, after.first_ts - before.first_ts)
    return gap


def _split_at_gap(reports: list[Report], gap_s: int) -> tuple[list[Report], list[Report]]:
    """Split at the largest gap: inside the last report, else at the latest pair whose distance equals it."""
    if reports[-1].span_s == gap_s:
        return reports[:-1], reports[-1:]
    for i in range(len(reports) - 1, 0, -1):
        if reports[i].first_ts - reports[i - 1].first_ts == gap_s:
            return reports[:i], reports[i:]
    raise AssertionError("the largest gap is neither a pair distance nor the last span")  # pragma: no cover


def select_window(candidates: Iterable[Candidate], *, now_s: float) -> Selection:
    """
    Select the next window among an installation's candidates, without touching any file.

    Parameters
    ----------
    candidates : iterable of Report or UnusableReport
        The installation's candidates in name order, each a usable report or the error that makes it unusable
        (vanished files must already be left out). It is consumed lazily: no candidate is taken after the
        window is complete or after a young unusable one, so a generator that reads files reads only what
        the selection needs.
    now_s : float
        Current time, Unix seconds, for the young/old rule of unusable files (60 s, reports spec §5.2; an mtime
        more than 60 s ahead counts as old, H5).
        ``math.inf`` treats every unusable file as old (batch tools working on a static copy).

    Returns
    -------
    Selection
        The window (or None), the reports removed by the gap and IP rules, the old unusable files to
        quarantine, and the young file that ended the scan, if any.

    Notes
    -----
    Windows spec §3 exactly: the gap rule runs only when Q(P) > 1084 (strictly), so a window of exactly 1084
    records may hold a larger gap; pair distances use the first record of each file and negative ones never
    count; only the last report's internal span is examined.
    """
    iterator = iter(candidates)
    window: list[Report] = []
    quantity = 0
    discards: list[Discard] = []
    invalid: list[Invalid] = []
    young: Invalid | None = None
    scanned = 0
    while quantity < MIN_WINDOW_OBSERVATIONS:
        try:
            candidate = next(iterator)
        except StopIteration:
            break
        scanned += 1
        if isinstance(candidate, UnusableReport):
            item = Invalid.from_error(candidate)
            if is_young_mtime(item.mtime_s, now_s):
                # S5: the condenser may still be writing it; skipping it would break the chronological order.
                young = item
                break
            invalid.append(item)
            continue
        report = candidate
        if window and report.ip != window[0].ip:
            discards.append(Discard("ip_change", tuple(window)))
            window, quantity = [], 0
        window.append(report)
        quantity += report.count
        if quantity > MIN_WINDOW_OBSERVATIONS:
            gap_s = _largest_gap_s(window)
            if gap_s > MAX_REPORT_GAP_S:
                before, after = _split_at_gap(window, gap_s)
                before_quantity = _quantity(before)
                if before_quantity < MIN_WINDOW_OBSERVATIONS:
                    if before:
                        discards.append(Discard("gap", tuple(before)))
                    window, quantity = after, quantity - before_quantity
                else:  # pragma: no cover - unreachable while the loop stops at 1084 (windows spec §3 step 4)
                    window, quantity = before, before_quantity
    return Selection(
        window=Window(tuple(window)) if quantity >= MIN_WINDOW_OBSERVATIONS else None,
        discards=tuple(discards),
        invalid=tuple(invalid),
        young=young,
        scanned=scanned,
    )


def load_candidates(names: Iterable[str], load: Callable[[str], Report]) -> Iterator[Candidate]:
    """
    Load candidates lazily, one name at a time, for :func:`select_window`.

    ``load`` reads one name (typically ``read_report(directory / name)``). A file that vanished meanwhile
    (``FileNotFoundError``) is skipped with a DEBUG log; an unusable one is yielded as its
    :class:`UnusableReport`; any other ``OSError`` propagates and ends the selection (windows spec §7).
    """
    for name in names:
        try:
            yield load(name)
        except UnusableReport as error:
            yield error
        except FileNotFoundError:
            log.debug("report vanished", name=name)


def candidate_name(candidate: Candidate) -> str:
    """File name of a candidate, usable or not."""
    return candidate.path.name if isinstance(candidate, UnusableReport) else candidate.name


class _Counting(Iterator[Candidate]):
    """Iterator that counts what it hands out, so :func:`iter_windows` knows which prefix the selection read."""

    def __init__(self, items: Iterator[Candidate]) -> None:
        self._items = items
        self.taken: list[Candidate] = []

    def __next__(self) -> Candidate:
        item = next(self._items)
        self.taken.append(item)
        return item


def iter_windows(candidates: Sequence[Candidate], *, now_s: float = math.inf) -> Iterator[Selection]:
    """
    Consume windows one after another in memory, as successive runs would, without touching any file.

    After each selection its discarded reports, its quarantined files and its window's ``dispose`` names are
    dropped from the candidates, and the next selection starts again from the first remaining candidate.

    Parameters
    ----------
    candidates : sequence of Report or UnusableReport
        Every candidate of one installation (or client-log directory) in name order.
    now_s : float
        Unix seconds for the young/old rule; the default ``math.inf`` makes every unusable file old, so it is
        skipped (the batch formatter works on a directory nobody is writing).

    Yields
    ------
    Selection
        One per window, then a last one whose ``window`` is None (its discards and invalid files are what the
        remaining candidates would lose; with a finite ``now_s`` it may stop at a young file).
    """
    carry: list[Candidate] = []  # candidates read by earlier selections and still present
    position = 0  # first candidate of ``candidates`` that no selection has read yet
    while True:
        tail = (candidates[i] for i in range(position, len(candidates)))
        counting = _Counting(itertools.chain(carry, tail))
        selection = select_window(counting, now_s=now_s)
        yield selection
        if selection.window is None:
            return
        removed = set(selection.removed_names) | set(selection.window.dispose)
        taken = len(counting.taken)
        from_carry = min(taken, len(carry))
        position += taken - from_carry
        carry = [c for c in counting.taken if candidate_name(c) not in removed] + carry[from_carry:]
