"""Draw the dependency tree of common/'s packages from the imports of every module.

    python scripts/import_tree.py [--check] [--write-doc]

Prints the tree of the packages (functions and tools on top, each package drawn once,
under the highest one that imports it) and each package's direct imports. --check also
prints every import that breaks a layering rule (tools/layering.py) and exits 1 if there
is one; --write-doc puts the drawing into docs/ARCHITECTURE.md under "Packages and their
dependencies", which tests/test_layering.py compares with this output.
"""

from __future__ import annotations

import argparse
import sys

from tools.layering import DOC, imports, render, violations, with_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the package dependency tree.")
    parser.add_argument("--check", action="store_true", help="exit 1 on a layering violation")
    parser.add_argument("--write-doc", action="store_true", help=f"update {DOC.name}")
    args = parser.parse_args(argv)
    found = imports()
    tree = render(found)
    print(tree, end="")
    if args.write_doc:
        DOC.write_text(with_tree(DOC.read_text(), tree))
    if args.check:
        problems = violations(found)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
