"""Check that every step of cloudbuild.yaml runs only tools its container image has.

    python scripts/check_cloudbuild.py [--config cloudbuild.yaml] [--images FILE]

Each Cloud Build step is a fresh container of its image; only /workspace is carried from
one step to the next. For every step the check resolves the image (``name``, with the
build's substitutions), reads what runs (the entrypoint, the image's own entrypoint, or
the shell script given to ``bash -c``/``sh -c``), and looks at every command of the
script: the first word of each command after ``&&``, ``||``, ``;``, ``|``, ``$(...)``,
``if``, ``do``, ``env``, ``xargs`` and the like. A command is available when it is a
shell builtin or function, a tool of the image (scripts/cloudbuild_images.json, which says
where each fact comes from), a tool the step itself installed before (apt-get or pip
install of a package the table knows), or a file run by its path that this step, an
earlier one (through /workspace) or the repository provides. A virtual environment runs
only on the interpreter of the image that built it, and a binary copied from another
image only when the table calls it portable (statically linked).

It also fails when a step sets PATH without keeping its image's entries (Cloud Build does
not expand ``$PATH`` in a step's ``env``), when a ``$NAME`` is neither a substitution of
the build nor escaped as ``$$NAME``, and when a script uses shell syntax it cannot read.
Each problem names the step, the tool and the image. Exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import posixpath
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tools.infra.cloudbuild_steps import StepCheck
from tools.infra.cloudbuild_table import IMAGES, Table, substitute
from tools.infra.cloudbuild_tools import WORKSPACE, Carried

ROOT = Path(__file__).resolve().parents[1]


def _predecessors(steps: list[dict[str, Any]]) -> list[set[int]]:
    """For each step, the steps that finish before it starts (waitFor, transitively)."""
    ids = {str(s.get("id")): n for n, s in enumerate(steps) if s.get("id") is not None}
    before: list[set[int]] = []
    for n, step in enumerate(steps):
        wait = step.get("waitFor")
        if wait is None:
            direct = set(range(n))
        elif wait == ["-"]:
            direct = set()
        else:
            direct = {ids[str(w)] for w in wait if str(w) in ids}
        closure = set(direct)
        for d in direct:
            closure |= before[d]
        before.append(closure)
    return before


def check_config(
    config: Mapping[str, Any],
    table: Table,
    tracked: Mapping[str, bool] | None = None,
    root: Path | None = None,
) -> list[str]:
    """The problems of one build; ``tracked`` maps each file of the repository at
    ``root`` (the build's source) to whether it is executable."""
    files = dict(tracked or {})
    problems: list[str] = []
    options = config.get("options") or {}
    substitutions = {str(k): str(v) for k, v in (config.get("substitutions") or {}).items()}
    steps: list[dict[str, Any]] = list(config.get("steps") or [])
    before = _predecessors(steps)
    carried: list[Carried] = []

    for n, step in enumerate(steps):
        label = str(step.get("id") or f"#{n}")

        def subst(value: Any, label: str = label) -> str:
            text, found = substitute(str(value), substitutions, label)
            if options.get("substitutionOption") != "ALLOW_LOOSE":
                problems.extend(p for p in found if p not in problems)
            return text

        image_name = subst(step.get("name", ""))
        image = table.images.get(image_name)
        if image is None:
            problems.append(
                f"cloudbuild.yaml: step '{label}': image {image_name} is not described in "
                "scripts/cloudbuild_images.json; add it with its tools and where they come from"
            )
            carried.append(Carried())
            continue
        seen = Carried()
        for m in sorted(before[n]):
            seen.venvs.update(carried[m].venvs)
            seen.artifacts.update(carried[m].artifacts)
        directory = subst(step.get("dir", ""))
        cwd = posixpath.normpath(posixpath.join(WORKSPACE, directory))
        checker = StepCheck(label, image, table, seen, files, cwd, root)
        checker.check_env(subst(e) for e in [*(options.get("env") or []), *(step.get("env") or [])])
        script = step.get("script")
        entrypoint = step.get("entrypoint")
        checker.check_entry(
            subst(entrypoint) if entrypoint is not None else None,
            [subst(a) for a in step.get("args") or []],
            str(script) if script is not None else None,
        )
        problems.extend(checker.problems)
        carried.append(checker.leaves())
    return problems


def tracked_files(root: Path) -> dict[str, bool]:
    """The files git tracks under ``root`` (what a build uploads: ignored ones such as
    .venv are not), each with whether it is executable. Without git, none: a step that
    runs a file of the source by its path then fails the check rather than passing."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--stage", "-z"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    files = {}
    for entry in listed.stdout.decode().split("\0"):
        mode, _, name = entry.partition("\t")
        if name:
            files[name] = mode.split(" ")[0] in ("100755", "120000")
    return files


def check(config: Path = ROOT / "cloudbuild.yaml", images: Path = IMAGES) -> list[str]:
    loaded = yaml.safe_load(config.read_text())
    root = config.resolve().parent
    return check_config(loaded, Table.load(images), tracked_files(root), root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "cloudbuild.yaml")
    parser.add_argument("--images", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    problems = check(args.config, args.images)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.config.name}: every step runs only tools its image has")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
