"""Build one deployable source archive per Cloud Function, reproducibly.

    python scripts/package.py [--out dist] [--with-pickled-models] [function ...]

Each ``dist/<function>.zip`` holds the function's ``main.py`` at the root, the ``common/``
modules it can reach (with the data files beside them) and a ``requirements.txt`` of only
the distributions those modules import, pinned with the lock's versions and hashes
(scripts/package_deps.py says how both are derived). A prediction function so ships
neither the scans' charting nor the CLI's libraries, and Cloud Functions installs less.
``tools/`` is never included. ``--with-pickled-models`` adds scikit-learn and joblib,
which only a model registered as a joblib pickle needs.

Entries are sorted, timestamps fixed and permissions normalised, so the same sources give
the same bytes, and a deployment keyed by the archive's SHA-256 changes only when its
content does. Prints one line per archive: name, SHA-256, size. Run it with the Python
of an environment installed from ``requirements.txt``: the distributions' metadata is
read from there.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

from package_deps import ROOT, closure, requirements_text

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def functions(root: Path = ROOT) -> list[str]:
    return sorted(p.parent.name for p in (root / "functions").glob("*/main.py"))


def _data_files(package_dir: Path) -> list[Path]:
    """Non-Python files of a package, with those of its plain (non-package) folders."""
    found = []
    for path in package_dir.iterdir():
        if path.is_file() and path.suffix not in {".py", *SKIPPED_SUFFIXES}:
            found.append(path)
        elif (
            path.is_dir() and path.name not in SKIPPED_PARTS and not (path / "__init__.py").exists()
        ):
            found += [
                p for p in path.rglob("*") if p.is_file() and p.suffix not in SKIPPED_SUFFIXES
            ]
    return found


def library_files(function: str, root: Path = ROOT) -> list[Path]:
    """The ``common/`` files the function can reach: its modules and their packages' data."""
    files: set[Path] = set()
    for module in closure(function, root).modules:
        base = root.joinpath(*module.split("."))
        if (base / "__init__.py").is_file():
            files.add(base / "__init__.py")
            files.update(_data_files(base))
        else:
            files.add(base.with_suffix(".py"))
    return sorted(files)


def entries(
    function: str, root: Path = ROOT, with_pickled_models: bool = False
) -> list[tuple[str, bytes]]:
    """(name in the archive, content), sorted by name."""
    main = root / "functions" / function / "main.py"
    if not main.is_file():
        raise SystemExit(f"package: no function {function!r} (no {main})")
    found = [
        ("main.py", main.read_bytes()),
        ("requirements.txt", requirements_text(function, root, with_pickled_models).encode()),
    ]
    found += [
        (p.relative_to(root).as_posix(), p.read_bytes()) for p in library_files(function, root)
    ]
    names = [name for name, _ in found]
    if any(name.split("/")[0] == "tools" for name in names):
        raise SystemExit(f"package: {function} would ship tools/, which no archive may hold")
    return sorted(found)


def build(function: str, out: Path, root: Path = ROOT, with_pickled_models: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{function}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, content in entries(function, root, with_pickled_models):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, so the permissions above are read as such
            archive.writestr(info, content, compresslevel=9)
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one reproducible zip per function.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--with-pickled-models",
        action="store_true",
        help="add scikit-learn and joblib, to serve models registered as joblib pickles",
    )
    parser.add_argument("function", nargs="*", help="default: every function")
    args = parser.parse_args(argv)
    for function in args.function or functions():
        archive = build(function, args.out, with_pickled_models=args.with_pickled_models)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        print(f"{archive.name}\t{digest}\t{archive.stat().st_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
