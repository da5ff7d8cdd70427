"""
The service's input: the reports tree, report files, their records and the selection of windows.

The package also carries the original tix-time-processor's report API (``Report``, ``ReportHandler``, …), from
:mod:`processor.compat.reports`.
"""

from processor.compat.observations import Observation, deserialize_observations, serialize_observations
from processor.compat.reports import (
    JSON_REPORT_SCHEMA,
    NotEnoughObservationsError,
    Report,
    ReportHandler,
    ReportJSONDecoder,
    ReportJSONEncoder,
    nanos_to_micros,
)

__all__ = [
    "JSON_REPORT_SCHEMA",
    "NotEnoughObservationsError",
    "Observation",
    "Report",
    "ReportHandler",
    "ReportJSONDecoder",
    "ReportJSONEncoder",
    "deserialize_observations",
    "nanos_to_micros",
    "serialize_observations",
]
