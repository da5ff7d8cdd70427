"""Running ``python -m processor`` as an operator does: a real process from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def processor_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m processor ARGS`` from the repository root, with no ``TIX_`` variable but those given."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TIX_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
