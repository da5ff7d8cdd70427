"""
The local RabbitMQ as the service tests and the benchmarks use it: its address, ``rabbitmqctl``, virtual hosts.

Other people run tests on the same broker, so every user of this module works in a virtual host of its own,
created here with guest's permissions and deleted by its owner; the default vhost ``/`` is never used. Nothing is
imported from ``processor`` (the benchmarks import :mod:`processor.tasks` later, with their own environment).
"""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import quote

#: The broker of the tests and benchmarks: the local RabbitMQ with its default account.
BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
BROKER_USER = "guest"
BROKER_PASSWORD = "guest"


def rabbitmqctl(*args: str, timeout_s: float = 120.0) -> str:
    """Run ``rabbitmqctl <args>`` and return its standard output; raise ``RuntimeError`` on a non-zero exit."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def broker_url(vhost: str) -> str:
    """``amqp://guest:guest@127.0.0.1:5672/<vhost>`` (the vhost percent-encoded)."""
    return f"amqp://{BROKER_USER}:{BROKER_PASSWORD}@{BROKER_HOST}:{BROKER_PORT}/{quote(vhost, safe='')}"


def create_vhost(name: str) -> None:
    """Add the virtual host ``name`` with full rights for guest; it is deleted again if the rights cannot be set."""
    if name == "/":
        raise ValueError("the tests and benchmarks never use the default vhost")
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, BROKER_USER, ".*", ".*", ".*")
    except BaseException:
        delete_vhost(name)
        raise


def delete_vhost(name: str) -> None:
    """Delete the virtual host ``name`` with its queues and messages."""
    rabbitmqctl("delete_vhost", name)


def processor_broker_env(vhost: str) -> dict[str, str]:
    """The ``TIX_RABBITMQ_*`` variables that point a worker or beat at ``vhost`` of the local broker."""
    return {
        "TIX_RABBITMQ_HOST": BROKER_HOST,
        "TIX_RABBITMQ_PORT": str(BROKER_PORT),
        "TIX_RABBITMQ_USER": BROKER_USER,
        "TIX_RABBITMQ_PASS": BROKER_PASSWORD,
        "TIX_RABBITMQ_VHOST": vhost,
    }


def declare_passive(vhost: str, queue: str, *, connect_timeout_s: float) -> Any:
    """
    The broker's answer to a passive declare of ``queue`` in ``vhost`` (``message_count``: ready messages,
    ``consumer_count``); raises when the queue does not exist (``404 NOT_FOUND``) or the broker is away.
    """
    from kombu import Connection

    with Connection(broker_url(vhost), connect_timeout=connect_timeout_s) as connection:
        channel = connection.channel()
        try:
            return channel.queue_declare(queue=queue, passive=True)
        finally:
            channel.close()
