"""The ``failed-results/`` directory of an installation: backed-up results, their re-sending and rejection (§6)."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processor.atomic import atomic_write_bytes, fsync_directory
from processor.config import USAGE_ESTIMATORS, UsageEstimator
from processor.delivery.payload import build_payload, encode_json
from processor.errors import ApiError, ApiRejected, BadFailedResult
from processor.logs import event_logger

if TYPE_CHECKING:
    from processor.delivery.ip_to_as import Resolver
    from processor.delivery.tixapi import ApiClient

log = event_logger(__name__)

#: Name of the directory inside an installation [Original].
FAILED_RESULTS_DIR = "failed-results"

#: Sub-directory of results that tix-api rejected or that cannot be read (S6); never re-sent automatically.
REJECTED_DIR = "rejected"

#: Names of failed-results files: ``failed-report-<timestamp>.json`` or ``failed-report-<timestamp>-<n>.json``.
FAILED_NAME_RE = re.compile(r"^failed-report-([0-9]+)(-([0-9]+))?\.json$")

#: Mode of the directories ``failed-results/`` and ``rejected/``.
DIRECTORY_MODE = 0o750

#: Mode of a failed-results file.
FILE_MODE = 0o640

#: Largest failed-results file read for a re-send, in bytes; larger ones are rejected as unreadable.
MAX_FILE_BYTES = 1 << 20

#: Prefix of the sidecar that counts the strikes of a failed result (H9, :mod:`processor.delivery.strikes`).
STRIKES_PREFIX = ".strikes-"


def failed_result_name(timestamp: int, n: int = 0) -> str:
    """``failed-report-<timestamp>.json`` for n = 0, else ``failed-report-<timestamp>-<n>.json``."""
    return f"failed-report-{timestamp:d}.json" if n == 0 else f"failed-report-{timestamp:d}-{n:d}.json"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _require(block: Any, name: str, number_keys: tuple[str, ...]) -> Mapping[str, Any]:
    """``block`` if it is a JSON object whose ``number_keys`` are finite numbers, else a ValueError naming the key."""
    if not isinstance(block, Mapping):
        raise ValueError(f"{name} must be an object")
    for key in number_keys:
        if not _is_number(block.get(key)):
            raise ValueError(f"{name}.{key} must be a finite number, got {block.get(key)!r}")
    return block


def check_results(results: Any) -> Mapping[str, Any]:
    """
    Check that ``results``, read from a file, has the shape of analysis.md §7.7; the one check of a result.

    ``{"timestamp": int, "upstream": {"usage", "quality", "hurst": {"wavelet", "rs"}}, "downstream": {…}}`` with
    finite numbers; extra keys are allowed. The optional ``usage_queueing`` of each direction (usage-queueing
    spec; absent from files of the original) must be null or a number in [0, 1] when present.

    Raises
    ------
    ValueError
        Naming the first key that is missing or has the wrong type.
    """
    checked = _require(results, "results", ())
    timestamp = checked.get("timestamp")
    if not isinstance(timestamp, numbers.Integral) or isinstance(timestamp, bool):
        raise ValueError(f"results.timestamp must be an integer, got {timestamp!r}")
    for direction in ("upstream", "downstream"):
        block = _require(checked.get(direction), f"results.{direction}", ("usage", "quality"))
        _require(block.get("hurst"), f"results.{direction}.hurst", ("wavelet", "rs"))
        queueing = block.get("usage_queueing")
        if queueing is not None and not (_is_number(queueing) and 0.0 <= float(queueing) <= 1.0):
            raise ValueError(f"results.{direction}.usage_queueing must be null or in [0, 1], got {queueing!r}")
    return checked


def failed_result_document(
    results: Mapping[str, Any],
    *,
    ip: str,
    asn: int | None,
    as_owner: str | None,
    usage_estimator: UsageEstimator = "v2",
) -> dict[str, Any]:
    """
    ``{"results", "ip", "asn", "asOwner"}`` in that order (§6.1), then ``usageEstimator`` and the queueing shares.

    ``results`` is the analysis's results dict as it is (plain numbers, keys in order, usage unclamped, each
    direction's ``usage_queueing`` when known). ``usageEstimator`` is the estimator the window was analysed
    under, which its re-send uses too; the two queueing shares are repeated at the top level under their payload
    names, so that the file carries every payload field.
    """
    return {
        "results": results,
        "ip": ip,
        "asn": None if asn is None else int(asn),
        "asOwner": as_owner,
        "usageEstimator": usage_estimator,
        "upUsageQueueing": results["upstream"].get("usage_queueing"),
        "downUsageQueueing": results["downstream"].get("usage_queueing"),
    }


def ensure_failed_results_dir(installation_dir: Path) -> Path:
    """Create ``<installation>/failed-results/`` with mode 0750 if missing [Original]; returns its path."""
    directory = Path(installation_dir) / FAILED_RESULTS_DIR
    try:
        os.mkdir(directory, DIRECTORY_MODE)
    except FileExistsError:
        return directory
    os.chmod(directory, DIRECTORY_MODE)
    # The new entry needs no fsync of its own: a result is only written there after the state write of windows
    # spec §9.2 step 2, whose fsync of this same installation directory makes the entry durable too.
    return directory


@dataclass(frozen=True, slots=True)
class StoredFailedResult:
    """Where a result was backed up."""

    path: Path
    created: bool  #: False when the same window's result was already there (nothing written)


def _same_window(existing: bytes, document: Mapping[str, Any]) -> bool:
    """
    Whether an existing file holds the same window's result as ``document``.

    Same ``results`` and ``ip`` count as the same window even if ``asn``/``asOwner`` differ: the AS comes from a
    resolver that may have failed in one run and answered in the other, and a second file would make the window
    be posted twice. For the same reason ``usage_queueing`` is not compared: a file written before it existed
    holds the same window.
    """
    try:
        data = json.loads(existing)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and _without_queueing(data.get("results")) == _without_queueing(document["results"])
        and data.get("ip") == document["ip"]
    )


def _without_queueing(results: Any) -> Any:
    """``results`` without the directions' ``usage_queueing`` (anything that is not a results dict as it is)."""
    if not isinstance(results, dict):
        return results
    stripped = dict(results)
    for direction in ("upstream", "downstream"):
        block = results.get(direction)
        if isinstance(block, dict):
            stripped[direction] = {key: value for key, value in block.items() if key != "usage_queueing"}
    return stripped


