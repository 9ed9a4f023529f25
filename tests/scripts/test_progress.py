"""Progress bars only on a terminal: a log or a CI console gets no carriage returns."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tools.progress import bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_on_a_stream_that_is_not_a_terminal() -> None:
    log = io.StringIO()
    assert list(bar(range(3), file=log, desc="building models")) == [0, 1, 2]
    assert log.getvalue() == ""


def test_a_terminal_gets_the_bar() -> None:
    terminal = Terminal()
    list(bar(range(3), file=terminal, desc="building models"))
    assert "\r" in terminal.getvalue()
    assert "building models" in terminal.getvalue()


def test_the_trainer_writes_no_carriage_return_into_a_log(tmp_path: Path) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IPO_")},
        "IPO_DATA_DIR": str(tmp_path / "data"),
        "IPO_ENV_FILE": str(tmp_path / "test.env"),
    }
    done = subprocess.run(
        [sys.executable, "scripts/train_models.py", "--models", "risk"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "risk 1.0.0" in done.stdout
    assert "\r" not in done.stderr + done.stdout


def test_disable_still_turns_the_bar_off_on_a_terminal() -> None:
    terminal = Terminal()
    list(bar([], file=terminal, disable=True))
    assert terminal.getvalue() == ""
