"""
The Celery application: its settings, the beat schedule and the two tasks (service spec §2-§4).

``celery -A processor.tasks worker -B`` (standalone), ``celery -A processor.tasks beat`` and
``celery -A processor.tasks worker``. Importing this module reads and validates the configuration; a bad variable
stops the process with ``configuration error: ...`` and exit status 2 (D14).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import sys

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.schedules import crontab
from celery.signals import (
    after_setup_logger,
    celeryd_after_setup,
    worker_init,
    worker_process_init,
    worker_shutting_down,
)
from celery.utils.log import get_task_logger

from processor.config import MISSING_CREDENTIALS_WARNING, celery_settings, load_config_or_exit
from processor.delivery import Delivery, open_delivery
from processor.installation.cycle import fan_out
from processor.installation.run import run_installation
from processor.logs import EventLogger, event_logger
from processor.preflight import check_environment
from processor.reports.tree import InstallationDir

CONFIG = load_config_or_exit()

app = Celery("processor.tasks")
app.conf.update(celery_settings(CONFIG))
app.conf.beat_schedule = {
    "process_users_data": {
        "task": "processor.tasks.process_users_data",
        "schedule": crontab(minute=f"*/{CONFIG.processing_period_min}"),
        "args": (str(CONFIG.reports_base_path),),
        "options": {"expires": CONFIG.fanout_expiry_s},
    },
}

log = EventLogger(get_task_logger(__name__))
#: For lines outside a task (worker start, pool child start): the task logger would prefix them with ``???[???]``.
worker_log = event_logger("processor.worker")

#: Set by the main process when the worker begins a warm or cold shutdown; the pool children, forked after this
#: import, share it and stop their installation run between two windows (service spec §3.5). A raw shared byte
#: takes no lock, so setting it from a signal handler cannot wait on a child killed while it read the flag.
_shutting_down = multiprocessing.RawValue(ctypes.c_bool, False)

#: This process's delivery resources: made after the fork in each pool child, or at the first use in a process
#: where ``worker_process_init`` does not fire (the solo pool, a task called in the main process).
_delivery: Delivery | None = None


@worker_init.connect
def _check_worker_environment(**_: object) -> None:
    """A worker whose reports tree is unusable exits before consuming any task (service spec §9.2)."""
    problems = check_environment(CONFIG, processor_type="WORKER")
    if problems:
        for problem in problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        sys.exit(2)


@after_setup_logger.connect
def _apply_log_level(**_: object) -> None:
    """
    The processor's own lines log at ``CELERY_LOG_LEVEL`` (default INFO, service spec §1, §8) whatever ``-l`` gave
    Celery, so that a bare ``celery -A processor.tasks worker`` logs one line per window.
    """
    # processor.tasks too: get_task_logger() made celery.task its parent, so the "processor" level misses it.
    for name in ("processor", __name__):
        logging.getLogger(name).setLevel(CONFIG.log_level_number)


@worker_shutting_down.connect
def _request_stop(**_: object) -> None:
    """A shutting-down worker's installation runs stop between two windows instead of using their whole budget."""
    _shutting_down.value = True


def stop_requested() -> bool:
    """True once this worker began to shut down."""
    return bool(_shutting_down.value)


@celeryd_after_setup.connect
def _warn_without_credentials(**_: object) -> None:
    """The missing-credentials warning, once per worker start (D11), once its logging is set up."""
    if not CONFIG.api_credentials_present:
        worker_log.warning(MISSING_CREDENTIALS_WARNING)


@worker_process_init.connect
def _open_process_delivery(**_: object) -> None:
    """Each pool child makes its own HTTP session and AS resolver: none is shared across a fork."""
    global _delivery
    _delivery = open_delivery(CONFIG)
    worker_log.info("delivery opened", pid=os.getpid())


def process_delivery() -> Delivery:
    """The delivery resources of this process, made here at the first use where no pool child made them."""
    global _delivery
    if _delivery is None:
        _delivery = open_delivery(CONFIG)
    return _delivery


@app.task(name="processor.tasks.process_users_data")
def process_users_data(reports_base_path: str) -> int:
    """Fan-out: publish one ``process_installation`` per installation directory, in order; returns how many."""
    # Without a confirm per message (service spec §4): a lost message costs its installation one period, and the
    # next fan-out publishes it again; a round trip per message would make 100 000 of them take minutes.
    with app.connection_for_write(transport_options={"confirm_publish": False}) as connection:
        producer = connection.Producer()
        # The queue is declared once here instead of before every message: a fifth less CPU (bench/fanout.py).
        producer.maybe_declare(app.amqp.queues[app.conf.task_default_queue])

        def publish(installation: InstallationDir) -> None:
            args = (str(installation.path), installation.user_id, installation.installation_id)
            process_installation.apply_async(
                args,
                expires=CONFIG.installation_expiry_s,
                producer=producer,
                declare=(),
                retry=False,  # a broker error ends the fan-out at once (service spec §3.2); the next one retries
            )

        count = fan_out(CONFIG, reports_base_path, publish)
    log.info("fan-out done", installations=count)
    return count


@app.task(name="processor.tasks.process_installation")
def process_installation(installation_dir_path: str, user_id: str, installation_id: str) -> str:
    """Process every complete window of one installation; safe to run twice. Returns the run's outcome."""
    if not all(isinstance(value, str) for value in (installation_dir_path, user_id, installation_id)):
        # H11: a hand-made message may carry an integer or a list; such ids are invalid like any other.
        arguments = repr((installation_dir_path, user_id, installation_id))[:200]
        log.warning("installation skipped, task arguments are not strings", arguments=arguments)
        return "invalid"
    summary = run_installation(
        CONFIG,
        user_id,
        installation_id,
        process_delivery(),
        path_hint=installation_dir_path,
        interrupts=(SoftTimeLimitExceeded,),
        stop_requested=stop_requested,
    )
    counts = summary.counts
    log.info(
        "installation done",
        user=user_id,
        installation=installation_id,
        outcome=summary.outcome,
        windows=len(summary.windows),
        posted=counts.get("posted", 0),
        backed_up=counts.get("backed_up", 0),
        not_analysable=counts.get("not_analysable", 0),
        resent=summary.resent,
    )
    return summary.outcome
