"""Build one deployable source archive per Cloud Function, reproducibly.

    python scripts/package.py [--out dist] [function ...]

Each ``dist/<function>.zip`` holds the function's ``main.py`` at the root, the whole
``common/`` library and the hash-pinned ``requirements.txt``: what Cloud Functions builds
from. Entries are sorted, timestamps fixed and permissions normalised, so the same
sources give the same bytes, and a deployment keyed by the archive's SHA-256 changes
only when its content does. Prints one line per archive: name, SHA-256, size.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def functions(root: Path = ROOT) -> list[str]:
    return sorted(p.parent.name for p in (root / "functions").glob("*/main.py"))


def _library_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted((root / "common").rglob("*")):
        relative = path.relative_to(root)
        skipped = SKIPPED_PARTS & set(relative.parts) or path.suffix in SKIPPED_SUFFIXES
        if path.is_file() and not skipped:
            yield relative.as_posix(), path


def entries(function: str, root: Path = ROOT) -> list[tuple[str, Path]]:
    """(name in the archive, source file), sorted by name."""
    main = root / "functions" / function / "main.py"
    if not main.is_file():
        raise SystemExit(f"package: no function {function!r} (no {main})")
    found = [("main.py", main), ("requirements.txt", root / "requirements.txt")]
    found += list(_library_files(root))
    return sorted(found)


def build(function: str, out: Path, root: Path = ROOT) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{function}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, source in entries(function, root):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, so the permissions above are read as such
            archive.writestr(info, source.read_bytes(), compresslevel=9)
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one reproducible zip per function.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("function", nargs="*", help="default: every function")
    args = parser.parse_args(argv)
    for function in args.function or functions():
        archive = build(function, args.out)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        print(f"{archive.name}\t{digest}\t{archive.stat().st_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
