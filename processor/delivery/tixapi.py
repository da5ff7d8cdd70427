"""The tix-api client: report URL and the POST with timeouts, a deadline and bounded retries (service.md §5)."""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError

from processor import __version__
from processor.config import Config
from processor.delivery.payload import encode_json
from processor.delivery.transport import Deadline, deadline_session
from processor.errors import ApiError, ApiFailureReason, ApiRejected, ApiUnavailable
from processor.logs import event_logger

log = event_logger(__name__)

#: ``User-Agent`` header of every request (§5.2).
USER_AGENT = f"tix-time-processor/{__version__}"

# The table of §5.3: statuses of success (D11: the original accepted 200 and 204), retried within one POST, with
# their ``Retry-After`` honoured, rejecting the credentials (the API is unusable for the run) and rejecting this
# payload only (the API stays usable, S6). Any other status is a configuration problem.
SUCCESS_STATUSES = frozenset({200, 201, 204})
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
CREDENTIALS_STATUSES = frozenset({401, 403})
CONTENT_REJECTED_STATUSES = frozenset({400, 409, 413, 422})

# The retry policy of §5.3: attempts per POST counting the first, the waits before attempts 2 and 3 (s), the
# largest random extra added to each wait (s), the longest ``Retry-After`` honoured (s).
MAX_ATTEMPTS = 3
BACKOFF_S = (1.0, 2.0)
JITTER_S = 0.5
MAX_RETRY_AFTER_S = 10.0

#: Most bytes of an answer's body that are read (reliability.md H2); the status decides, the rest is discarded.
MAX_ANSWER_BYTES = 64 * 1024

#: Characters of an answer's body kept in a failure's detail and log line (reliability.md H9).
ANSWER_EXCERPT_CHARS = 200


