"""The machine's Chromium for tests that look at a page as a user's browser draws it.

Playwright drives the Debian ``chromium`` package through ``executable_path``; it never
downloads a browser of its own. ``make test`` installs the package when run as root."""

from __future__ import annotations

import os
import shutil

CHROMIUM_INSTALL_HINT = (
    "chromium is not installed: run `apt-get install chromium` "
    "(make test does this when run as root), or set IPO_CHROMIUM to a Chromium executable"
)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """A Chromium executable (IPO_CHROMIUM first, then PATH), or None and how to get one."""
    named = os.environ.get("IPO_CHROMIUM")
    if named:
        found = shutil.which(named)
        return (found, "") if found else (None, f"IPO_CHROMIUM={named} is not an executable")
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path, ""
    return None, CHROMIUM_INSTALL_HINT
