"""
The service's own log level on a real worker (service spec §1 ``CELERY_LOG_LEVEL``, §8): the README's bare
``celery -A processor.tasks worker``, without ``--loglevel``, logs a line per window, and each start-up warning
comes once per worker start, not once per pool child.
"""

from __future__ import annotations

import pytest

from processor.config import MISSING_CREDENTIALS_WARNING
from processor_tools.simulate import simulate_tree
from tests.service.harness import log_lines, wait_until

pytestmark = pytest.mark.service

#: The start-up warnings of the configuration below, each expected once (service spec §1, §5.3).
WARNINGS = (
    MISSING_CREDENTIALS_WARNING,
    "TIX_API_SSL: 'false' still means HTTPS",
    "TIX_PROCESSING_PERIOD: 7 does not divide 60",
)


def test_a_bare_worker_logs_each_window_at_info_and_each_start_warning_once(rig):
    """No ``--loglevel`` and no ``CELERY_LOG_LEVEL``: Celery's own default is WARNING, the processor's is INFO."""
    simulate_tree(rig.base, installations=4, minutes=25, seed=1501)
    expected = rig.expectations()
    worker = rig.start_worker(
        "bare",
        concurrency=2,
        loglevel=None,
        ready=False,  # Celery's "ready." line is INFO of Celery's own, not logged at its default level
        CELERY_LOG_LEVEL="",
        TIX_API_USER="",
        TIX_API_PASSWORD="",
        TIX_API_SSL="false",
        TIX_PROCESSING_PERIOD="7",
    )
    wait_until(lambda: len(log_lines([worker], "delivery opened pid=")) >= 2, timeout_s=60, what="two pool children")

    rig.broker.fan_out(rig.base)
    done = wait_until(
        lambda: len(lines := log_lines([worker], "installation done user=")) >= 4 and lines,
        timeout_s=90,
        what=lambda: f"four installations done:\n{worker.log()[-3000:]}",
    )
    windows = log_lines([worker], "window done user=")
    children = {line.split("INFO/")[1].split("]")[0] for line in windows + done}

    assert sum(len(e.windows) for e in expected.values()) == len(windows)
    assert all(" INFO/ForkPoolWorker-" in line and "outcome=backed_up" in line for line in windows)
    assert 2 == len(children), children  # both children ran tasks: a warning per child would show twice
    assert [1, 1, 1] == [len(log_lines([worker], warning)) for warning in WARNINGS], worker.log()[-3000:]
    assert "] ???[???]: " not in worker.log()  # start-up lines outside a task carry no empty task name


def test_celery_log_level_sets_the_processor_s_level_whatever_celery_s_own_is(rig):
    """``CELERY_LOG_LEVEL=WARNING`` with ``--loglevel=INFO``: Celery's INFO lines, none of the processor's."""
    simulate_tree(rig.base, installations=1, minutes=25, seed=1502)
    worker = rig.start_worker("quiet", loglevel="INFO", CELERY_LOG_LEVEL="WARNING")

    rig.broker.fan_out(rig.base)
    wait_until(
        lambda: rig.api.accepted() and rig.idle(),
        timeout_s=90,
        what=lambda: f"the window posted:\n{worker.log()[-3000:]}",
    )

    assert " ready." in worker.log()
    assert [] == log_lines([worker], "window done") + log_lines([worker], "delivery opened")
    assert log_lines([worker], "Task processor.tasks.process_installation[")
