"""The tix-api client: report URL, JSON payload and the POST with timeouts and bounded retries (service.md §5)."""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import json
import logging
import math
import numbers
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import certifi
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

from processor import __version__
from processor.errors import ApiError, ApiRejected, ApiUnavailable

if TYPE_CHECKING:
    from processor.config import Config, UsageEstimator

logger = logging.getLogger(__name__)

#: Value of the payload's ``version`` field [Original].
PAYLOAD_VERSION = "1.0.0"

#: Usage estimators that can fill ``upUsage``/``downUsage`` (``TIX_USAGE_ESTIMATOR``, usage-queueing spec).
USAGE_ESTIMATORS = ("v2", "queueing")

#: ``User-Agent`` header of every request (§5.2).
USER_AGENT = f"tix-time-processor/{__version__}"

#: Statuses that mean the measure was stored (D11: the original accepted 200 and 204).
SUCCESS_STATUSES = frozenset({200, 201, 204})

#: Statuses retried within one POST (§5.3).
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Statuses whose ``Retry-After`` header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})

#: Statuses that reject the credentials: no retry, the API is unusable for the run.
CREDENTIALS_STATUSES = frozenset({401, 403})

#: Statuses that reject this payload only; the API stays usable (S6).
CONTENT_REJECTED_STATUSES = frozenset({400, 409, 413, 422})

#: Attempts per POST, counting the first.
MAX_ATTEMPTS = 3

#: Waits before attempts 2 and 3, in seconds; each gets a random extra of up to ``JITTER_S``.
BACKOFF_S = (1.0, 2.0)

#: Largest random extra added to each wait, in seconds.
JITTER_S = 0.5

#: Longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER_S = 10.0


# ---------------------------------------------------------------------------------------------------------------
# URL


def api_base_url(*, ssl: bool, host: str, port: int | None) -> str:
    """
    ``<proto>://<host>[:<port>]`` of tix-api (§5.1).

    Parameters
    ----------
    ssl : bool
        HTTPS when true (D7: ``TIX_API_SSL`` set and non-empty), else HTTP.
    host : str
        Host name or IP address; an IPv6 literal is written in brackets (S9).
    port : int or None
        Appended only when given and different from the protocol's default port (443 / 80).
    """
    proto, default_port = ("https", 443) if ssl else ("http", 80)
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        url_host = host
    else:
        url_host = "[" + host.replace("%", "%25") + "]"
    port_part = f":{port:d}" if port is not None and port != default_port else ""
    return f"{proto}://{url_host}{port_part}"


def report_url(base_url: str, user_id: str, installation_id: str) -> str:
    """``<base>/api/user/<user_id>/installation/<installation_id>/reports`` [Original]."""
    return f"{base_url}/api/user/{user_id}/installation/{installation_id}/reports"


# ---------------------------------------------------------------------------------------------------------------
# Payload


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def check_results(results: Any) -> None:
    """
    Check that ``results`` has the shape of analysis.md §7.7.

    ``{"timestamp": int, "upstream": {"usage", "quality", "hurst": {"wavelet", "rs"}}, "downstream": {…}}`` with
    finite numbers; extra keys are allowed. The optional ``usage_queueing`` of each direction (usage-queueing
    spec; absent from files of the original) must be null or a number in [0, 1] when present.

    Raises
    ------
    ValueError
        Naming the first key that is missing or has the wrong type.
    """
    if not isinstance(results, Mapping):
        raise ValueError(f"results must be an object, got {type(results).__name__}")
    timestamp = results.get("timestamp")
    if not isinstance(timestamp, numbers.Integral) or isinstance(timestamp, bool):
        raise ValueError(f"results.timestamp must be an integer, got {timestamp!r}")
    for direction in ("upstream", "downstream"):
        block = _object(results.get(direction), f"results.{direction}")
        _require_numbers(block, ("usage", "quality"), f"results.{direction}")
        hurst = _object(block.get("hurst"), f"results.{direction}.hurst")
        _require_numbers(hurst, ("wavelet", "rs"), f"results.{direction}.hurst")
        queueing = block.get("usage_queueing")
        if queueing is not None and not (_is_number(queueing) and 0.0 <= float(queueing) <= 1.0):
            raise ValueError(f"results.{direction}.usage_queueing must be null or in [0, 1], got {queueing!r}")


def _object(value: Any, name: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else a ValueError naming it."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object")
    return value


