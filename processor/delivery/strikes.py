"""
Strikes of a failed result that tix-api refuses with a 5xx while it accepts the others (reliability spec §6, H9).

tix-api answers 500 for every POST of a result it cannot store (an IPv6 client, an IP its AS helper cannot
resolve): without strikes such a result would be re-sent by every run for ever. While tix-api is known up (the
run delivered something, or the process's client got a 2xx within the last processing period), a run gives each
result refused in it one strike, counted in a sidecar ``failed-results/.strikes-<file name>``; at 3 strikes, from
3 different runs, the result moves to ``failed-results/rejected/``, logged at ERROR with reason
``refused_while_api_up``. An outage of the whole API (no such 2xx) gives no strike.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from processor.atomic import atomic_write_bytes
from processor.delivery.failed_results import FILE_MODE, STRIKES_PREFIX, reject_failed_result
from processor.logs import EventLogger

#: Strikes, from as many runs, after which a refused result is retired to ``rejected/``.
MAX_STRIKES = 3

#: Largest strikes sidecar read, in bytes (it holds a small integer).
_MAX_SIDECAR_BYTES = 64


def strikes_of(path: Path) -> int:
    """The strikes recorded for the failed result ``path``; 0 when there is no readable sidecar."""
    try:
        fd = os.open(path.with_name(STRIKES_PREFIX + path.name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return 0
        text = os.read(fd, _MAX_SIDECAR_BYTES).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else 0


def strike_refused(paths: Iterable[Path], *, fence: Callable[[], None], run_log: EventLogger) -> int:
    """
    Give one strike to each failed result of ``paths`` (refused with a 5xx while tix-api is known up).

    A result reaching :data:`MAX_STRIKES` moves to ``rejected/`` (ERROR, reason ``refused_while_api_up``); the
    others keep their count in their sidecar (WARNING). ``fence`` is called before every change. Returns the number
    of results retired. ``OSError`` propagates (the run ends with an I/O error).
    """
    retired = 0
    for path in paths:
        strikes = strikes_of(path) + 1
        if not os.path.lexists(path):
            continue
        fence()
        if strikes >= MAX_STRIKES:
            moved = reject_failed_result(path, fence=fence)
            retired += 1
            run_log.error(
                "failed result rejected",
                file=path.name,
                reason="refused_while_api_up",
                strikes=strikes,
                moved_to=f"{moved.parent.name}/{moved.name}",
            )
        else:
            sidecar = path.with_name(STRIKES_PREFIX + path.name)
            atomic_write_bytes(sidecar, f"{strikes}\n".encode("ascii"), purpose="strikes", mode=FILE_MODE)
            run_log.warning("failed result refused while tix-api accepts others", file=path.name, strikes=strikes)
    return retired
