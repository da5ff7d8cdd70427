"""The installation's state file: the last window recorded as done, the current attempt and counters (§9.1)."""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from processor.atomic import atomic_write_bytes
from processor.logs import event_logger

log = event_logger(__name__)

#: Name of the state file inside an installation directory (change D9).
STATE_NAME = ".tix-processor-state"

#: Largest state file read, in bytes (H2); a larger one is corrupt. A state file holds a few hundred bytes.
MAX_STATE_BYTES = 65536

#: The only format this code reads and writes.
STATE_FORMAT = 1

Outcome = Literal["posted", "backed_up", "not_analysable"]
Disposal = Literal["delete", "quarantine"]

#: The integer counters, in the order they are written.
INTEGER_COUNTERS = (
    "posted",
    "backed_up",
    "resent",
    "rejected",
    "invalid_reports",
    "discarded_gap",
    "discarded_ip_change",
)


class StateFormatError(ValueError):
    """The bytes of a state file do not hold a state of format 1 (:func:`read_state` sets such a file aside)."""


def _frozen_counts(counts: Mapping[str, int] | None = None) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted((counts or {}).items())))


@dataclass(frozen=True, slots=True)
class Counters:
    """Cumulative counts since the state file was created (windows spec §9.1)."""

    posted: int = 0
    backed_up: int = 0
    resent: int = 0
    rejected: int = 0
    invalid_reports: int = 0
    discarded_gap: int = 0
    discarded_ip_change: int = 0
    not_analysable: Mapping[str, int] = field(default_factory=_frozen_counts)  #: reason code -> windows

    def plus(self, **increments: int) -> Counters:
        """A copy with the named integer counters increased, e.g. ``plus(resent=1)``."""
        unknown = set(increments) - set(INTEGER_COUNTERS)
        if unknown:
            raise TypeError(f"unknown counters: {sorted(unknown)}")
        return replace(self, **{name: getattr(self, name) + value for name, value in increments.items()})

    def plus_not_analysable(self, reason: str) -> Counters:
        counts = dict(self.not_analysable)
        counts[reason] = counts.get(reason, 0) + 1
        return replace(self, not_analysable=_frozen_counts(counts))

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {name: getattr(self, name) for name in INTEGER_COUNTERS}
        result["not_analysable"] = dict(self.not_analysable)
        return result


@dataclass(frozen=True, slots=True)
class LastWindow:
    """The last window recorded as done; ``dispose`` names what still has to leave after recording."""

    id: str
    files: tuple[str, ...]
    dispose: tuple[str, ...]
    disposal: Disposal
    outcome: Outcome
    reason: str | None
    timestamp: int | None  #: result timestamp, Unix seconds (None when not analysable)
    finished_at: str  #: ISO-8601 UTC time of recording

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "files": list(self.files),
            "dispose": list(self.dispose),
            "disposal": self.disposal,
            "outcome": self.outcome,
            "reason": self.reason,
            "timestamp": self.timestamp,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class LastDelivery:
    """The last result tix-api accepted, a posted window or a re-sent failed result (``status``'s last delivery)."""

    timestamp: int  #: its result timestamp, Unix seconds
    delivered_at: str  #: ISO-8601 UTC time of tix-api's answer

    def as_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "delivered_at": self.delivered_at}


@dataclass(frozen=True, slots=True)
class Attempt:
    """The window currently being processed and how many times it was started."""

    id: str
    count: int


