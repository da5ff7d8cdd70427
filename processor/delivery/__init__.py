"""Delivery of a result: the payload, tix-api, failed results and the IP-to-AS lookup."""

from __future__ import annotations

from dataclasses import dataclass

from processor.config import Config
from processor.delivery.ip_to_as import Resolver, resolver_from_config
from processor.delivery.tixapi import ApiClient


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one process delivers results with: its tix-api client (one session) and its AS resolver (one cache)."""

    api: ApiClient
    resolver: Resolver

    def close(self) -> None:
        """Close the keep-alive connection to tix-api and the resolver's database connection."""
        self.api.close()
        self.resolver.close()


def open_delivery(config: Config) -> Delivery:
    """
    Make the delivery resources of this process from ``config``.

    Call it once per process, in the process that uses them (a Celery pool child's ``worker_process_init``,
    or the one-shot command), never before a fork: a session or a database connection must not be shared
    between processes.
    """
    return Delivery(api=ApiClient.from_config(config), resolver=resolver_from_config(config))
