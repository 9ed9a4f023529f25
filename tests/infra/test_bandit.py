"""bandit (as `make lint` runs it) finds nothing above low severity, and every ``nosec``
marks a line it would otherwise report: a stale one would hide a future finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BANDIT = Path(sys.executable).with_name("bandit")


@pytest.mark.skipif(not BANDIT.exists(), reason="bandit is a test dependency (make .venv/.dev)")
def test_bandit_is_clean_and_no_nosec_is_unused() -> None:
    done = subprocess.run(
        [
            str(BANDIT),
            "-r",
            *("common", "functions", "tools", "scripts"),
            "--severity-level",
            "medium",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    unused = [line for line in done.stderr.splitlines() if "nosec encountered" in line]
    assert unused == []