def write_failed_result(
    directory: Path,
    results: Mapping[str, Any],
    *,
    ip: str,
    asn: int | None,
    as_owner: str | None,
    usage_estimator: UsageEstimator = "v2",
    fence: Callable[[], None] | None = None,
) -> StoredFailedResult:
    """
    Back one result up in ``directory`` (the existing ``failed-results/``), atomically (§6.1, windows.md §9.1).

    ``results`` is analysis.md §7.7 (usage unclamped); ``ip``, ``asn``, ``as_owner`` and ``usage_estimator`` are
    the payload's (the estimator is kept for the re-send). The name is ``failed-report-<timestamp>.json``: if it
    holds the same window's result nothing is written; if another content, the result goes to
    ``failed-report-<timestamp>-<n>.json`` with the smallest free n ≥ 1 (S6), a same-window file met on the way
    being recognised too. ``fence`` is called right before the file is created. ``OSError`` when the file cannot
    be written (disk full, I/O error); nothing is left behind.
    """
    directory = Path(directory)
    document = failed_result_document(results, ip=ip, asn=asn, as_owner=as_owner, usage_estimator=usage_estimator)
    data = encode_json(document)
    timestamp = document["results"]["timestamp"]
    n = 0
    while True:
        path = directory / failed_result_name(timestamp, n)
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            if fence is not None:
                fence()
            try:
                atomic_write_bytes(path, data, purpose="failed-result", mode=FILE_MODE, exclusive=True)
            except FileExistsError:
                continue  # created meanwhile: look at it again
            return StoredFailedResult(path, created=True)
        except IsADirectoryError:
            n += 1
            continue
        if _same_window(existing, document):
            return StoredFailedResult(path, created=False)
        n += 1


@dataclass(frozen=True, slots=True)
class FailedResultFile:
    """A file of ``failed-results/`` found by :func:`list_failed_results`."""

    path: Path
    timestamp: int
    n: int  #: the ``-<n>`` suffix, 0 when absent


def list_failed_results(directory: Path) -> list[FailedResultFile]:
    """
    The regular files of ``failed-results/`` with a failed-results name, oldest first: by (timestamp, n).

    Temporary files, other names, symbolic links and ``rejected/`` are ignored; a missing directory gives [].
    """
    found: list[FailedResultFile] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = FAILED_NAME_RE.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        found.append(FailedResultFile(Path(entry.path), int(match[1]), int(match[3] or 0)))
    found.sort(key=lambda item: (item.timestamp, item.n, item.path.name))
    return found


