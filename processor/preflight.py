"""What a process checks before it starts: the directories and files of its run mode, and all of ``config --check``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from processor.config import MISSING_CREDENTIALS_WARNING, Config, ProcessorType


def check_environment(config: Config, *, processor_type: ProcessorType | None = None) -> list[str]:
    """
    The problems, each "<VARIABLE>: <problem>", of the directories and files of a run mode (default the configured).

    WORKER and STANDALONE: ``TIX_REPORTS_BASE_PATH`` is an existing directory the process can list, read and
    write; the prefix and AS-names files of the ``pfx2as`` backend are readable. BEAT and STANDALONE:
    ``CELERY_BEAT_SCHEDULE_DIR`` is created if missing and must be writable.
    """
    mode = processor_type or config.processor_type
    problems: list[str] = []
    if mode in ("WORKER", "STANDALONE"):
        base = config.reports_base_path
        try:
            if not base.is_dir():
                problems.append(f"TIX_REPORTS_BASE_PATH: not an existing directory: '{base}'")
            elif not os.access(base, os.R_OK | os.W_OK | os.X_OK):
                problems.append(f"TIX_REPORTS_BASE_PATH: the process cannot list, read and write '{base}'")
            else:
                os.listdir(base)
        except OSError as exc:  # is_dir() too raises, on a name too long or a parent it may not search
            problems.append(f"TIX_REPORTS_BASE_PATH: cannot list '{base}': {exc.strerror or exc}")
        if config.iptoas_backend == "pfx2as" and config.iptoas_pfx2as_file is not None:
            problem = _unreadable(config.iptoas_pfx2as_file)
            if problem:
                problems.append(f"TIX_IPTOAS_PFX2AS_FILE: {problem}")
        if config.iptoas_asnames_file is not None:
            problem = _unreadable(config.iptoas_asnames_file)
            if problem:
                problems.append(f"TIX_IPTOAS_ASNAMES_FILE: {problem}")
    if mode in ("BEAT", "STANDALONE"):
        directory = config.beat_schedule_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"CELERY_BEAT_SCHEDULE_DIR: cannot create '{directory}': {exc.strerror or exc}")
        else:
            if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
                problems.append(f"CELERY_BEAT_SCHEDULE_DIR: not a writable directory: '{directory}'")
    return problems


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it can."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        return f"is a directory: '{path}'"
    except OSError as exc:
        return f"cannot read '{path}': {exc.strerror or exc}"
    return None


def check(env: Mapping[str, str]) -> tuple[Config, list[str], list[str]]:
    """
    Every problem and warning of ``env`` in one pass, each "<VARIABLE>: <text>": the values, then the files of
    the mode (an unknown mode is checked as STANDALONE, whose checks include those of the other two modes).
    """
    config, problems = Config.read_env(env)
    problems += check_environment(config)
    warnings = list(config.warnings)
    if config.processor_type in ("WORKER", "STANDALONE") and not config.api_credentials_present:
        warnings.append(MISSING_CREDENTIALS_WARNING)
    return config, problems, warnings