def _require_numbers(block: Mapping[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    """Raise a ValueError naming the first of ``keys`` in ``block`` that is not a finite number."""
    for key in keys:
        if not _is_number(block.get(key)):
            raise ValueError(f"{prefix}.{key} must be a finite number, got {block.get(key)!r}")


def clamp_usage(usage: float) -> float:
    """Usage clamped to [0, 1] for the payload (D4); the analysis keeps the unclamped value."""
    return min(max(float(usage), 0.0), 1.0)


def _queueing_usage(block: Mapping[str, Any]) -> float | None:
    """A direction's ``usage_queueing`` as a float, or None when null or absent (files of the original)."""
    value = block.get("usage_queueing")
    return None if value is None else float(value)


def build_payload(
    results: Mapping[str, Any],
    *,
    ip: str,
    asn: int | None,
    as_owner: str | None,
    usage_estimator: UsageEstimator = "v2",
) -> dict[str, Any]:
    """
    The JSON object POSTed to tix-api, keys in the order of §5.2, then the two queueing shares.

    Parameters
    ----------
    results : mapping
        The results dict of analysis.md §7.7 (usage unclamped), with or without ``usage_queueing``.
    ip : str
        The client address without port.
    asn, as_owner : int or None, str or None
        The resolved AS (D13), or None.
    usage_estimator : {"v2", "queueing"}
        What fills ``upUsage``/``downUsage`` (``TIX_USAGE_ESTIMATOR``): ``v2`` the original usage clamped to
        [0, 1] (D4); ``queueing`` the direction's ``usage_queueing``, or the clamped original usage when that is
        null or absent (a failed-results file of the original or of an earlier version).

    Returns
    -------
    dict
        ``timestamp, version, upUsage, upQuality, downUsage, downQuality, hurstUpRs, hurstUpWavelet, hurstDownRs,
        hurstDownWavelet, ip, asn, asOwner, upUsageQueueing, downUsageQueueing``. The last two are always there:
        the queueing shares in [0, 1], or null when unknown (tix-api ignores fields it does not know).

    Raises
    ------
    ValueError
        When ``results`` does not have the shape of §7.7 (see :func:`check_results`), or for an unknown
        ``usage_estimator``.
    """
    if usage_estimator not in USAGE_ESTIMATORS:
        raise ValueError(f"`usage_estimator` must be one of {', '.join(USAGE_ESTIMATORS)}, got {usage_estimator!r}")
    check_results(results)
    up, down = results["upstream"], results["downstream"]
    up_queueing, down_queueing = _queueing_usage(up), _queueing_usage(down)
    up_usage, down_usage = clamp_usage(up["usage"]), clamp_usage(down["usage"])
    if usage_estimator == "queueing":
        up_usage = up_usage if up_queueing is None else up_queueing
        down_usage = down_usage if down_queueing is None else down_queueing
    return {
        "timestamp": int(results["timestamp"]),
        "version": PAYLOAD_VERSION,
        "upUsage": up_usage,
        "upQuality": float(up["quality"]),
        "downUsage": down_usage,
        "downQuality": float(down["quality"]),
        "hurstUpRs": float(up["hurst"]["rs"]),
        "hurstUpWavelet": float(up["hurst"]["wavelet"]),
        "hurstDownRs": float(down["hurst"]["rs"]),
        "hurstDownWavelet": float(down["hurst"]["wavelet"]),
        "ip": ip,
        "asn": None if asn is None else int(asn),
        "asOwner": as_owner,
        "upUsageQueueing": up_queueing,
        "downUsageQueueing": down_queueing,
    }


def encode_json(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with the standard separators ``", "`` and ``": "``; floats as Python's shortest ``repr``."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Client


@dataclass(frozen=True, slots=True)
class PostResult:
    """A successful POST."""

    status: int  #: 200, 201 or 204
    url: str
    attempts: int  #: requests sent, 1–3
    elapsed_s: float  #: from the first attempt to the answer, waits included, in seconds


def _sent_before_failure(exc: HTTPError) -> bool:
    """
    Whether a urllib3 error (raised as is: the pool makes no retries) happened after the request may have reached
    the server.

    Errors while opening the connection (refused, DNS, connect timeout, TLS: ``NewConnectionError``,
    ``ConnectTimeoutError``, ``SSLError``) are safe to retry, as ``requests`` classified them; anything else, such
    as a connection dropped after sending (``ProtocolError``), is not, because tix-api may have stored the measure.
    """
    return not isinstance(exc, (NewConnectionError, ConnectTimeoutError, SSLError))


def _retry_after_s(response: urllib3.BaseHTTPResponse) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_text(response: urllib3.BaseHTTPResponse) -> str:
    """The answer's body as text: UTF-8 (tix-api answers JSON), undecodable bytes replaced."""
    return response.data.decode("utf-8", errors="replace")


def ca_bundle() -> str:
    """
    What TLS certificates are verified with: ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE`` (a file or a directory
    of certificates), else the bundle of ``certifi``; the variables and the default of ``requests``, which the
    client used before.
    """
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


def _ca_locations(bundle: str) -> tuple[str | None, str | None]:
    """
    ``(ca_certs, ca_cert_dir)`` of urllib3: a bundle file is the first, a directory of certificates the second, as
    ``requests`` passed them.

    Raises
    ------
    OSError
        When ``bundle`` does not exist, with the message of ``requests`` (urllib3 would report it as a TLS error
        at every connection, which would be retried as a connection failure).
    """
    if not os.path.exists(bundle):
        raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {bundle}")
    return (None, bundle) if os.path.isdir(bundle) else (bundle, None)


class ApiClient:
    """
    POSTs results to tix-api over one keep-alive connection per process (§5.3).

    The connection is a urllib3 pool of one, made lazily in the process that uses it, never inherited through
    ``fork``; urllib3 rather than ``requests`` (its own transport, same exceptions) halves the client's CPU per
    POST. Redirects are not followed; TLS certificates are verified (``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``
    may name a private CA bundle; see :func:`ca_bundle`), read when the pool is made, not on every request. Proxy
    variables (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and ``~/.netrc`` are not used, since tix-api is
    reached directly with the credentials of ``TIX_API_USER``.

    Parameters
    ----------
    base_url : str
        ``<proto>://<host>[:<port>]`` (see :func:`api_base_url`).
    user, password : str or None
        HTTP Basic credentials of a tix-api admin; when either is missing no request is made at all (D11).
    timeout_s : float
        Connect timeout and read timeout of every request, in seconds.
    max_attempts, backoff_s, jitter_s, max_retry_after_s
        Retry policy; the defaults are those of the specification. Tests shorten the waits.
    sleep : callable
        Used for the waits between attempts.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None,
        password: str | None,
        timeout_s: float,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        jitter_s: float = JITTER_S,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.jitter_s = jitter_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        #: Headers of every request, or None without credentials (then no request is made).
        self._headers: dict[str, str] | None = None
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "Authorization": f"Basic {token}",
            }
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pool_pid: int | None = None
        #: Path of ``base_url`` (usually empty), before the report path in each request target.
        self._path_prefix = ""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r}, credentials={self.has_credentials}, timeout_s={self.timeout_s})"

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> ApiClient:
        """A client for the tix-api of ``config``; keyword ``overrides`` go to the constructor."""
        options: dict[str, Any] = {
            "user": config.api_user,
            "password": config.api_password,
            "timeout_s": config.api_timeout_s,
        }
        options.update(overrides)
        return cls(api_base_url(ssl=config.api_ssl, host=config.api_host, port=config.api_port), **options)

    @property
    def has_credentials(self) -> bool:
        """Whether both user and password are set; without them results go straight to failed-results."""
        return self._headers is not None

    def report_url(self, user_id: str, installation_id: str) -> str:
        """The POST URL of one installation."""
        return report_url(self.base_url, user_id, installation_id)

    def _get_pool(self) -> urllib3.HTTPConnectionPool:
        pid = os.getpid()
        with self._lock:
            if self._pool is None or self._pool_pid != pid:
                # Never reuse a pool (and its socket) inherited from the parent through fork.
                url = urllib3.util.parse_url(self.base_url)
                if not url.host:
                    raise ValueError(f"no host in the tix-api URL {self.base_url!r}")
                options: dict[str, Any] = {
                    "port": url.port,
                    "timeout": urllib3.Timeout(connect=self.timeout_s, read=self.timeout_s),
                    "maxsize": 1,  # one process POSTs one request at a time
                    "block": False,
                    "retries": False,  # the attempts are counted and classified in post()
                }
                pool: urllib3.HTTPConnectionPool
                if url.scheme == "https":
                    ca_certs, ca_cert_dir = _ca_locations(ca_bundle())
                    pool = urllib3.HTTPSConnectionPool(
                        url.host, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs, ca_cert_dir=ca_cert_dir, **options
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(url.host, **options)
                self._pool, self._pool_pid, self._path_prefix = pool, pid, url.path or ""
            return self._pool

    def close(self) -> None:
        """Close this process's pool (its keep-alive connection)."""
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None
            self._pool_pid = None

    def _wait_before(self, attempt: int, response: urllib3.BaseHTTPResponse | None) -> float:
        """Seconds to wait before ``attempt`` (2 or 3)."""
        index = min(attempt - 2, len(self.backoff_s) - 1)
        wait = self.backoff_s[index] + random.uniform(0.0, self.jitter_s)
        if response is not None and response.status in RETRY_AFTER_STATUSES:
            retry_after = _retry_after_s(response)
            if retry_after is not None:
                wait = max(wait, min(retry_after, self.max_retry_after_s))
        return wait

    def post(
        self,
        user_id: str,
        installation_id: str,
        payload: Mapping[str, Any],
        *,
        fence: Callable[[], None] | None = None,
    ) -> PostResult:
        """
        POST one payload (§5.2) and classify the outcome (§5.3).

        Parameters
        ----------
        user_id, installation_id : str
            The directory names, canonical decimals.
        payload : mapping
            From :func:`build_payload`.
        fence : callable, optional
            Called immediately before every attempt; it raises when the installation lock is lost, which stops
            the POST without sending (windows.md §8).

        Returns
        -------
        PostResult
            On 200, 201 or 204.

        Raises
        ------
        ApiRejected
            400, 409, 413, 422: this content was rejected; the API stays usable.
        ApiUnavailable
            Every other failure: missing credentials (no request), connection failures, 429/5xx after the last
            attempt, read timeout or connection lost after sending (``ambiguous``), 401/403, other statuses.
        """
        url = self.report_url(user_id, installation_id)
        headers = self._headers
        if headers is None:
            raise ApiUnavailable("missing_credentials", url=url)
        body = encode_json(payload)
        pool = self._get_pool()
        target = report_url(self._path_prefix, user_id, installation_id)  # the pool has the scheme, host and port
        started = time.monotonic()
        response: urllib3.BaseHTTPResponse | None = None
        error: ApiError
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self._sleep(self._wait_before(attempt, response))
            if fence is not None:
                fence()
            response = None
            try:
                response = pool.urlopen(
                    "POST",
                    target,
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,  # S9: a 3xx is an unexpected status
                    preload_content=True,  # reads the body and gives the connection back to the pool
                )
            except ReadTimeoutError as exc:
                error = ApiUnavailable("read_timeout", url=url, detail=type(exc).__name__)
                break
            except HTTPError as exc:
                if _sent_before_failure(exc):
                    error = ApiUnavailable("connection_lost", url=url, detail=type(exc).__name__)
                    break
                error = ApiUnavailable("connect_failed", url=url, detail=type(exc).__name__)
                if attempt < self.max_attempts:
                    logger.info(
                        "tix-api post retry url=%s reason=connect_failed attempt=%d error=%s",
                        url,
                        attempt,
                        type(exc).__name__,
                    )
                    continue
                break
            status = response.status
            if status in SUCCESS_STATUSES:
                elapsed_s = time.monotonic() - started
                logger.debug(
                    "tix-api post succeeded url=%s status=%d attempts=%d elapsed_s=%.3f",
                    url,
                    status,
                    attempt,
                    elapsed_s,
                )
                return PostResult(status=status, url=url, attempts=attempt, elapsed_s=elapsed_s)
            if status in RETRIED_STATUSES:
                error = ApiUnavailable("server_error", status=status, url=url)
                if attempt < self.max_attempts:
                    logger.info(
                        "tix-api post retry url=%s reason=server_error attempt=%d status=%d", url, attempt, status
                    )
                    continue
            elif status in CREDENTIALS_STATUSES:
                error = ApiUnavailable("credentials_rejected", status=status, url=url)
            elif status in CONTENT_REJECTED_STATUSES:
                error = ApiRejected("content_rejected", status=status, url=url, detail=_body_text(response)[:200])
            else:
                error = ApiUnavailable("unexpected_status", status=status, url=url)
            break
        error.attempts = attempt
        error.elapsed_s = time.monotonic() - started
        if error.reason == "credentials_rejected":
            logger.error("tix-api rejected the credentials url=%s status=%s", url, error.status)
        else:
            logger.warning(
                "tix-api post failed url=%s reason=%s status=%s attempts=%d elapsed_s=%.3f",
                url,
                error.reason,
                error.status,
                attempt,
                error.elapsed_s,
            )
        raise error


_missing_credentials_warned_pid: int | None = None


def warn_if_missing_credentials(client: ApiClient) -> bool:
    """
    Log the D11 warning once per process when the client has no credentials; returns whether they are missing.

    Call it at worker start (or at the first run of a process); later calls in the same process log nothing.
    """
    global _missing_credentials_warned_pid
    if client.has_credentials:
        return False
    if _missing_credentials_warned_pid != os.getpid():
        _missing_credentials_warned_pid = os.getpid()
        logger.warning("TIX_API_USER or TIX_API_PASSWORD is not set: results are kept in failed-results")
    return True
