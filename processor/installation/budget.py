"""The time budget of one installation run (service spec §3.5), which a worker's shutdown also ends."""

from __future__ import annotations

import time
from collections.abc import Callable

from processor.logs import EventLogger


class Budget:
    """
    The run's time budget (service spec §3.5): used once ``budget_s`` seconds have passed since it was made, or
    as soon as ``stop_requested()`` is true (a worker shutting down stops its runs between two windows).
    """

    def __init__(self, budget_s: float, run_log: EventLogger, stop_requested: Callable[[], bool] | None = None) -> None:
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.exhausted = False
        self.log = run_log
        self.stop_requested = stop_requested

    def used(self) -> bool:
        if not self.exhausted and self.stop_requested is not None and self.stop_requested():
            self.exhausted = True
            self.log.info("installation run stopped for shutdown")
        if not self.exhausted and time.monotonic() - self.started >= self.budget_s:
            self.exhausted = True
            self.log.info("installation budget used", budget_s=self.budget_s)
        return self.exhausted
