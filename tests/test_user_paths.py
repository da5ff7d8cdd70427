"""What a user reads (help texts, README, docs, the notebook) names only paths a user has: nothing outside the clone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The project's shared data and specification lie beside the checkout on the project's machines, not a user's.
OUTSIDE = "../shared"

COMMANDS = [
    [sys.executable, "-m", "processor", "--help"],
    *([sys.executable, "-m", "processor", command, "--help"] for command in
      ("analyze", "simulate", "process", "status", "calibrate")),
    [sys.executable, "reports_batch_formatter/formatter.py", "--help"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command[2:]))
def test_help_names_no_path_outside_the_clone(command):
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    assert 0 == done.returncode, done.stderr
    assert OUTSIDE not in done.stdout


@pytest.mark.parametrize(
    "document",
    ["README.md", "general_analysis_notebook.ipynb", *(str(path.relative_to(REPO)) for path in REPO.glob("docs/*.md"))],
)
def test_documents_name_no_path_outside_the_clone(document):
    assert OUTSIDE not in (REPO / document).read_text(encoding="utf-8")
