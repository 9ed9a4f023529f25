"""docs/CLI.md's walk-through writes its example CSV outside the checkout: a reader who
pastes it leaves nothing behind in the repository."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def csv_step() -> str:
    """The shell lines of the walk-through that write small.csv (up to the heredoc's end)."""
    text = (ROOT / "docs" / "CLI.md").read_text()
    start = text.index("small.csv")
    start = text.rindex("\n", 0, start) + 1
    end = text.index("\nPY\n", start) + len("\nPY\n")
    # the interpreter running the tests stands in for the checkout's .venv/bin/python
    return text[start:end].replace(".venv/bin/python", shlex.quote(sys.executable))


def test_the_example_csv_is_written_to_a_temporary_folder(tmp_path: Path) -> None:
    before = set(ROOT.iterdir())
    environ = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-euc", csv_step()],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert set(ROOT.iterdir()) == before
    (written,) = tmp_path.glob("*/small.csv")
    lines = written.read_text().splitlines()
    assert len(lines) == 301
    assert lines[0].endswith(",risk_class")