@dataclass(frozen=True, slots=True)
class State:
    """Window bookkeeping of one installation (windows spec §9.1). Missing file = ``State()``."""

    last_window: LastWindow | None = None
    attempt: Attempt | None = None
    counters: Counters = field(default_factory=Counters)
    #: Not in windows spec §9.1: added after ``counters``; a file without it (older versions) reads as None.
    last_delivery: LastDelivery | None = None

    def started(self, window_id: str) -> State:
        """The state after starting ``window_id`` once more: count + 1 for the same id, else 1."""
        count = self.attempt.count + 1 if self.attempt is not None and self.attempt.id == window_id else 1
        return replace(self, attempt=Attempt(window_id, count))

    def attempts(self, window_id: str) -> int:
        """How many times ``window_id`` was started without being recorded as done."""
        return self.attempt.count if self.attempt is not None and self.attempt.id == window_id else 0

    def recorded(self, last_window: LastWindow) -> State:
        """The state after recording ``last_window`` as done: attempt cleared, outcome counted."""
        counters = self.counters
        if last_window.outcome == "not_analysable":
            counters = counters.plus_not_analysable(last_window.reason or "unknown")
        else:
            counters = counters.plus(**{last_window.outcome: 1})
        delivery = self.last_delivery
        if last_window.outcome == "posted" and last_window.timestamp is not None:
            delivery = LastDelivery(last_window.timestamp, last_window.finished_at)
        return replace(self, last_window=last_window, attempt=None, counters=counters, last_delivery=delivery)

    def delivered(self, timestamp: int, now_s: float | None = None) -> State:
        """The state after tix-api accepted the result of ``timestamp`` at ``now_s`` (default now), e.g. a re-send."""
        return replace(self, last_delivery=LastDelivery(timestamp, utc_now_iso(now_s)))

    def counted(self, **increments: int) -> State:
        """The state with integer counters increased."""
        return replace(self, counters=self.counters.plus(**increments))

    def to_json(self) -> bytes:
        document = {
            "format": STATE_FORMAT,
            "last_window": self.last_window.as_dict() if self.last_window is not None else None,
            "attempt": {"id": self.attempt.id, "count": self.attempt.count} if self.attempt is not None else None,
            "counters": self.counters.as_dict(),
            "last_delivery": self.last_delivery.as_dict() if self.last_delivery is not None else None,
        }
        return (json.dumps(document, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> State:
        """Parse a state file; raise :class:`StateFormatError` for anything that is not a format-1 state."""
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise StateFormatError(f"not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise StateFormatError("not a JSON object")
        if _get(document, "format", int) != STATE_FORMAT:
            raise StateFormatError(f"format is not {STATE_FORMAT}")
        return cls(
            last_window=_last_window(document.get("last_window")),
            attempt=_attempt(document.get("attempt")),
            counters=_counters(document.get("counters")),
            last_delivery=_last_delivery(document.get("last_delivery")),
        )


def _get(document: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    value = document.get(key)
    if value is None and optional:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise StateFormatError(f"{key}: missing or of the wrong type")
    return value


def _names(document: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = _get(document, key, list)
    if not all(isinstance(name, str) for name in value):
        raise StateFormatError(f"{key}: not a list of strings")
    return tuple(value)


def _last_window(value: Any) -> LastWindow | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateFormatError("last_window: not an object")
    disposal = _get(value, "disposal", str)
    outcome = _get(value, "outcome", str)
    if disposal not in ("delete", "quarantine"):
        raise StateFormatError(f"last_window.disposal: unknown value {disposal!r}")
    if outcome not in ("posted", "backed_up", "not_analysable"):
        raise StateFormatError(f"last_window.outcome: unknown value {outcome!r}")
    return LastWindow(
        id=_get(value, "id", str),
        files=_names(value, "files"),
        dispose=_names(value, "dispose"),
        disposal=disposal,
        outcome=outcome,
        reason=_get(value, "reason", str, optional=True),
        timestamp=_get(value, "timestamp", int, optional=True),
        finished_at=_get(value, "finished_at", str),
    )


def _last_delivery(value: Any) -> LastDelivery | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateFormatError("last_delivery: not an object")
    return LastDelivery(timestamp=_get(value, "timestamp", int), delivered_at=_get(value, "delivered_at", str))


def _attempt(value: Any) -> Attempt | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateFormatError("attempt: not an object")
    return Attempt(id=_get(value, "id", str), count=_get(value, "count", int))


def _counters(value: Any) -> Counters:
    if value is None:
        return Counters()
    if not isinstance(value, dict):
        raise StateFormatError("counters: not an object")
    integers = {name: _get(value, name, int) for name in INTEGER_COUNTERS if name in value}
    reasons = value.get("not_analysable", {})
    if not isinstance(reasons, dict) or not all(
        isinstance(count, int) and not isinstance(count, bool) for count in reasons.values()
    ):
        raise StateFormatError("counters.not_analysable: not an object of integers")
    return Counters(**integers, not_analysable=_frozen_counts(reasons))


def utc_now_iso(now_s: float | None = None) -> str:
    """ISO-8601 UTC text of ``now_s`` (Unix seconds; default: now), e.g. ``2023-11-14T22:13:20.123456+00:00``."""
    return datetime.fromtimestamp(time.time() if now_s is None else now_s, tz=UTC).isoformat()


def load_state(directory: Path) -> State | None:
    """
    The state file of an installation directory as parsed, read-only; None when there is none.

    Raises :class:`StateFormatError` when the file is corrupt (left where it is) and ``OSError`` when it cannot be
    read, including when its path is a symbolic link (never followed: the service writes the file by rename).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(directory / STATE_NAME, flags)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "state path is not a regular file", str(directory / STATE_NAME))
        data = handle.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:  # H2: no read is unbounded; a state file holds a few hundred bytes
        raise StateFormatError(f"larger than {MAX_STATE_BYTES} bytes")
    return State.from_json(data)


def read_state(
    directory: Path,
    *,
    before_effect: Callable[[], None] | None = None,
    now_s: Callable[[], float] = time.time,
    set_aside: bool = True,
) -> State:
    """
    Read the state file of an installation directory (windows spec §9.1).

    Parameters
    ----------
    directory : Path
        The installation directory.
    before_effect : callable, optional
        Called before the only side effect of reading, renaming a corrupt file (the lock's fence).
    now_s : callable
        Clock, Unix seconds, for the name of a corrupt file set aside.
    set_aside : bool
        False for read-only callers (dry runs): a corrupt file is left in place and only logged at WARNING.

    Returns
    -------
    State
        The state; a fresh ``State()`` when the file is missing, or when it is corrupt, in which case it is
        renamed ``.tix-processor-state.corrupt-<unix s>`` and an ERROR is logged.

    Raises
    ------
    OSError
        An I/O error reading or renaming the file (the run ends).
    """
    path = directory / STATE_NAME
    try:
        return load_state(directory) or State()
    except StateFormatError as exc:
        problem = str(exc)
    if not set_aside:
        log.warning("state file corrupt, left in place", directory=directory, problem=problem)
        return State()
    if before_effect is not None:
        before_effect()
    aside = directory / f"{STATE_NAME}.corrupt-{int(now_s())}"
    suffix = 0
    while aside.exists():  # two corrupt files within one second: keep both
        suffix += 1
        aside = directory / f"{STATE_NAME}.corrupt-{int(now_s())}-{suffix}"
    os.rename(path, aside)
    log.error("state file corrupt", directory=directory, problem=problem, set_aside=aside.name)
    return State()


def write_state(directory: Path, state: State) -> None:
    """Replace the state file atomically (temporary file, fsync, rename, directory fsync), mode 0640."""
    atomic_write_bytes(directory / STATE_NAME, state.to_json(), purpose="state", mode=0o640)
