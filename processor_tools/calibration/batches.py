"""Batches: a directory of client logs or reports cut into the service's windows, in memory (tools spec §1.2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from processor.reports.files import read_report, report_candidates
from processor.reports.windows import Candidate, Discard, Invalid, iter_windows, load_candidates


@dataclass(frozen=True, slots=True)
class Batch:
    """One window as a batch directory: its name (decimal Unix seconds) and its files in window order."""

    name: str
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """The batches of a directory's files; nothing has been written."""

    batches: tuple[Batch, ...]  #: in the order the windows were formed
    left_over: tuple[str, ...]  #: files never consumed by a window, in name order
    invalid: tuple[Invalid, ...]  #: unusable files set aside (change D12)
    discarded: tuple[Discard, ...]  #: reports removed by the gap or IP rule (windows spec §5)
    skipped: tuple[str, ...] = ()  #: source entries the formatter did not copy (change S10)


def plan_batches(directory: Path, *, progress: bool | None = None) -> Plan:
    """
    Form the batches of the files of ``directory`` with the service's window selection, in memory.

    The candidates (``*.json`` in name order) are read once and handed to
    :func:`processor.reports.windows.iter_windows` with every unusable file counted as old. Each window becomes a
    :class:`Batch` named after the ``ts`` of the first record (in file order) of its first file; after each window
    its older ``max(1, ⌊n/2⌋)`` files are consumed (change S1). ``progress`` None draws a bar on a terminal only.
    Two batches may get the same name (client logs whose first records share a second): the caller decides.
    """
    names = sorted(os.listdir(directory))
    candidate_names = report_candidates(directory)
    # tools spec §1.2: the selection with changes D5, S1 and D12 only, so no implausible_time (H10) here.
    loaded = load_candidates(candidate_names, lambda name: read_report(directory / name, check_time=False))
    candidates: list[Candidate] = list(
        tqdm(loaded, total=len(candidate_names), desc="reading", unit="file", disable=bar_disabled(progress))
    )
    batches: list[Batch] = []
    removed: set[str] = set()
    invalid: list[Invalid] = []
    discarded: list[Discard] = []
    for selection in iter_windows(candidates):
        invalid.extend(selection.invalid)
        discarded.extend(selection.discards)
        removed.update(selection.removed_names)
        window = selection.window
        if window is None:
            break
        batches.append(Batch(name=str(window.first.first_ts), files=window.names))
        removed.update(window.dispose)
    return Plan(
        batches=tuple(batches),
        left_over=tuple(name for name in names if name not in removed),
        invalid=tuple(invalid),
        discarded=tuple(discarded),
    )


def bar_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` option: None (the default) draws the bar on a terminal only."""
    return None if progress is None else not progress
