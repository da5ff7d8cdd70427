"""What one installation run did, as the task, the one-shot cycle and its exit status read it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from processor.installation.budget import Budget
from processor.installation.window import WindowRecord

#: ``failed``: an unexpected exception, recorded by the one-shot cycle that went on (H7).
RunOutcome = Literal["done", "busy", "invalid", "lock_lost", "io_error", "write_failed", "interrupted", "failed"]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The outcome of a run; ``outcome`` is ``done`` when the run ended normally."""

    user_id: str
    installation_id: str
    outcome: RunOutcome
    windows: tuple[WindowRecord, ...] = ()
    resent: int = 0
    rejected: int = 0
    invalid_reports: int = 0
    discarded_gap: int = 0
    discarded_ip_change: int = 0
    recovered: int = 0  #: files of an interrupted disposal finished by the recovery
    budget_exhausted: bool = False
    dry_run: bool = False
    detail: str = ""
    api_failed: bool = False  #: tix-api became unusable during the run: results stay in failed-results (H8)

    @classmethod
    def of(
        cls, user_id: str, installation_id: str, outcome: RunOutcome, windows: list[WindowRecord],
        counts: Counter[str], budget: Budget, *, dry_run: bool = False, detail: str = "", api_failed: bool = False,
    ) -> RunSummary:  # fmt: skip
        """The summary of a run that counted ``resent``, ``rejected``, ``invalid_reports``, … in ``counts``."""
        return cls(
            user_id, installation_id, outcome, tuple(windows), counts["resent"], counts["rejected"],
            counts["invalid_reports"], counts["discarded_gap"], counts["discarded_ip_change"], counts["recovered"],
            budget.exhausted, dry_run, detail, api_failed,
        )  # fmt: skip

    @property
    def counts(self) -> dict[str, int]:
        """Windows per outcome, e.g. ``{"posted": 3, "not_analysable": 1}``."""
        return dict(Counter(window.outcome for window in self.windows))
