"""
H11 on a real worker and the real RabbitMQ (reliability spec §6): ``process_installation`` messages whose arguments
are of the wrong type -- an integer id, a list, an object -- are invalid ids: a WARNING, the task ends, and the
worker goes on with the next message.
"""

from __future__ import annotations

import pytest

from tests.service.harness import log_lines, wait_until

pytestmark = pytest.mark.service

TASK = "processor.tasks.process_installation"


def test_task_arguments_of_the_wrong_type_end_the_task_with_a_warning(rig):
    directory = rig.base / "7" / "12"
    directory.mkdir(parents=True)
    worker = rig.start_worker("h11")
    hostile = [[str(directory), 7, 12], [["7"], "7", "12"], [str(directory), "7", {"id": "12"}]]

    for args in hostile:
        rig.broker.app.send_task(TASK, args=args)
    rig.broker.app.send_task(TASK, args=[str(directory), "7", "12"])
    wait_until(
        lambda: (
            len(log_lines([worker], "task arguments are not strings")) == 3 and log_lines([worker], "installation done")
        ),
        timeout_s=60,
        what="three skipped tasks and the valid one done",
    )

    assert all("WARNING" in line for line in log_lines([worker], "task arguments are not strings"))
    assert [] == log_lines([worker], "raised unexpected")  # no task failed
    assert 1 == len(log_lines([worker], "installation done"))
