"""Permission cases for real: the tests run as root, who reads any file, so the case runs without CAP_DAC_OVERRIDE."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.commands import REPO

#: Capabilities that let root bypass file permissions; dropped from the bounding set before the exec.
DAC_CAPABILITIES = "-dac_override,-dac_read_search"


def without_dac_prefix() -> list[str]:
    """
    The command prefix that runs a program without the capabilities that bypass file permissions.

    As root: ``setpriv --bounding-set=-dac_override,-dac_read_search`` (the test is skipped without setpriv). As
    another user: nothing, permissions hold already.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run a permission case as root without CAP_DAC_OVERRIDE")
    return [setpriv, f"--bounding-set={DAC_CAPABILITIES}"]


def without_dac_override(code: str, *args: str) -> str:
    """Run ``python -c code args`` from the repository root without CAP_DAC_OVERRIDE; return its standard output."""
    done = subprocess.run(
        [*without_dac_prefix(), sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout
