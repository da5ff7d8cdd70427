"""
The service's two jobs on one configuration: the fan-out and one installation's run.

The Celery tasks (:mod:`processor.tasks`) and the one-shot ``python -m processor process`` both call these, so
the operator's command goes through exactly the code path of the service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from processor.analysis import analyse
from processor.config import Config
from processor.delivery.ip_to_as import process_resolver
from processor.delivery.tixapi import ApiClient, warn_if_missing_credentials
from processor.installation.run import RunSummary, run_installation
from processor.reports.tree import InstallationDir, installation_dirs

logger = logging.getLogger(__name__)

_api_client: tuple[int, Config, ApiClient] | None = None


def process_api_client(config: Config) -> ApiClient:
    """
    The tix-api client of this process: one keep-alive session per process (D11), made in the process using it.

    A worker child made by fork gets its own client, never its parent's connection.
    """
    global _api_client
    if _api_client is None or _api_client[0] != os.getpid() or _api_client[1] != config:
        _api_client = (os.getpid(), config, ApiClient.from_config(config))
        warn_if_missing_credentials(_api_client[2])
    return _api_client[2]


def process_installation(
    config: Config,
    user_id: str,
    installation_id: str,
    *,
    path_hint: str | None = None,
    dry_run: bool = False,
    interrupts: tuple[type[BaseException], ...] = (),
) -> RunSummary:
    """Process every complete window of one installation (service spec §3.4); ``dry_run`` changes nothing."""
    return run_installation(
        config.reports_base_path,
        user_id,
        installation_id,
        analyse=analyse,
        api=None if dry_run else process_api_client(config),
        resolver=process_resolver(config),
        lease_s=config.lock_lease_s,
        budget_s=config.task_budget_s,
        dry_run=dry_run,
        path_hint=path_hint,
        interrupts=interrupts,
        usage_estimator=config.usage_estimator,
    )


def fan_out(config: Config, reports_base_path: str | None, publish: Callable[[InstallationDir], None]) -> int:
    """
    Call ``publish`` for every installation directory of the reports tree, in numeric order (service spec §3.2).

    The worker's own ``TIX_REPORTS_BASE_PATH`` is used (S7): a different ``reports_base_path`` argument is only
    warned about. An unreadable base directory is logged as ERROR and gives 0; publishing errors propagate.
    Returns the number of installations published.
    """
    base = config.reports_base_path
    if reports_base_path is not None and Path(reports_base_path) != base:
        logger.warning("fan-out path differs from TIX_REPORTS_BASE_PATH given=%s used=%s", reports_base_path, base)
    count = 0
    try:
        for installation in installation_dirs(base):
            publish(installation)
            count += 1
    except OSError as exc:
        if count:
            raise
        logger.error("cannot list the reports base directory base=%s error=%s", base, exc.strerror or exc)
        return 0
    return count
