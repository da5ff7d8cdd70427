"""The reports tree: which ``<user>/<installation>`` directories exist below the base path (reports spec §1)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from processor.logs import EventLogger, event_logger

log = event_logger(__name__)

#: A canonical positive decimal id (change D12): no sign, no leading zero, at most 19 digits.
_ID = re.compile(r"[1-9][0-9]{0,18}\Z")

#: Largest id value: the largest signed 64-bit integer.
MAX_ID = 9_223_372_036_854_775_807


def is_canonical_id(text: object) -> bool:
    """
    True when ``text`` is a string holding a canonical positive decimal id no larger than 2**63 - 1 (D12, S7).

    Anything but a string (an integer id, a list from a hand-made message) is no id (H11).
    """
    return isinstance(text, str) and bool(_ID.match(text)) and int(text) <= MAX_ID


@dataclass(frozen=True, slots=True, order=True)
class InstallationDir:
    """One installation directory; orders by the numeric (user, installation) pair."""

    user: int
    installation: int
    path: Path

    @property
    def user_id(self) -> str:
        return str(self.user)

    @property
    def installation_id(self) -> str:
        return str(self.installation)


def _id_directories(directory: Path, what: str, context: EventLogger = log) -> list[tuple[int, Path]]:
    """
    The real sub-directories of ``directory`` named by a canonical id, in numeric order.

    Others are skipped with a WARNING whose field ``what`` is the entry's name (escaped, H6).
    """
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if not is_canonical_id(entry.name):
                context.bind(**{what: entry.name}).warning("skipping entry not named by a decimal id", path=entry.path)
                continue
            if not stat.S_ISDIR(entry.stat(follow_symlinks=False).st_mode):
                context.bind(**{what: entry.name}).warning("skipping entry, not a real directory", path=entry.path)
                continue
            found.append((int(entry.name), Path(entry.path)))
    found.sort()
    return found


def installation_dirs(base: Path) -> Iterator[InstallationDir]:
    """
    Every installation directory below ``base``, in ascending numeric (user, installation) order.

    Entries that are not real directories named by a canonical decimal id are skipped with a WARNING; symbolic
    links are never followed below ``base``. An unreadable user directory is logged and skipped; an unreadable
    ``base`` raises ``OSError``.
    """
    for user, user_path in _id_directories(base, "user"):
        try:
            installations = _id_directories(user_path, "installation", log.bind(user=user))
        except OSError as exc:
            log.error("cannot list user directory", user=user, error=exc.strerror or exc)
            continue
        for installation, path in installations:
            yield InstallationDir(user, installation, path)


def checked_directory(
    base: Path, user_id: str, installation_id: str, path_hint: str | Path | None, run_log: EventLogger
) -> Path | None:
    """
    ``<base>/<user_id>/<installation_id>`` when both ids are canonical decimals and both levels are real
    directories (no link followed below ``base``), else None, logged (service spec §3.4 step 1). ``path_hint``,
    the message's path, is only compared with it.
    """
    directory = Path(base) / user_id / installation_id
    if not (
        is_canonical_id(user_id)
        and is_canonical_id(installation_id)
        and _is_real_directory(directory.parent)
        and _is_real_directory(directory)
    ):
        run_log.warning("installation skipped, not a valid directory", base=base)
        return None
    if path_hint is not None and Path(path_hint) != directory:
        run_log.warning("installation path differs from the computed one", given=path_hint, used=directory)
    return directory


def _is_real_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
