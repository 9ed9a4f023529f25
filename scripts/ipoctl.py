"""The command-line client of the model registry and prediction API (docs/CLI.md).

    python scripts/ipoctl.py [--url URL] [--token TOKEN] [--json] [--timeout S] COMMAND ...

Commands: models, show, register, stage, promote, rollback, history, predict,
canary-check. ``IPOCTL_URL`` and ``IPOCTL_TOKEN`` give the defaults of --url and --token.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