@dataclass(frozen=True, slots=True)
class FailedResult:
    """The content of one failed-results file."""

    path: Path
    results: Mapping[str, Any]  #: analysis.md §7.7 as read, checked, usage unclamped
    ip: str
    asn: int | None
    as_owner: str | None
    has_as: bool  #: False for files of the original, which had no ``asn``/``asOwner``: resolve again
    usage_estimator: UsageEstimator = "v2"  #: the file's ``usageEstimator``; absent (older files) means ``v2``


def load_failed_result(path: Path) -> FailedResult:
    """
    Read and check one failed-results file.

    Raises
    ------
    BadFailedResult
        ``unreadable`` (I/O error, not a regular file, larger than 1 MiB), ``not_json`` (not UTF-8 JSON, or not an
        object), ``bad_results`` (not the shape of analysis.md §7.7), ``bad_ip`` (``ip`` missing or not a string),
        ``bad_estimator`` (``usageEstimator`` present but neither ``v2`` nor ``queueing``).
    """
    path = Path(path)
    try:
        # O_NOFOLLOW | O_NONBLOCK: a link or a FIFO put in the file's place is neither followed nor waited on (H1).
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise BadFailedResult(path, "unreadable", "not a regular file")
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise BadFailedResult(path, "unreadable", f"more than {MAX_FILE_BYTES} bytes")
    except OSError as exc:
        raise BadFailedResult(path, "unreadable", exc.strerror or str(exc)) from exc
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise BadFailedResult(path, "not_json", str(exc)[:100]) from exc
    if not isinstance(document, dict):
        raise BadFailedResult(path, "not_json", "not an object")
    try:
        results = check_results(document.get("results"))
    except ValueError as exc:
        raise BadFailedResult(path, "bad_results", str(exc)) from exc
    ip = document.get("ip")
    if not isinstance(ip, str):
        raise BadFailedResult(path, "bad_ip", f"{type(ip).__name__}")
    asn, owner = document.get("asn"), document.get("asOwner")
    has_as = (
        "asn" in document
        and "asOwner" in document
        and (asn is None or (isinstance(asn, int) and not isinstance(asn, bool)))
        and (owner is None or isinstance(owner, str))
    )
    if not has_as:
        asn, owner = None, None
    estimator = document.get("usageEstimator", "v2")
    if estimator not in USAGE_ESTIMATORS:
        raise BadFailedResult(path, "bad_estimator", repr(estimator)[:100])
    return FailedResult(path, results, ip, asn, owner, has_as, estimator)


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name`` if free, else the same name with the smallest free ``-<k>`` suffix."""
    candidate = directory / name
    if not os.path.lexists(candidate):
        return candidate
    match = FAILED_NAME_RE.match(name)
    stem, suffix = (f"failed-report-{match[1]}", ".json") if match else (Path(name).stem, Path(name).suffix)
    k = int(match[3] or 0) + 1 if match else 1
    while os.path.lexists(directory / f"{stem}-{k}{suffix}"):
        k += 1
    return directory / f"{stem}-{k}{suffix}"


def reject_failed_result(path: Path, *, fence: Callable[[], None] | None = None) -> Path:
    """
    Move a failed-results file into ``failed-results/rejected/`` (created with mode 0750 on demand).

    A name already present in ``rejected/`` is never overwritten: the file gets a free ``-<k>`` suffix. Returns
    the new path.
    """
    path = Path(path)
    rejected = path.parent / REJECTED_DIR
    if fence is not None:
        fence()
    try:
        os.mkdir(rejected, DIRECTORY_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(rejected, DIRECTORY_MODE)
        fsync_directory(path.parent)
    while True:
        target = _free_name(rejected, path.name)
        try:
            os.link(path, target)  # never replaces an existing name
        except FileExistsError:
            continue
        break
    os.unlink(path)
    _forget_strikes(path)
    fsync_directory(rejected)
    fsync_directory(path.parent)
    return target


def _forget_strikes(path: Path) -> None:
    """Remove the strikes sidecar of a failed result that left ``failed-results/`` (H9)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_name(STRIKES_PREFIX + path.name))


def delete_failed_result(path: Path, *, fence: Callable[[], None] | None = None) -> None:
    """Delete a failed-results file after tix-api accepted it (fenced); a file already gone is fine."""
    path = Path(path)
    if fence is not None:
        fence()
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _forget_strikes(path)
    fsync_directory(path.parent)


