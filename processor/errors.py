"""Every exception the processor raises on purpose, under one root class."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

NotAnalysableReason = Literal[
    "span_too_short",
    "too_few_bins",
    "no_sample_above_mode",
    "hurst_series_too_short",
    "constant_series",
    "no_quality_minute",
    "repeated_failure",
]

UnusableReason = Literal[
    "symlink",
    "not_regular_file",
    "too_large",
    "empty",
    "not_json",
    "schema",
    "bad_address",
    "bad_base64",
    "bad_record_length",
    "no_records",
]


class ProcessorError(Exception):
    """Root of every exception the processor raises on purpose."""


class NotAnalysable(ProcessorError):
    """The window's data make the analysis degenerate; it is consumed without a result."""

    def __init__(self, reason: NotAnalysableReason) -> None:
        super().__init__(reason)
        self.reason: NotAnalysableReason = reason


class UnusableReport(ProcessorError):
    """A report candidate that cannot be used; ``mtime_s`` lets the caller tell young from old files."""

    def __init__(self, path: Path, reason: UnusableReason, detail: str = "", mtime_s: float | None = None) -> None:
        super().__init__(f"{path.name}: {reason}" + (f" ({detail})" if detail else ""))
        self.path = path
        self.reason: UnusableReason = reason
        self.detail = detail
        self.mtime_s = mtime_s


class BadAddress(ProcessorError, ValueError):
    """The ``from`` field of a report is not a host[:port] the parser accepts (change D5)."""


class ConfigError(ProcessorError):
    """One or more environment variables are invalid; ``problems`` lists them, one per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems
