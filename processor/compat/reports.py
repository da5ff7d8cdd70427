"""
The original's report objects and its ``ReportHandler`` (compat spec §2): reading, writing and windowing reports.

The window rule is the service's selection (windows spec §3) on the files present, with no lock and no state
file; the files it removes are removed here at once, as the original did.
"""

from __future__ import annotations

import binascii
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from processor.atomic import atomic_write_bytes
from processor.compat.observations import Observation, deserialize_observations, serialize_observations, to_array
from processor.errors import BadAddress, UnusableReport
from processor.reports import files, windows
from processor.reports.files import REQUIRED_KEYS, parse_address, report_candidates
from processor.reports.windows import MAX_REPORT_GAP_S, MIN_WINDOW_OBSERVATIONS, dispose_count, select_window

_JSON_TYPES = {str: "string", int: "integer"}
_ADDRESS_SCHEMA = {"anyOf": [{"type": "string", "format": form} for form in ("ipv4", "ipv6", "hostname")]}

#: JSON schema of a report file: the 12 members and their types, all required; extra members and formats unchecked.
JSON_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        key: _ADDRESS_SCHEMA if key in ("from", "to") else {"type": _JSON_TYPES[kind]}
        for key, kind in REQUIRED_KEYS.items()
    }
    | {"type": {"type": "string", "enum": ["LONG"]}},
    "required": list(REQUIRED_KEYS),
}


class NotEnoughObservationsError(Exception):
    """Fewer observations than a window needs (the original's name; the rule returns no window instead)."""


def nanos_to_micros(nanos: int) -> int:
    """Nanoseconds to whole microseconds, rounded down."""
    return nanos // 1000


def client_ip(from_dir: str) -> str:
    """
    The client address of a report's ``from`` (C4: the service's host:port parser, D5).

    Text the parser refuses gives the original's answer, the text before the first ':'.
    """
    try:
        return parse_address(from_dir)
    except BadAddress:
        return from_dir.split(":", 1)[0]


