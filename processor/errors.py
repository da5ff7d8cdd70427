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
    "unreadable",  # H4: open refused for lack of permission (EACCES, EPERM)
    "implausible_time",  # H10: a ts before 2010-01-01 or more than a day after the file's mtime
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


ApiFailureReason = Literal[
    "missing_credentials",  # TIX_API_USER or TIX_API_PASSWORD unset: no request was made
    "connect_failed",  # refused, reset before sending, DNS failure, connect timeout, TLS failure (retried)
    "server_error",  # 429, 500, 502, 503, 504 (retried)
    "read_timeout",  # no answer in time after the request was sent (not retried; ambiguous)
    "connection_lost",  # connection dropped after the request was sent (not retried; ambiguous)
    "credentials_rejected",  # 401, 403
    "unexpected_status",  # 3xx (redirects are not followed), 404, other 4xx: a configuration problem
    "content_rejected",  # 400, 409, 413, 422
]


class ApiError(ProcessorError):
    """A POST to tix-api did not succeed; ``status`` is the last HTTP status, or None when no answer came."""

    def __init__(
        self,
        reason: ApiFailureReason,
        *,
        status: int | None = None,
        url: str = "",
        attempts: int = 0,
        elapsed_s: float = 0.0,
        detail: str = "",
    ) -> None:
        text = reason if status is None else f"{reason} (HTTP {status})"
        super().__init__(text + (f": {detail}" if detail else ""))
        self.reason: ApiFailureReason = reason
        self.status = status
        self.url = url
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        self.detail = detail

    @property
    def ambiguous(self) -> bool:
        """True when tix-api may have stored the measure although no success answer arrived (I3 (c))."""
        return self.reason in ("read_timeout", "connection_lost")


class ApiUnavailable(ApiError):
    """A failure that concerns the API as a whole: it is unusable for the rest of the run (S6)."""


class ApiRejected(ApiError):
    """tix-api rejected this payload's content (400, 409, 413, 422); the API stays usable (S6)."""


class ResolverUnavailable(ProcessorError):
    """An IP-to-AS backend failed (connection, timeout, SQL error, unreadable file); never leaves the resolver."""


BadFailedResultReason = Literal["unreadable", "not_json", "bad_results", "bad_ip", "bad_estimator"]

#: Why a failed result moved to ``failed-results/rejected/``: a bad file, its content refused by tix-api (S6), or a
#: 5xx for it alone in 3 runs while the API accepted other results (H9).
RejectedReason = Literal[BadFailedResultReason, "content_rejected", "refused_while_api_up"]


class BadFailedResult(ProcessorError):
    """A failed-results file that cannot be re-sent; it is moved to ``failed-results/rejected/`` (S6)."""

    def __init__(self, path: Path, reason: BadFailedResultReason, detail: str = "") -> None:
        super().__init__(f"{path.name}: {reason}" + (f" ({detail})" if detail else ""))
        self.path = path
        self.reason: BadFailedResultReason = reason
        self.detail = detail


class InstallationBusy(ProcessorError):
    """Another live process holds the installation's lease lock; the run returns at once (windows.md §8)."""

    def __init__(self, directory: Path, holder: str = "") -> None:
        super().__init__(f"{directory}: lock held" + (f" by {holder}" if holder else ""))
        self.directory = directory
        self.holder = holder


class LockLost(ProcessorError):
    """The lease lock is no longer ours (taken over, removed, expired); stop before any further side effect."""

    def __init__(self, directory: Path, detail: str) -> None:
        super().__init__(f"{directory}: lock lost ({detail})")
        self.directory = directory
        self.detail = detail


class BadDescription(ProcessorError, ValueError):
    """A calibration ``description.yml`` in neither schema, or with a missing or non-numeric value (tools.md §2.2)."""
