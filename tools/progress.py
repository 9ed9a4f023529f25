"""Progress bars for the command-line scripts, on a terminal only.

A bar redraws itself with carriage returns: in a log file or a CI console that is one
unreadable line per update. Piped or redirected, the scripts print no bar at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm


def bar(
    iterable: Iterable[Any] | None = None, *, file: TextIO | None = None, **options: Any
) -> tqdm[Any]:
    """tqdm on ``file`` (stderr), shown only when it is a terminal; ``disable=True`` still
    turns it off."""
    stream = sys.stderr if file is None else file
    disabled = bool(options.pop("disable", False)) or not stream.isatty()
    return tqdm(iterable, file=stream, disable=disabled, **options)
