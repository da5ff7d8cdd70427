"""Where the real TiX data of ``../shared/data`` lives, and what it holds (read by tests, never copied)."""

from pathlib import Path

#: The project's shared data lives beside the checkout (CI lays it there).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The six calibration experiments of ``calibration/`` (data README).
CALIBRATION_EXPERIMENTS = (
    "batch-test-report-1b",
    "batch-test-reports-2b",
    "batch-test-reports-3b",
    "batch-test-reports-4b",
    "batch-test-reports-5b",
    "batch-test-reports-6b",
)