@dataclass(frozen=True, slots=True)
class ResendSummary:
    """What one re-send pass did."""

    resent: int = 0  #: accepted by tix-api and deleted
    rejected: int = 0  #: moved to ``rejected/`` (unreadable, or content rejected by tix-api)
    remaining: int = 0  #: left in ``failed-results/`` for a later run
    api_unusable: bool = False  #: a failure that concerns the API as a whole stopped the pass (S6)
    stopped_by_budget: bool = False  #: ``should_continue`` said stop
    failure: ApiError | None = None  #: the failure that stopped the pass
    refused: tuple[Path, ...] = ()  #: kept after a 5xx of their own, the pass going on (H9: struck if the API is up)


def resend_failed_results(
    directory: Path,
    *,
    user_id: str,
    installation_id: str,
    client: ApiClient,
    resolver: Resolver | None = None,
    fence: Callable[[], None] | None = None,
    should_continue: Callable[[], bool] | None = None,
    on_resent: Callable[[int], None] | None = None,
    retry_until: float | None = None,
    api_up: Callable[[], bool] | None = None,
) -> ResendSummary:
    """
    Re-send the files of ``failed-results/`` (``directory``), oldest first (§6.2, D10, S6).

    For each file, while ``should_continue()`` (the run's budget) is true: an unreadable or malformed file moves
    to ``rejected/``; otherwise its payload (usage clamped, under the file's own ``usageEstimator``) is POSTed,
    the AS resolved first by ``resolver`` for files without ``asn``/``asOwner``. Success → the file is deleted and
    ``on_resent(timestamp)`` called; content rejected (400, 409, 413, 422) → moved to ``rejected/``; a 5xx → the
    file is kept in ``refused`` and the pass goes on while ``api_up()`` says tix-api is up, or when the file
    before did not get one (H9: a result tix-api cannot take never blocks the others; two in a row while the API
    is not known up are an outage); any other failure → the file is kept and the pass stops with
    ``api_unusable``, as it does at once without credentials. ``fence`` is called right before every side effect
    (POST attempt, deletion, move) and its exception propagates, as does ``OSError`` when a file cannot be
    deleted or moved. No POST retry starts after ``retry_until`` (``time.monotonic()`` seconds, H3).
    """
    files = list_failed_results(directory)
    if not files:
        return ResendSummary()
    if not client.has_credentials:
        return ResendSummary(remaining=len(files), api_unusable=True)
    run_log = log.bind(user=user_id, installation=installation_id)
    resent = rejected = 0
    refused: list[Path] = []
    for index, item in enumerate(files):
        if should_continue is not None and not should_continue():
            return ResendSummary(resent, rejected, len(files) - index, stopped_by_budget=True)
        try:
            stored = load_failed_result(item.path)
        except BadFailedResult as exc:
            if exc.reason == "unreadable" and not os.path.lexists(item.path):
                continue  # gone meanwhile
            reject_failed_result(item.path, fence=fence)
            rejected += 1
            run_log.warning("failed result rejected", file=item.path.name, reason=exc.reason, detail=exc.detail)
            continue
        asn, owner = stored.asn, stored.as_owner
        if not stored.has_as and resolver is not None:
            answer = resolver.resolve(stored.ip)
            asn, owner = answer.asn, answer.owner
        payload = build_payload(
            stored.results, ip=stored.ip, asn=asn, as_owner=owner, usage_estimator=stored.usage_estimator
        )
        try:
            posted = client.post(user_id, installation_id, payload, fence=fence, retry_until=retry_until)
        except ApiRejected as exc:
            reject_failed_result(item.path, fence=fence)
            rejected += 1
            run_log.warning("failed result rejected", file=item.path.name, reason=exc.reason, status=exc.status)
            continue
        except ApiError as exc:
            after_refusal = bool(refused) and refused[-1] == files[index - 1].path
            if refused_by_server(exc) and (not after_refusal or (api_up is not None and api_up())):
                refused.append(item.path)
                continue
            remaining = len(files) - index + len(refused)
            run_log.info("failed results re-send stopped", file=item.path.name, reason=exc.reason, remaining=remaining)
            return ResendSummary(resent, rejected, remaining, api_unusable=True, failure=exc, refused=tuple(refused))
        delete_failed_result(item.path, fence=fence)
        resent += 1
        if on_resent is not None:
            on_resent(int(stored.results["timestamp"]))
        run_log.info("failed result re-sent", file=item.path.name, timestamp=item.timestamp, status=posted.status)
    return ResendSummary(resent, rejected, len(refused), refused=tuple(refused))


def refused_by_server(error: ApiError) -> bool:
    """True for a 5xx answer (H9: tix-api took the request and could not store this result), not a 429."""
    return error.status is not None and 500 <= error.status <= 599
