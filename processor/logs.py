"""
One event per log line: a fixed phrase, then ``key=value`` fields that a logfmt parser reads.

``log = event_logger(__name__).bind(user="23", installation="41")`` binds the ids once;
``log.info("window posted", first=name, posted=12)`` then writes
``window posted user=23 installation=41 first=1700000000.txt posted=12``. A value holding a space, a quote, an
``=``, a backslash or anything unprintable (a newline in a file name) is quoted with JSON escapes, so no value can
forge a second line or field; ``None`` is written empty (``asn=``). Each record keeps ``event`` (the phrase) and
``fields`` (the dict) as attributes, which the tests read instead of the rendered line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

#: Keyword arguments that belong to :mod:`logging` itself; every other keyword is a field of the event.
_LOGGING_KEYWORDS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})

#: Characters that make a value need quotes in logfmt.
_SPECIAL = frozenset(' "=\\')


def logfmt_value(value: object) -> str:
    """Return ``value`` written as one logfmt value (empty for ``None``; quoted and escaped where needed)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and _SPECIAL.isdisjoint(text):
        return text
    return json.dumps(text)  # ASCII only: \n, \", \\ and \uXXXX cannot end the line or the field


class EventLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose calls take an event phrase and keyword fields; :meth:`bind` adds fields to every line."""

    def __init__(self, logger: logging.Logger, **context: object) -> None:
        super().__init__(logger, context)

    def bind(self, **fields: object) -> EventLogger:
        """A logger for the same destination whose lines carry ``fields`` after the ones bound already."""
        return EventLogger(self.logger, **{**(self.extra or {}), **fields})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = {**(self.extra or {})}
        for key in [key for key in kwargs if key not in _LOGGING_KEYWORDS]:
            fields[key] = kwargs.pop(key)
        rendered = " ".join([str(msg), *(f"{key}={logfmt_value(value)}" for key, value in fields.items())])
        kwargs["extra"] = {**kwargs.get("extra", {}), "event": msg, "fields": fields}
        # No positional arguments are passed, so a '%' in a value is never taken for a format directive.
        return rendered, kwargs


def event_logger(name: str, **context: object) -> EventLogger:
    """The :class:`EventLogger` of the standard logger ``name``, with ``context`` bound."""
    return EventLogger(logging.getLogger(name), **context)
