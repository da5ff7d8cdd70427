"""A strict logfmt parser for the tests: ``key=value`` pairs, values bare or double-quoted with JSON escapes."""

from __future__ import annotations

import json
import re

_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s="]*)(?=\s|$)')
_WORD = re.compile(r'[^\s="]+(?=\s|$)')


def parse(line: str) -> tuple[str, dict[str, str]]:
    """Split ``line`` into its event phrase and its fields; raise ``ValueError`` where it is not logfmt."""
    if "\n" in line or "\r" in line:
        raise ValueError(f"more than one line: {line!r}")
    words, fields, position = [], {}, 0
    while position < len(line):
        if line[position] == " ":
            position += 1
            continue
        pair = _PAIR.match(line, position)
        if pair:
            key, value = pair.groups()
            if key in fields:
                raise ValueError(f"field {key!r} twice in {line!r}")
            fields[key] = json.loads(value) if value.startswith('"') else value
            position = pair.end()
            continue
        word = _WORD.match(line, position)
        if not word or fields:
            raise ValueError(f"not logfmt at column {position}: {line!r}")
        words.append(word.group())
        position = word.end()
    return " ".join(words), fields
