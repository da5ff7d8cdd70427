"""The fan-out over the reports tree (service spec §3.2), and one processing cycle in this process (``process``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from processor.config import Config
from processor.delivery import open_delivery
from processor.installation.dry_run import dry_run_installation
from processor.installation.run import run_installation
from processor.installation.summary import RunSummary
from processor.logs import event_logger
from processor.reports.tree import InstallationDir, installation_dirs

log = event_logger(__name__)


def fan_out(config: Config, reports_base_path: str | None, publish: Callable[[InstallationDir], None]) -> int:
    """
    Call ``publish`` for every installation directory of the reports tree, in numeric order (service spec §3.2).

    The worker's own ``TIX_REPORTS_BASE_PATH`` is used (S7): a different ``reports_base_path`` argument is only
    warned about. An unreadable base directory is logged as ERROR and gives 0; publishing errors propagate.
    Returns the number of installations published.
    """
    base = config.reports_base_path
    if reports_base_path is not None and Path(reports_base_path) != base:
        log.warning("fan-out path differs from TIX_REPORTS_BASE_PATH", given=reports_base_path, used=base)
    count = 0
    try:
        for installation in installation_dirs(base):
            publish(installation)
            count += 1
    except OSError as exc:
        if count:
            raise
        log.error("cannot list the reports base directory", base=base, error=exc.strerror or exc)
        return 0
    return count


def process_tree(config: Config, *, dry_run: bool, done: Callable[[RunSummary], None]) -> int:
    """
    One processing cycle over every installation in this process, through the code of the Celery task.

    Each installation gets :func:`run_installation` (with ``dry_run``: :func:`dry_run_installation`, which
    changes nothing), and ``done`` its summary. An unexpected exception in one installation's run (logged with
    its traceback by the run) is a run with outcome ``failed``, and the cycle goes on with the next one (H7).
    Returns the number of installations; raises ``OSError`` when the reports base cannot be listed (H8).
    """
    delivery = open_delivery(config)
    try:
        count = 0
        for installation in installation_dirs(config.reports_base_path):
            count += 1
            user_id, installation_id = installation.user_id, installation.installation_id
            try:
                if dry_run:
                    summary = dry_run_installation(config, user_id, installation_id, delivery.resolver)
                else:
                    summary = run_installation(config, user_id, installation_id, delivery)
            except Exception as exc:  # H7: one installation's bug must not abandon every later installation
                log.error("installation run failed, the cycle goes on", user=user_id, installation=installation_id,
                          error=f"{type(exc).__name__}: {exc}")  # fmt: skip
                summary = RunSummary(user_id, installation_id, "failed", detail=f"{type(exc).__name__}: {exc}")
            done(summary)
        return count
    finally:
        delivery.close()
