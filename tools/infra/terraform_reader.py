"""Reading the Terraform of this repository with python-hcl2, for scripts/check_infra.py.

python-hcl2 keeps the quotes of strings and labels and renders expressions as
``${...}`` text, and parsing a folder takes about a second; these helpers undo the
quoting, flatten expressions for comparison and parse each text once, so that the
checks read like the Terraform they check.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import hcl2
except ModuleNotFoundError:  # a test dependency: `make run` alone does not install it
    raise SystemExit(
        "reading terraform/ needs python-hcl2, a test dependency: run `make check-infra`, "
        "which installs it"
    ) from None


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> dict[str, Any]:
    """Parsing is slow (about a second for the whole folder); the same text parses once."""
    parsed: dict[str, Any] = hcl2.loads(text)
    return parsed


class Terraform:
    """The parsed .tf files of one folder (not its modules)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = {path.name: _parse(path.read_text()) for path in sorted(folder.glob("*.tf"))}

    def blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, parsed in self.files.items():
            for block in parsed.get(kind, []):
                yield name, block

    def local(self, name: str) -> tuple[str, Any] | None:
        for file, block in self.blocks("locals"):
            if name in block:
                return file, block[name]
        return None

    def resources(self, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
        found = {}
        for file, block in self.blocks("resource"):
            for rtype, named in block.items():
                if unquote(rtype) == kind:
                    for rname, body in named.items():
                        found[unquote(rname)] = (file, body)
        return found


def expression_text(value: Any) -> str:
    """An HCL expression as python-hcl2 renders it, without ``${...}`` and extra spaces."""
    text = " ".join(str(unquote(value)).split())
    while text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    return text


def object_attribute(expression: str, name: str) -> str | None:
    """The value given to ``name = ...`` inside an object constructor, as written."""
    found = re.search(rf"\b{name}\s*=\s*([^,}}]+)", expression)
    return found[1].strip() if found else None
