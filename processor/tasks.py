"""
The Celery application: beat schedule, the fan-out task and the installation task.

``celery -A processor.tasks worker -B`` (standalone), ``celery -A processor.tasks beat`` and
``celery -A processor.tasks worker``. Importing this module reads and validates the configuration; a bad variable
stops the process with ``configuration error: ...`` and exit status 2 (D14).
"""

from __future__ import annotations

import sys

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.schedules import crontab
from celery.signals import worker_init
from celery.utils.log import get_task_logger

from processor import service
from processor.celery_ext import FanOutPublisher
from processor.config import celery_settings, load_config_or_exit
from processor.preflight import check_environment

CONFIG = load_config_or_exit()


app = Celery("processor.tasks")
app.conf.update(celery_settings(CONFIG))
app.conf.worker_consumer = "processor.celery_ext:EventsWithoutConfirmsConsumer"
app.conf.worker_pool = "processor.celery_ext:PromptRecyclingTaskPool"
app.conf.beat_schedule = {
    "process_users_data": {
        "task": "processor.tasks.process_users_data",
        "schedule": crontab(minute=f"*/{CONFIG.processing_period_min}"),
        "args": (str(CONFIG.reports_base_path),),
        "options": {"expires": CONFIG.fanout_expiry_s},
    },
}

logger = get_task_logger(__name__)


@worker_init.connect
def _check_worker_environment(**_: object) -> None:
    """A worker whose reports tree is unusable exits before consuming any task (service spec §9.2)."""
    problems = check_environment(CONFIG, processor_type="WORKER")
    if problems:
        for problem in problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        sys.exit(2)
    service.process_api_client(CONFIG)  # logs the missing-credentials warning once per worker start (D11)


@app.task(name="processor.tasks.process_users_data")
def process_users_data(reports_base_path: str) -> int:
    """Fan-out: enqueue one ``process_installation`` per installation directory; returns how many."""
    # A connection of its own, without per-message confirms: the publisher confirms in batches instead.
    with app.connection_for_write(transport_options={"confirm_publish": False}) as connection:
        publisher = FanOutPublisher(connection, process_installation, expires_s=CONFIG.installation_expiry_s)
        count = service.fan_out(CONFIG, reports_base_path, publisher.publish)
        publisher.finish()
    logger.info("fan-out done installations=%s", count)
    return count


@app.task(name="processor.tasks.process_installation")
def process_installation(installation_dir_path: str, user_id: str, installation_id: str) -> str:
    """Process every complete window of one installation; safe to run twice. Returns the run's outcome."""
    summary = service.process_installation(
        CONFIG,
        user_id,
        installation_id,
        path_hint=installation_dir_path,
        interrupts=(SoftTimeLimitExceeded,),
    )
    logger.info(
        "installation done user=%s installation=%s outcome=%s windows=%s resent=%s",
        user_id,
        installation_id,
        summary.outcome,
        summary.counts,
        summary.resent,
    )
    return summary.outcome