def api_base_url(*, ssl: bool, host: str, port: int | None) -> str:
    """
    ``<proto>://<host>[:<port>]`` of tix-api (§5.1): HTTPS when ``ssl`` (D7), an IPv6 literal in brackets (S9), the
    port only when given and different from the protocol's default (443 / 80).
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


@dataclass(frozen=True, slots=True)
class PostResult:
    """A successful POST."""

    status: int  #: 200, 201 or 204
    url: str
    attempts: int  #: requests sent, 1–3
    elapsed_s: float  #: from the first attempt to the answer, waits included, in seconds


@dataclass(frozen=True, slots=True)
class _Answer:
    """An answer: its status, its ``Retry-After`` header and the start of its body as text."""

    status: int
    retry_after: str | None
    excerpt: str  #: the first ANSWER_EXCERPT_CHARS characters (UTF-8, undecodable bytes replaced)

    def retry_after_s(self) -> float | None:
        """``Retry-After`` in seconds (a delta or an HTTP date), or None when absent or unreadable."""
        value = (self.retry_after or "").strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _read_answer(response: requests.Response) -> _Answer:
    """
    The answer of a streamed response, its body read up to :data:`MAX_ANSWER_BYTES`.

    A body read whole gives the connection back to the session; a longer one is cut and its connection closed.
    """
    try:
        body = next(response.iter_content(MAX_ANSWER_BYTES + 1), b"")
    finally:
        response.close()
    excerpt = body[: ANSWER_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:ANSWER_EXCERPT_CHARS]
    return _Answer(response.status_code, response.headers.get("Retry-After"), excerpt)


class ApiClient:
    """
    POSTs results to tix-api through one ``requests.Session`` (keep-alive), made in the process that uses it (§5.3).

    ``timeout_s`` is the connect timeout, the read timeout and the deadline of each attempt, in seconds. Without
    ``user`` or ``password`` no request is made at all (D11). Redirects are not followed. Certificates are verified
    with ``ca_bundle`` (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, read by :mod:`processor.config`), else with the
    default of ``requests``; the environment is not read again (no proxy variables, no ``~/.netrc``). The retry
    options and ``sleep`` default to the specification's policy; tests shorten the waits.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None,
        password: str | None,
        timeout_s: float,
        ca_bundle: str | None = None,
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
        self.has_credentials = bool(user and password)
        self.last_success_s: float | None = None  #: ``time.monotonic()`` of this client's last 2xx answer (H9)
        self.session = deadline_session()
        self.session.trust_env = False
        self.session.verify = ca_bundle or True
        self.session.headers.clear()
        self.session.headers.update(
            {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        )
        if self.has_credentials:
            # Built here rather than by requests' HTTPBasicAuth, which encodes as Latin-1: the client used UTF-8.
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.session.headers["Authorization"] = f"Basic {token}"

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self.base_url!r}, credentials={self.has_credentials}, timeout_s={self.timeout_s})"

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> ApiClient:
        """A client for the tix-api of ``config``; keyword ``overrides`` go to the constructor."""
        options: dict[str, Any] = {
            "user": config.api_user,
            "password": config.api_password,
            "timeout_s": config.api_timeout_s,
            "ca_bundle": config.api_ca_bundle,
            **overrides,
        }
        return cls(api_base_url(ssl=config.api_ssl, host=config.api_host, port=config.api_port), **options)

    def succeeded_within(self, period_s: float) -> bool:
        """Whether a POST of this client got a 2xx answer in the last ``period_s`` seconds."""
        return self.last_success_s is not None and time.monotonic() - self.last_success_s <= period_s

    def report_url(self, user_id: str, installation_id: str) -> str:
        """The POST URL of one installation."""
        return report_url(self.base_url, user_id, installation_id)

    def close(self) -> None:
        """Close the session (its keep-alive connection)."""
        self.session.close()

    def _attempt(self, url: str, body: bytes) -> _Answer:
        """
        One POST of ``body``, ended by ``timeout_s`` from its start to the last byte read of the answer.

        Raises ``ApiUnavailable``: ``connect_failed`` when nothing was sent (refused, DNS, connect timeout, TLS),
        ``read_timeout`` or ``connection_lost`` when the request may have reached tix-api.
        """
        answered = False
        with Deadline(self.timeout_s) as deadline:
            try:
                timeout = (self.timeout_s, self.timeout_s)
                response = self.session.post(url, data=body, timeout=timeout, allow_redirects=False, stream=True)
                answered = True
                return _read_answer(response)
            except requests.RequestException as exc:
                error = exc
        if deadline.cut or isinstance(error, requests.ReadTimeout):
            reason: ApiFailureReason = "read_timeout"
        elif not answered and _before_sending(error):
            reason = "connect_failed"
        else:
            reason = "connection_lost"
        raise ApiUnavailable(reason, url=url, detail=type(error).__name__) from error

    def _wait_before(self, attempt: int, answer: _Answer | None) -> float:
        """Seconds to wait before ``attempt`` (2 or 3)."""
        wait = self.backoff_s[min(attempt - 2, len(self.backoff_s) - 1)] + random.uniform(0.0, self.jitter_s)
        if answer is not None and answer.status in RETRY_AFTER_STATUSES:
            retry_after = answer.retry_after_s()
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
        retry_until: float | None = None,
    ) -> PostResult:
        """
        POST one payload (§5.2) and classify the outcome (§5.3); returns on 200, 201 or 204.

        ``fence`` is called immediately before every attempt: it raises when the installation lock is lost, which
        stops the POST without sending (windows.md §8). No retry starts after ``retry_until`` (``time.monotonic``
        seconds: the end of the run's budget), so a run ends within its budget plus one attempt's deadline (H3).

        Raises
        ------
        ApiRejected
            400, 409, 413, 422: this content was rejected; the API stays usable.
        ApiUnavailable
            Every other failure: missing credentials (no request), connection failures, 429/5xx after the last
            attempt, read timeout or connection lost after sending (``ambiguous``), 401/403, other statuses.
        """
        url = self.report_url(user_id, installation_id)
        if not self.has_credentials:
            raise ApiUnavailable("missing_credentials", url=url)
        body = encode_json(payload)
        started = time.monotonic()
        answer: _Answer | None = None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self._sleep(self._wait_before(attempt, answer))
            if fence is not None:
                fence()
            answer = None
            try:
                answer = self._attempt(url, body)
            except ApiUnavailable as exc:
                error: ApiError | None = exc
            else:
                error = None if answer.status in SUCCESS_STATUSES else _failure(answer, url)
            if error is None or error.reason not in ("connect_failed", "server_error") or attempt == self.max_attempts:
                break
            if retry_until is not None and time.monotonic() >= retry_until:
                break
            detail: dict[str, Any] = (
                {"status": error.status} if answer is not None else {"error": type(error.__cause__).__name__}
            )
            log.info("tix-api post retry", url=url, reason=error.reason, attempt=attempt, **detail)
        elapsed_s = time.monotonic() - started
        if error is None and answer is not None:
            self.last_success_s = time.monotonic()
            log.debug(
                "tix-api post succeeded", url=url, status=answer.status, attempts=attempt, elapsed_s=round(elapsed_s, 3)
            )
            return PostResult(status=answer.status, url=url, attempts=attempt, elapsed_s=elapsed_s)
        assert error is not None
        error.attempts, error.elapsed_s = attempt, elapsed_s
        if error.reason == "credentials_rejected":
            log.error("tix-api rejected the credentials", url=url, status=error.status)
        else:
            # H9: a 5xx warning carries the start of the answer (escaped by the logger).
            excerpt: dict[str, Any] = {"answer": answer.excerpt} if error.reason == "server_error" and answer else {}
            log.warning(
                "tix-api post failed",
                url=url,
                reason=error.reason,
                status=error.status,
                attempts=attempt,
                elapsed_s=round(error.elapsed_s, 3),
                **excerpt,
            )
        raise error


def _before_sending(error: requests.RequestException) -> bool:
    """
    Whether ``error`` came before the request was sent: a connect timeout, a TLS failure and, as the transport
    makes no retries, every other failure to open the connection (wrapped in MaxRetryError). The rest (a reset, a
    connection closed without answer) may come after tix-api stored the measure.
    """
    opening = isinstance(error, (requests.ConnectTimeout, requests.exceptions.SSLError))
    return opening or (bool(error.args) and isinstance(error.args[0], MaxRetryError))


def _failure(answer: _Answer, url: str) -> ApiError:
    """The failure that an answer with a status other than success means (§5.3)."""
    status = answer.status
    if status in RETRIED_STATUSES:
        return ApiUnavailable("server_error", status=status, url=url, detail=answer.excerpt)
    if status in CREDENTIALS_STATUSES:
        return ApiUnavailable("credentials_rejected", status=status, url=url)
    if status in CONTENT_REJECTED_STATUSES:
        return ApiRejected("content_rejected", status=status, url=url, detail=answer.excerpt)
    return ApiUnavailable("unexpected_status", status=status, url=url)
