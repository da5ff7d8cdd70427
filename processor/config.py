"""The service configuration: every environment variable of service.md §1, read once into a frozen object."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from processor.errors import ConfigError

logger = logging.getLogger(__name__)

ProcessorType = Literal["STANDALONE", "BEAT", "WORKER"]
IpToAsBackend = Literal["none", "mysql", "pfx2as"]
UsageEstimator = Literal["v2", "queueing"]

PROCESSOR_TYPES: tuple[ProcessorType, ...] = ("STANDALONE", "BEAT", "WORKER")
IPTOAS_BACKENDS: tuple[IpToAsBackend, ...] = ("none", "mysql", "pfx2as")
#: Values of TIX_USAGE_ESTIMATOR: the original rule (``v2``) or the queueing share (usage-queueing spec).
USAGE_ESTIMATORS: tuple[UsageEstimator, ...] = ("v2", "queueing")

#: Accepted log levels, with the aliases of service.md §1 mapped to their standard names.
LOG_LEVELS = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
}

#: Values of TIX_API_SSL that look like "off" but still mean HTTPS (S12 warns about them).
FALSE_LOOKING = frozenset({"false", "0", "no", "off"})

#: Values of a yes/no variable (TIX_TASK_EVENTS, any case) that mean yes; the FALSE_LOOKING ones mean no.
TRUE_LOOKING = frozenset({"1", "true", "yes", "on"})

#: Variables through which Celery replaces the broker URL built from TIX_RABBITMQ_* (the original's way to a vhost).
BROKER_OVERRIDES = ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL")

#: Name of the beat schedule file inside CELERY_BEAT_SCHEDULE_DIR [Original].
BEAT_SCHEDULE_FILE = "celerybeat-scheduler"

#: Reports base path when ``TIX_REPORTS_BASE_PATH`` is unset or empty (service spec §1).
DEFAULT_REPORTS_BASE = Path("/tmp/reports")


def reports_base_path(env: Mapping[str, str]) -> Path:
    """``TIX_REPORTS_BASE_PATH`` of ``env``, or :data:`DEFAULT_REPORTS_BASE` when unset or empty; never fails."""
    return Path(env.get("TIX_REPORTS_BASE_PATH") or DEFAULT_REPORTS_BASE)


EXIT_USAGE = 2  #: At least one configuration error; nothing was started (D14).

#: Printed once per worker start when the API credentials are missing (D11).
MISSING_CREDENTIALS_WARNING = "TIX_API_USER or TIX_API_PASSWORD is not set: results are kept in failed-results"


class EnvReader:
    """Reads typed values from an environment mapping, collecting one problem per bad variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def raw(self, name: str) -> str | None:
        """The variable's value, or None when it is unset."""
        return self.env.get(name)

    def text(self, name: str, *, default: str, non_empty: bool = False) -> str:
        """A string; unset gives ``default``, an empty value is kept unless ``non_empty``."""
        value = self.env.get(name)
        if value is None:
            return default
        if non_empty and not value.strip():
            self.problems.append(f"{name}: must not be empty")
            return default
        return value

    def integer(self, name: str, *, default: int | None, low: int | None = None, high: int | None = None) -> int | None:
        """An integer in [low, high]; unset or empty gives ``default``."""
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        try:
            number = int(value.strip(), 10)
        except ValueError:
            self.problems.append(f"{name}: not an integer: {value!r}")
            return default
        if (low is not None and number < low) or (high is not None and number > high):
            self.problems.append(f"{name}: must be {_range_text(low, high)}, got {number}")
            return default
        return number

    def number(self, name: str, *, default: float, high: float) -> float:
        """A finite number in (0, high]; unset or empty gives ``default``."""
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        try:
            number = float(value.strip())
        except ValueError:
            self.problems.append(f"{name}: not a number: {value!r}")
            return default
        if not math.isfinite(number) or number <= 0 or number > high:
            self.problems.append(f"{name}: must be a number > 0 and <= {high:g}, got {value.strip()}")
            return default
        return number

    def flag(self, name: str) -> bool:
        """A yes/no switch: 1, true, yes, on or 0, false, no, off in any case; unset or empty is off."""
        raw = self.env.get(name) or ""
        value = raw.strip().lower()
        if value and value not in TRUE_LOOKING | FALSE_LOOKING:
            self.problems.append(f"{name}: must be one of 1, true, yes, on, 0, false, no, off, got {raw!r}")
        return value in TRUE_LOOKING

    def choice(self, name: str, *, default: str, choices: Sequence[str], upper: bool) -> str:
        """One of ``choices``, compared case-insensitively; unset or empty gives ``default``."""
        value = self.env.get(name)
        if value is None or not value.strip():
            return default
        normal = value.strip().upper() if upper else value.strip().lower()
        if normal not in choices:
            self.problems.append(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
            return default
        return normal


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer between {low} and {high}"
    if low is not None:
        return f"an integer >= {low}"
    return f"an integer <= {high}"


def _api_host(read: EnvReader) -> str:
    """TIX_API_HOST without scheme, path or port; an IPv6 literal may come with or without brackets."""
    name = "TIX_API_HOST"
    value = read.text(name, default="localhost", non_empty=True).strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            what = "a scheme" if "://" in value else "a port"
            read.problems.append(f"{name}: must be a host name or address without {what}, got {value!r}")
            return "localhost"
        return value
    for bad, what in (("/", "a path"), ("@", "user information"), ("?", "a query"), ("#", "a fragment")):
        if bad in value:
            read.problems.append(f"{name}: must be a host name or address without {what}, got {value!r}")
            return "localhost"
    if any(c.isspace() for c in value):
        read.problems.append(f"{name}: must not contain white space, got {value!r}")
        return "localhost"
    return value


@dataclass(frozen=True, slots=True)
class Config:
    """
    Every setting of service.md §1, validated.

    Durations carry their unit as a suffix; secrets are excluded from ``repr`` and never logged.
    """

    processor_type: ProcessorType
    reports_base_path: Path
    processing_period_min: int
    rabbitmq_user: str
    rabbitmq_password: str = field(repr=False)
    rabbitmq_host: str
    rabbitmq_port: int
    #: Broker virtual host (an addition: the original always used ``/``; a shared broker wants its own).
    rabbitmq_vhost: str
    api_ssl: bool
    api_host: str
    api_port: int | None
    api_user: str | None
    api_password: str | None = field(repr=False)
    api_timeout_s: float
    lock_lease_s: int
    task_budget_s: int
    worker_concurrency: int | None
    iptoas_backend: IpToAsBackend
    iptoas_db_host: str
    iptoas_db_port: int
    iptoas_db_user: str
    iptoas_db_password: str = field(repr=False)
    iptoas_db_name: str
    iptoas_timeout_s: float
    iptoas_pfx2as_file: Path | None
    iptoas_asnames_file: Path | None
    iptoas_cache_ttl_s: int
    iptoas_cache_size: int
    beat_schedule_dir: Path
    log_level: str
    #: What fills the payload's ``upUsage``/``downUsage`` (``TIX_USAGE_ESTIMATOR``); both are always posted too.
    usage_estimator: UsageEstimator = "v2"
    #: CA bundle (file or directory) that tix-api's certificate is verified with: ``REQUESTS_CA_BUNDLE``, else
    #: ``CURL_CA_BUNDLE`` (the variables of ``requests``); None for the default of ``requests`` (certifi).
    api_ca_bundle: str | None = None
    #: Celery task events (``TIX_TASK_EVENTS``), off by default like Celery's; a worker's ``-E`` turns them on too.
    task_events: bool = False
    #: Configuration warnings, each "<VARIABLE>: <text>", to be logged at WARNING once at start.
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """
        Read and validate every variable of service.md §1 from ``env``.

        Only the checks that need no file system are done here; :func:`check_environment` adds the
        mode-dependent directory and file checks.

        Raises
        ------
        ConfigError
            With one problem per bad variable, each reading ``"<VARIABLE>: <problem>"``; all are collected.
        """
        config, problems = cls.read_env(env)
        if problems:
            raise ConfigError(problems)
        return config

    @classmethod
    def read_env(cls, env: Mapping[str, str]) -> tuple[Config, list[str]]:
        """The configuration with every bad value replaced by its default, and the problems found."""
        read = EnvReader(env)

        raw_type = read.raw("PROCESSOR_TYPE")
        processor_type: ProcessorType = "STANDALONE"
        if raw_type is not None and raw_type.strip():
            if raw_type.strip().upper() in PROCESSOR_TYPES:  # S12: case-insensitive
                processor_type = cast(ProcessorType, raw_type.strip().upper())
            else:
                read.problems.append(
                    f"PROCESSOR_TYPE: unknown processor type {raw_type!r} (expected STANDALONE, BEAT or WORKER)"
                )

        period = cast(int, read.integer("TIX_PROCESSING_PERIOD", default=10, low=1, high=60))
        if 60 % period:
            read.warnings.append(
                f"TIX_PROCESSING_PERIOD: {period} does not divide 60: the last interval of each hour is shorter"
            )

        ssl_raw = read.raw("TIX_API_SSL")
        api_ssl = bool(ssl_raw)  # D7: unset or empty means HTTP, anything else HTTPS
        if ssl_raw and ssl_raw.strip().lower() in FALSE_LOOKING:
            read.warnings.append(f"TIX_API_SSL: {ssl_raw!r} still means HTTPS: any non-empty value enables HTTPS")
        for name in BROKER_OVERRIDES:  # Celery 5 takes these from the environment before its own settings
            if read.raw(name):
                read.warnings.append(f"{name}: set: Celery connects to it and ignores TIX_RABBITMQ_*; unset it")

        backend = cast(
            IpToAsBackend, read.choice("TIX_IPTOAS_BACKEND", default="none", choices=IPTOAS_BACKENDS, upper=False)
        )
        pfx2as_raw = read.raw("TIX_IPTOAS_PFX2AS_FILE")
        pfx2as_file = Path(pfx2as_raw) if pfx2as_raw else None
        if backend == "pfx2as" and pfx2as_file is None:
            read.problems.append("TIX_IPTOAS_PFX2AS_FILE: required when TIX_IPTOAS_BACKEND is pfx2as")
        asnames_raw = read.raw("TIX_IPTOAS_ASNAMES_FILE")

        db_host = read.raw("TIX_IPTOAS_DB_HOST")
        if db_host is None:
            db_host = "mysql"
        elif backend == "mysql" and not db_host.strip():
            read.problems.append("TIX_IPTOAS_DB_HOST: must not be empty when TIX_IPTOAS_BACKEND is mysql")

        level_raw = read.raw("CELERY_LOG_LEVEL")
        log_level = "INFO"
        if level_raw is not None and level_raw.strip():
            if level_raw.strip().upper() in LOG_LEVELS:
                log_level = LOG_LEVELS[level_raw.strip().upper()]
            else:
                read.problems.append(
                    f"CELERY_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level_raw!r}"
                )

        api_user = read.raw("TIX_API_USER") or None
        api_password = read.raw("TIX_API_PASSWORD") or None
        config = cls(
            processor_type=processor_type,
            reports_base_path=reports_base_path(env),
            processing_period_min=period,
            rabbitmq_user=read.text("TIX_RABBITMQ_USER", default="guest"),
            rabbitmq_password=read.text("TIX_RABBITMQ_PASS", default="guest"),
            rabbitmq_host=read.text("TIX_RABBITMQ_HOST", default="localhost", non_empty=True).strip(),
            rabbitmq_port=cast(int, read.integer("TIX_RABBITMQ_PORT", default=5672, low=1, high=65535)),
            rabbitmq_vhost=read.text("TIX_RABBITMQ_VHOST", default="/", non_empty=True),
            api_ssl=api_ssl,
            api_host=_api_host(read),
            api_port=read.integer("TIX_API_PORT", default=None, low=1, high=65535),
            api_user=api_user,
            api_password=api_password,
            api_timeout_s=read.number("TIX_API_TIMEOUT", default=10.0, high=120.0),
            lock_lease_s=cast(int, read.integer("TIX_LOCK_LEASE_SECONDS", default=120, low=30, high=600)),
            task_budget_s=cast(int, read.integer("TIX_TASK_BUDGET_SECONDS", default=480, low=60, high=1500)),
            worker_concurrency=read.integer("TIX_WORKER_CONCURRENCY", default=None, low=1, high=64),
            iptoas_backend=backend,
            iptoas_db_host=db_host.strip() or "mysql",
            iptoas_db_port=cast(int, read.integer("TIX_IPTOAS_DB_PORT", default=3306, low=1, high=65535)),
            iptoas_db_user=read.text("TIX_IPTOAS_DB_USER", default="tix"),
            iptoas_db_password=read.text("TIX_IPTOAS_DB_PASSWORD", default=""),
            iptoas_db_name=read.text("TIX_IPTOAS_DB_NAME", default="iptoas", non_empty=True),
            iptoas_timeout_s=read.number("TIX_IPTOAS_TIMEOUT", default=5.0, high=60.0),
            iptoas_pfx2as_file=pfx2as_file,
            iptoas_asnames_file=Path(asnames_raw) if asnames_raw else None,
            iptoas_cache_ttl_s=cast(int, read.integer("TIX_IPTOAS_CACHE_TTL", default=86400, low=0)),
            iptoas_cache_size=cast(int, read.integer("TIX_IPTOAS_CACHE_SIZE", default=4096, low=1)),
            beat_schedule_dir=Path(read.raw("CELERY_BEAT_SCHEDULE_DIR") or "/tmp/celerybeat-schedule.d"),
            log_level=log_level,
            usage_estimator=cast(
                UsageEstimator, read.choice("TIX_USAGE_ESTIMATOR", default="v2", choices=USAGE_ESTIMATORS, upper=False)
            ),
            api_ca_bundle=read.raw("REQUESTS_CA_BUNDLE") or read.raw("CURL_CA_BUNDLE") or None,
            task_events=read.flag("TIX_TASK_EVENTS"),
            warnings=tuple(read.warnings),
        )
        return config, read.problems

    @property
    def broker_url(self) -> str:
        """``amqp://<user>:<password>@<host>:<port>/<vhost>`` with user and password percent-encoded (S9). Secret."""
        user = quote(self.rabbitmq_user, safe="")
        password = quote(self.rabbitmq_password, safe="")
        return f"amqp://{user}:{password}@{_url_host(self.rabbitmq_host)}:{self.rabbitmq_port}/{self._vhost_path}"

    @property
    def broker_url_redacted(self) -> str:
        """The broker URL with the password replaced by ``***``, for logs."""
        user = quote(self.rabbitmq_user, safe="")
        return f"amqp://{user}:***@{_url_host(self.rabbitmq_host)}:{self.rabbitmq_port}/{self._vhost_path}"

    @property
    def _vhost_path(self) -> str:
        """The virtual host as the URL path: ``/`` stays ``/`` (the original's ``//``), others percent-encoded."""
        return "/" if self.rabbitmq_vhost == "/" else quote(self.rabbitmq_vhost, safe="")

    @property
    def api_credentials_present(self) -> bool:
        """Both TIX_API_USER and TIX_API_PASSWORD are set and non-empty (otherwise no POST at all, D11)."""
        return bool(self.api_user) and bool(self.api_password)

    @property
    def processing_period_s(self) -> int:
        """The beat period P, in seconds."""
        return self.processing_period_min * 60

    @property
    def fanout_expiry_s(self) -> int:
        """Expiry of a fan-out message, ``max(30, P·60 − 60)`` seconds (S8)."""
        return max(30, self.processing_period_s - 60)

    @property
    def installation_expiry_s(self) -> int:
        """Expiry of an installation message, ``P·60`` seconds (S8)."""
        return self.processing_period_s

    @property
    def soft_time_limit_s(self) -> int:
        """Celery soft time limit of an installation task, budget + 60 s (§3.5)."""
        return self.task_budget_s + 60

    @property
    def hard_time_limit_s(self) -> int:
        """Celery hard time limit of an installation task, budget + 120 s (§3.5)."""
        return self.task_budget_s + 120

    @property
    def beat_schedule_file(self) -> Path:
        """``${CELERY_BEAT_SCHEDULE_DIR}/celerybeat-scheduler`` [Original]."""
        return self.beat_schedule_dir / BEAT_SCHEDULE_FILE

    @property
    def log_level_number(self) -> int:
        """The numeric :mod:`logging` level of ``log_level``."""
        return cast(int, logging.getLevelName(self.log_level))


def _url_host(host: str) -> str:
    """``host`` as written in a URL: IPv6 literals in brackets."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return host
    return f"[{host}]"


def celery_settings(config: Config) -> dict[str, Any]:
    """
    The recommended Celery settings of service.md §4, for ``app.conf.update(celery_settings(config))``.

    The beat schedule itself (crontab ``*/P`` with the fan-out expiry) is defined by :mod:`processor.tasks`;
    :attr:`Config.fanout_expiry_s` and :attr:`Config.installation_expiry_s` give the message expiries.
    """
    settings: dict[str, Any] = {
        "broker_url": config.broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": config.soft_time_limit_s,
        "task_time_limit": config.hard_time_limit_s,
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_heartbeat": 30,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # No worker_max_tasks_per_child: the prefork pool may replace a recycled child only on its 5-second timer,
        # stalling the message reserved for it; the memory limit contains leaks instead.
        "worker_max_memory_per_child": 512000,  # KiB: about 500 MiB
        "worker_send_task_events": config.task_events,
        "task_send_sent_event": config.task_events,
        "task_default_queue": "celery",
        "beat_schedule_filename": str(config.beat_schedule_file),
    }
    if config.worker_concurrency is not None:
        settings["worker_concurrency"] = config.worker_concurrency
    return settings


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"configuration error: {problem}", file=sys.stderr)


def load_config_or_exit(env: Mapping[str, str] | None = None) -> Config:
    """
    Build the configuration from ``env`` (default ``os.environ``); on any problem print each as
    ``configuration error: <problem>`` and exit 2. Warnings are logged as ``configuration warning: <text>``.
    """
    try:
        config = Config.from_env(os.environ if env is None else env)
    except ConfigError as exc:
        _print_problems(exc.problems)
        sys.exit(EXIT_USAGE)
    for warning in config.warnings:
        logger.warning("configuration warning: %s", warning)
    return config


if __name__ == "__main__":  # `python -m processor.config --check`, as the container entrypoint runs it
    import argparse

    from processor.cli import add_config_arguments

    parser = argparse.ArgumentParser(prog="python -m processor.config")
    add_config_arguments(parser)
    arguments = parser.parse_args()
    sys.exit(arguments.handler(arguments))
