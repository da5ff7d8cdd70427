"""The calibration test's ``description.yml`` in both schemas, and the downstream usage it implies (tools §2.2, 2.5)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from processor.errors import BadDescription

Schema = Literal["new", "old"]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the download schedule: from ``start_s`` (inclusive) to ``end_s`` (exclusive)."""

    start_s: float  #: Unix seconds
    end_s: float  #: Unix seconds
    fraction: float  #: download cap as a share of the link capacity, dimensionless (the expected usage)


@dataclass(frozen=True, slots=True)
class Description:
    """A test configuration, reduced to its schedule and the capacity that normalises the measured rate."""

    schema: Schema  #: "new" (2018: ``intervals``) or "old" (2017: ``experiment``)
    steps: tuple[Step, ...]
    capacity: float  #: link capacity: ``max_speed_kbps`` (kbit/s, new schema) or ``connection_speed`` (old schema)
    network_interface: str | None = None  #: new schema only


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadDescription(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _positive(value: Any, where: str) -> float:
    number = _number(value, where)
    if number <= 0:
        raise BadDescription(f"{where} must be positive, got {value!r}")
    return number


def _steps_list(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    steps = document[key]
    if not isinstance(steps, list) or not all(isinstance(step, Mapping) for step in steps):
        raise BadDescription(f"{key} must be a list of mappings")
    return steps


def parse_description(document: Any) -> Description:
    """
    Turn a parsed ``description.yml`` into a :class:`Description` (tools spec §2.2).

    New schema (has ``intervals``): steps follow one another from ``start_time``, each lasting
    ``60 · duration_minutes`` seconds at ``speed_percentage / 100``; the capacity is ``max_speed_kbps``.
    Old schema (has ``experiment``): step ``[start, start + lapse)`` at ``speed / connection_speed``; the capacity
    is ``connection_speed`` (KB/s in the 2017 files).

    Raises
    ------
    BadDescription
        When the document has neither ``intervals`` nor ``experiment``, or a value is missing or not a number;
        the message names the key.
    """
    if not isinstance(document, Mapping):
        raise BadDescription("description is not a YAML mapping")
    try:
        if "intervals" in document:
            start_s = _number(document["start_time"], "start_time")
            capacity = _positive(document["max_speed_kbps"], "max_speed_kbps")
            steps = []
            for i, interval in enumerate(_steps_list(document, "intervals")):
                duration_min = _number(interval["duration_minutes"], f"intervals[{i}].duration_minutes")
                percentage = _number(interval["speed_percentage"], f"intervals[{i}].speed_percentage")
                end_s = start_s + 60 * duration_min
                steps.append(Step(start_s=start_s, end_s=end_s, fraction=percentage / 100))
                start_s = end_s
            interface = document.get("network_interface")
            return Description("new", tuple(steps), capacity, str(interface) if interface is not None else None)
        if "experiment" in document:
            capacity = _positive(document["connection_speed"], "connection_speed")
            steps = []
            for i, item in enumerate(_steps_list(document, "experiment")):
                start_s = _number(item["start"], f"experiment[{i}].start")
                lapse_s = _number(item["lapse"], f"experiment[{i}].lapse")
                speed = _number(item["speed"], f"experiment[{i}].speed")
                steps.append(Step(start_s=start_s, end_s=start_s + lapse_s, fraction=speed / capacity))
            return Description("old", tuple(steps), capacity)
    except KeyError as missing:
        raise BadDescription(f"missing key {missing.args[0]!r}") from None
    raise BadDescription("neither 'intervals' (2018 schema) nor 'experiment' (2017 schema) found")


def load_description(path: str | Path) -> Description:
    """Read ``description.yml`` with a safe YAML loader and parse it (raises :class:`BadDescription`, ``OSError``)."""
    with open(path, encoding="utf-8") as handle:
        try:
            document = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise BadDescription(f"not valid YAML: {error}") from None
    return parse_description(document)


def expected_usage(steps: Sequence[Step], start_s: float, end_s: float) -> float | None:
    """
    Expected downstream usage of a batch from ``start_s`` to ``end_s`` (Unix seconds), tools spec §2.5.

    A = the first step with ``start ≤ start_s < end``, B = the first with ``start ≤ end_s < end``. Neither → None
    (the batch is left out of the comparison); only one → its fraction; equal fractions → that fraction; otherwise
    the time-weighted ``((end_A − start_s) · f_A + (end_s − start_B) · f_B) / (end_s − start_s)``. A batch over
    three or more steps ignores the middle ones, as the original did (the weights then do not add up to 1).
    """
    first: Step | None = None
    last: Step | None = None
    for step in steps:
        if first is None and step.start_s <= start_s < step.end_s:
            first = step
        if last is None and step.start_s <= end_s < step.end_s:
            last = step
        if first is not None and last is not None:
            break
    if first is None and last is None:
        return None
    if first is None:
        return last.fraction  # type: ignore[union-attr]  # not None: "neither" returned above
    if last is None or first.fraction == last.fraction:
        return first.fraction
    return ((first.end_s - start_s) * first.fraction + (end_s - last.start_s) * last.fraction) / (end_s - start_s)