class Report:
    """One report file's content; ``observations`` is a list of :class:`Observation` in record order."""

    __hash__: ClassVar[None]  # type: ignore[assignment]  # mutable, compared by value: unhashable, as the original

    def __init__(
        self,
        from_dir: str,
        to_dir: str,
        packet_type: str,
        initial_timestamp: int,
        reception_timestamp: int,
        sent_timestamp: int,
        final_timestamp: int,
        public_key: str,
        observations: list[Observation],
        signature: str,
        user_id: int,
        installation_id: int,
        file_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.from_dir = from_dir
        self.to_dir = to_dir
        self.packet_type = packet_type
        self.initial_timestamp = initial_timestamp
        self.reception_timestamp = reception_timestamp
        self.sent_timestamp = sent_timestamp
        self.final_timestamp = final_timestamp
        self.public_key = public_key
        self.observations = observations
        self.signature = signature
        self.user_id = user_id
        self.installation_id = installation_id
        self.file_path = file_path

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = dict(vars(self)), dict(vars(other))
        return list(mine.pop("observations")) == list(theirs.pop("observations")) and mine == theirs

    @staticmethod
    def load(path: str | os.PathLike[str]) -> Report:
        """
        Read a report file; ``file_path`` is ``path`` as given.

        Raises ``UnusableReport`` (reason ``not_json`` or ``schema``) for a file that is not a report; the
        original raised AttributeError.
        """
        with open(path, "rb") as handle:
            data = handle.read()
        try:
            report = json.loads(data, cls=ReportJSONDecoder)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise UnusableReport(Path(path), "not_json", str(exc)[:200]) from None
        if not isinstance(report, Report):
            raise UnusableReport(Path(path), "schema", "not a TiX report")
        report.file_path = path
        return report

    @staticmethod
    def get_gap_between_reports(second: Report, first: Report) -> int:
        """Seconds from the first observation of ``first`` to the first observation of the later ``second``."""
        return second.observations[0].day_timestamp - first.observations[0].day_timestamp

    def get_observations_gap(self) -> int:
        """Seconds from the first observation to the last, in list order."""
        return self.observations[-1].day_timestamp - self.observations[0].day_timestamp


class ReportJSONEncoder(json.JSONEncoder):
    """Writes a :class:`Report` as its 12 JSON members (``file_path`` is not written)."""

    def default(self, o: Any) -> Any:
        if not isinstance(o, Report):
            return super().default(o)
        return {
            "initialTimestamp": o.initial_timestamp,
            "receptionTimestamp": o.reception_timestamp,
            "sentTimestamp": o.sent_timestamp,
            "finalTimestamp": o.final_timestamp,
            "publicKey": o.public_key,
            "signature": o.signature,
            "userId": o.user_id,
            "installationId": o.installation_id,
            "from": o.from_dir,
            "to": o.to_dir,
            "type": o.packet_type,
            "message": serialize_observations(o.observations),
        }


class ReportJSONDecoder(json.JSONDecoder):
    """Reads every JSON object that fits :data:`JSON_REPORT_SCHEMA` as a :class:`Report`; others stay dicts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("object_hook", self.report_or_dict)
        super().__init__(*args, **kwargs)

    @staticmethod
    def report_or_dict(document: dict[str, Any]) -> Report | dict[str, Any]:
        """A Report when ``document`` has the 12 members with their JSON types (the service's reader's table)."""
        if any(type(document.get(key)) is not kind for key, kind in REQUIRED_KEYS.items()):
            return document
        if document["type"] != "LONG":
            return document
        try:
            observations = deserialize_observations(document["message"])
        except (binascii.Error, struct.error, ValueError):
            return document
        return Report(
            from_dir=document["from"],
            to_dir=document["to"],
            packet_type=document["type"],
            initial_timestamp=document["initialTimestamp"],
            reception_timestamp=document["receptionTimestamp"],
            sent_timestamp=document["sentTimestamp"],
            final_timestamp=document["finalTimestamp"],
            public_key=document["publicKey"],
            observations=observations,
            signature=document["signature"],
            user_id=document["userId"],
            installation_id=document["installationId"],
        )


def window_report(report: Report) -> files.Report:
    """The service's view of a loaded report (its ip, its records in file order) for the window rule."""
    return files.Report(
        path=Path(report.file_path or ""),
        ip=client_ip(report.from_dir),
        user_id=report.user_id,
        installation_id=report.installation_id,
        observations=to_array(report.observations),
        mtime_s=0.0,
    )


def _delete_files(paths: Sequence[str | os.PathLike[str] | None]) -> None:
    for path in paths:
        try:
            if path is not None:
                os.remove(path)
        except FileNotFoundError:
            pass  # removed meanwhile: what was asked


class ReportHandler:
    """
    The report files of one installation directory and the original window rule over them (compat spec §2).

    No lock and no state file: the rule runs on the files present at each call. Files that are not reports,
    or hold no record, are skipped and left in place (the original raised on them).
    """

    MINIMUM_OBSERVATIONS_QTY = MIN_WINDOW_OBSERVATIONS
    MAXIMUM_OBSERVATIONS_QTY = 1200  # unused, as in the original
    BACK_UP_OBSERVATIONS_QTY_PROCESSING_THRESHOLD = 540  # unused, as in the original
    GAP_THRESHOLD = MAX_REPORT_GAP_S
    FAILED_RESULTS_DIR_NAME = "failed-results"  # the service's too (processor.delivery.failed_results)
    FAILED_REPORT_FILE_NAME_TEMPLATE = "failed-report-{timestamp}.json"

    def __init__(self, installation_dir_path: str | os.PathLike[str]) -> None:
        self.installation_dir_path = installation_dir_path
        self.failed_results_dir_path = os.path.join(installation_dir_path, self.FAILED_RESULTS_DIR_NAME)
        self._make_failed_results_dir()
        self.reports_files = self.fetch_reports(installation_dir_path)
        self.processable_reports: list[Report] = []

    @staticmethod
    def fetch_reports(directory: str | os.PathLike[str], last_first: bool = False) -> list[str]:
        """Paths of the report candidates of ``directory`` (``*.json``, not hidden) in name order."""
        names = report_candidates(Path(directory))
        return [os.path.join(directory, name) for name in (reversed(names) if last_first else names)]

    @staticmethod
    def calculate_observations_quantity(reports: Sequence[Report]) -> int:
        """Records over all ``reports``, duplicates and b'L' records included."""
        return sum(len(report.observations) for report in reports)

    @staticmethod
    def max_gap_in_reports(reports: Sequence[Report]) -> int:
        """The gap of the window rule, seconds: the largest first-to-first distance or the last report's span."""
        # The window rule's own helpers, so that the facade and the service cannot measure gaps differently.
        return windows._largest_gap_s([window_report(report) for report in reports])

    @staticmethod
    def divide_gapped_reports(reports: Sequence[Report]) -> tuple[list[Report], list[Report]]:
        """``reports`` split at their largest gap (the window rule's split): (before, after)."""
        viewed = [window_report(report) for report in reports]
        before, _ = windows._split_at_gap(viewed, windows._largest_gap_s(viewed))
        return list(reports[: len(before)]), list(reports[len(before) :])

    @staticmethod
    def delete_reports_files(reports: Sequence[Report]) -> None:
        """Delete the files of ``reports``."""
        _delete_files([report.file_path for report in reports])

    def _candidates(self, loaded: dict[str, Report]) -> Iterator[files.Report]:
        """The usable reports of the directory in name order, read one at a time as the rule asks for them."""
        for path in self.reports_files:
            try:
                report = Report.load(path)
            except (UnusableReport, FileNotFoundError, IsADirectoryError):
                continue
            if report.observations:
                loaded[path] = report
                yield window_report(report)

    def update_processable_reports(self) -> None:
        """Run the window rule on the files present; delete what it discards (gap, IP change)."""
        self.reports_files = self.fetch_reports(self.installation_dir_path)
        loaded: dict[str, Report] = {}
        selection = select_window(self._candidates(loaded), now_s=math.inf)
        _delete_files([str(report.path) for discard in selection.discards for report in discard.reports])
        window = selection.window.reports if selection.window is not None else ()
        self.processable_reports = [loaded[str(report.path)] for report in window]

    def get_ip_and_processable_observations(self) -> tuple[str | None, set[Observation] | None]:
        """Run the window rule: (ip, set of observations) of the next window, or (None, None) when there is none."""
        self.update_processable_reports()
        if not self.processable_reports:
            return None, None
        return self.collect_observations(self.processable_reports)

    @classmethod
    def collect_observations(cls, reports: Sequence[Report]) -> tuple[str | None, set[Observation]]:
        """The first report's client address and the union of the reports' observations; (None, set()) for none."""
        ip = client_ip(reports[0].from_dir) if reports else None
        return ip, {observation for report in reports for observation in report.observations}

    def delete_unneeded_reports(self) -> None:
        """Delete the files of the older half of the window (at least one file, C4: the service's S1)."""
        if self.processable_reports:
            self.delete_reports_files(self.processable_reports[: dispose_count(len(self.processable_reports))])

    def back_up_failed_results(self, results: dict[str, Any], ip: str) -> None:
        """Write ``{"results": results, "ip": ip}`` to ``failed-results/failed-report-<timestamp>.json``."""
        self._make_failed_results_dir()
        name = self.FAILED_REPORT_FILE_NAME_TEMPLATE.format(timestamp=results["timestamp"])
        data = json.dumps({"results": results, "ip": ip}).encode("utf-8")
        atomic_write_bytes(Path(self.failed_results_dir_path, name), data, purpose="failed-result")

    def _make_failed_results_dir(self) -> None:
        """Create ``failed-results/`` (not its parents) when it is missing."""
        if not os.path.isdir(self.failed_results_dir_path):
            os.mkdir(self.failed_results_dir_path)

    def failed_results_dir_is_empty(self) -> bool:
        """True when ``failed-results/`` is missing or empty."""
        return not os.path.isdir(self.failed_results_dir_path) or not os.listdir(self.failed_results_dir_path)
