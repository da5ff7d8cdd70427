"""
How the service uses Celery and RabbitMQ beyond their defaults, measured by ``bench/``.

* :class:`FanOutPublisher`: the fan-out publishes 100 000 installation messages in about 25 s instead of about
  270 s, with publisher confirms waited for in batches.
* :class:`EventsWithoutConfirmsConsumer`: monitoring events do not wait for publisher confirms, and the task
  events go out in batches, at most every :data:`EVENT_FLUSH_INTERVAL_S`, instead of 1-3 publishes per task.
* :class:`PromptRecyclingTaskPool`: a recycled pool child is replaced at once, not after a 5-second timer.

:mod:`processor.tasks` names these in its settings; nothing here reads the configuration.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from amqp import Message
from amqp.exceptions import MessageNacked
from celery import bootsteps
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool
from celery.utils.log import get_logger
from celery.utils.saferepr import saferepr
from celery.worker.consumer import Consumer
from kombu.utils.uuid import uuid

from processor.reports.tree import InstallationDir

logger = get_logger(__name__)

#: Longest time a task event waits in the worker before it is published, seconds. Celery publishes the buffered
#: task events (``task-received``, ``task-started``, ``task-succeeded``) at the end of every turn of its event loop:
#: 1-3 publishes per task, a third of the worker main process's CPU in ``bench/e2e.py``. Published at most this
#: often, one ``task.multi`` message carries the events of tens of tasks; a monitor such as Flower shows a task's
#: state up to this much later, with the event's own timestamp.
EVENT_FLUSH_INTERVAL_S = 0.25

#: Task events the worker buffers at most; the one that reaches this many publishes them all at once. Bounds the
#: buffer and one ``task.multi`` message (about 0.4 KiB per event) when more than 800 events/s (about 270 tasks/s)
#: would fill it before the interval ends. Celery's default, 24, would cut the batches to 8 tasks.
EVENT_BUFFER_LIMIT = 200


class EventsWithoutConfirmsConsumer(Consumer):  # type: ignore[misc]
    """
    The worker's consumer, whose monitoring events are published in batches without waiting for confirms.

    * **No confirms.** Celery opens the connection of the event dispatcher (``task-received``, ``task-started``,
      ``task-succeeded``, heartbeats; ``worker_send_task_events``) through :meth:`connection_for_write` alone. With
      ``confirm_publish`` from ``broker_transport_options`` every flush of events blocked the worker's event loop
      for a round trip to RabbitMQ while the pool children waited for their next message. Publisher confirms are
      kept for what must not be lost silently: the beat's and the fan-out's task messages (service spec §4). An
      event lost with a broken connection only leaves a gap in a monitor such as Flower.
    * **Batches.** A buffered task event schedules one flush :data:`EVENT_FLUSH_INTERVAL_S` later on the event
      loop's timer (Celery's own consumer flushes on the next turn of the loop); :data:`EVENT_BUFFER_LIMIT` events
      flush at once. What is still buffered is published when the consumer stops, shuts down or reconnects
      (:class:`_FlushTaskEvents`). Worker events (online, heartbeat, offline) are not buffered and go out at once.
    """

    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        default_steps = (*Consumer.Blueprint.default_steps, "processor.celery_ext:_FlushTaskEvents")

    #: The timer entry of the scheduled flush, None when none is scheduled.
    _flush_entry: Any = None

    def connection_for_write(self, url: str | None = None, heartbeat: float | None = None) -> Any:
        connection = self.app.connection_for_write(
            url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}
        )
        return self.ensure_connected(connection)

    def on_send_event_buffered(self) -> None:
        """Called by the dispatcher for every buffered task event: schedules a flush unless one is scheduled."""
        entry = self._flush_entry
        # A reconnection cancels the timer entries of the failed connection, this one with them.
        if self.hub and (entry is None or entry.canceled):
            self._flush_entry = self.hub.call_later(EVENT_FLUSH_INTERVAL_S, self._flush_events)

    def _flush_events(self) -> None:
        self._flush_entry = None
        super()._flush_events()


class _FlushTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]
    """
    Sets the task-event buffer's limit, and publishes the buffered task events before the dispatcher goes away.

    Celery's ``Events`` step closes the dispatcher (shutdown, reconnection) without publishing its buffered task
    events; with :data:`EVENT_FLUSH_INTERVAL_S` up to that much of them would be lost. This step starts after
    ``Events`` and ``Heart``, so it stops before them: the last task events go out before ``worker-offline``. The
    consumer's shutdown comes after the pool's, so the events of tasks that finished during a warm shutdown go out
    too. A publish that fails keeps the events in the dispatcher's offline buffer, which ``Events`` carries over to
    the next connection.
    """

    requires = ("celery.worker.consumer.heart:Heart",)

    def start(self, c: Any) -> None:
        if c.event_dispatcher is not None:
            c.event_dispatcher.buffer_limit = EVENT_BUFFER_LIMIT

    def stop(self, c: Any) -> None:
        self._flush(c)

    def shutdown(self, c: Any) -> None:
        self._flush(c)

    def terminate(self, c: Any) -> None:
        self._flush(c)

    def _flush(self, c: Any) -> None:
        try:
            c._flush_events()
        except Exception as exc:  # the shutdown of the later steps (Celery propagates) must not depend on events
            logger.warning("task events not published at stop error=%r", exc)


#: Pause between two looks for a recycled child that closed its pipe but cannot be reaped yet, seconds.
RECYCLE_POLL_S = 0.01

#: Looks before leaving the replacement to the pool's own 5-second maintenance timer.
RECYCLE_POLLS = 100


class _PromptRecyclingAsynPool(AsynPool):  # type: ignore[misc]
    """
    Celery's prefork pool, which replaces a child that ended (``worker_max_tasks_per_child``) without delay.

    The pool learns that a child ended when the child's sentinel pipe closes, and then reaps it and forks its
    replacement. The pipe closes slightly before the child can be reaped; when the pool looks in between, it
    finds no ended child and leaves it to a maintenance timer that runs every 5 s, while the message it had
    already reserved for that slot waits (seen as a 2-5 s stall every few recycles in ``bench/e2e.py``). Here
    the pool looks again every 10 ms until the child is reaped and replaced.
    """

    def _event_process_exit(self, hub: Any, proc: Any) -> None:
        super()._event_process_exit(hub, proc)
        self._replace_when_reaped(hub, proc, RECYCLE_POLLS)

    def _replace_when_reaped(self, hub: Any, proc: Any, polls_left: int) -> None:
        if polls_left > 0 and any(worker is proc for worker in self._pool):
            hub.call_later(RECYCLE_POLL_S, self._look_again, hub, proc, polls_left - 1)

    def _look_again(self, hub: Any, proc: Any, polls_left: int) -> None:
        self.maintain_pool()
        self._replace_when_reaped(hub, proc, polls_left)


class PromptRecyclingTaskPool(TaskPool):  # type: ignore[misc]
    """The prefork pool (``worker_pool``; also chosen by ``--pool=prefork``) with prompt child replacement."""

    Pool = _PromptRecyclingAsynPool


#: Messages the fan-out publishes between two waits for RabbitMQ's publisher confirms.
CONFIRM_BATCH = 1000

#: Longest wait for the confirms of one batch, seconds; past it the fan-out fails (a publishing error).
CONFIRM_TIMEOUT_S = 60.0


class FanOutPublisher:
    """
    Publishes the fan-out's ``process_installation`` messages fast, each identical to what ``apply_async`` sends.

    * **Confirms in batches.** One connection of its own, whose channel is put in confirm mode without Celery's
      per-message wait; :meth:`wait` blocks every :data:`CONFIRM_BATCH` publishes until RabbitMQ confirmed them all
      and raises on a negative confirm, a timeout or a lost connection. The fan-out still learns when a message
      was not taken (``confirm_publish``, service spec §4), at a fraction of the cost of one round trip each.
    * **Built once.** The first installation goes through Celery's own ``apply_async``; its message is kept as the
      template, and every later one is a copy that differs only where ``apply_async`` would differ: task id (and
      correlation id, and root id when it equals the id), arguments and their ``argsrepr``, and the expiry time.
    * **Sent events in batches.** The ``task-sent`` events (``task_send_sent_event``) of the copies are buffered by
      Celery's event dispatcher and published as ``task.multi`` lists, which Celery's event receivers unpack.
    """

    def __init__(self, connection: Any, task: Any, *, expires_s: float) -> None:
        app = task.app
        self.app = app
        self.task = task
        self.expires_s = expires_s
        self.connection = connection
        self.channel = connection.default_channel
        self.producer = app.amqp.Producer(self.channel, auto_declare=False)
        self.published = 0
        self.confirmed = 0
        self.single: set[int] = set()
        self.template: Any = None
        self.timezone = app.timezone
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self._basic_publish = self.channel.basic_publish
        self.channel.basic_publish = self._publish_counted  # Celery's first publish goes through the counter too
        self.events = app.events.Dispatcher(
            connection,
            channel=self.channel,
            enabled=bool(app.conf.task_send_sent_event),
            buffer_group=["task"],
            buffer_limit=CONFIRM_BATCH,
        )

    # -- confirms ---------------------------------------------------------------------------------------------

    def _publish_counted(self, message: Any, exchange: str = "", routing_key: str = "", **kwargs: Any) -> Any:
        result = self._basic_publish(message, exchange=exchange, routing_key=routing_key, **kwargs)
        self.published += 1
        if self.template is None and exchange == "" and "task" in (message.headers or {}):
            _, kwargs, embed = json.loads(message.body)
            self.template = (message.headers, message.properties, kwargs, embed, routing_key)
        if self.published - self.confirmed >= CONFIRM_BATCH:
            self.wait()
        return result

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self.confirmed = max(self.confirmed, delivery_tag)
        else:
            self.single.add(delivery_tag)
        while self.confirmed + 1 in self.single:
            self.confirmed += 1
        self.single = {tag for tag in self.single if tag > self.confirmed}

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        raise MessageNacked(f"RabbitMQ refused message {delivery_tag} of the fan-out")

    def wait(self) -> None:
        """Block until every message published so far is confirmed."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self.confirmed < self.published:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.published - self.confirmed} fan-out messages not confirmed")
            self.connection.drain_events(timeout=left)

    # -- messages ---------------------------------------------------------------------------------------------

    def publish(self, installation: InstallationDir) -> None:
        args = (str(installation.path), installation.user_id, installation.installation_id)
        if self.template is None:
            self.task.apply_async(
                args,
                expires=self.expires_s,
                producer=self.producer,
                retry=False,  # a broker error raises at once: a silent re-publish would bypass the confirms
            )
            return
        template_headers, template_properties, kwargs, embed, routing_key = self.template
        headers = dict(template_headers)
        task_id = uuid()
        if headers.get("root_id") == headers["id"]:
            headers["root_id"] = task_id
        headers["id"] = task_id
        headers["argsrepr"] = _argsrepr(self.app, args)
        now = datetime.now(UTC).astimezone(self.timezone)  # what app.now() gives, without its overhead
        headers["expires"] = (now + timedelta(seconds=self.expires_s)).isoformat()
        body = json.dumps([list(args), kwargs, embed])
        properties = dict(template_properties, application_headers=headers, correlation_id=task_id)
        self._publish_counted(Message(body, **properties), exchange="", routing_key=routing_key)
        self.events.send(
            "task-sent",
            uuid=task_id,
            root_id=headers.get("root_id"),
            parent_id=headers.get("parent_id"),
            name=headers["task"],
            args=headers["argsrepr"],
            kwargs=headers.get("kwargsrepr"),
            retries=headers.get("retries", 0),
            eta=headers.get("eta"),
            expires=headers["expires"],
            queue=routing_key,
            exchange="",
            routing_key=routing_key,
        )

    def finish(self) -> None:
        """Publish the buffered events and wait for the last confirms."""
        self.events.flush()
        self.wait()


def _argsrepr(app: Any, args: tuple[str, ...]) -> str:
    """``saferepr(args)`` as ``apply_async`` writes it in the ``argsrepr`` header, fast for the usual arguments."""
    maxsize = app.amqp.argsrepr_maxsize
    text = "(" + ", ".join(f"'{arg}'" for arg in args) + ")"
    if len(text) < maxsize and not any("'" in arg for arg in args):
        return text  # saferepr quotes each str as is: only a quote is escaped, only a long text truncated
    return str(saferepr(args, maxsize, maxlevels=app.conf.task_repr_maxlevels))
