"""The image table of the Cloud Build check, and Cloud Build's substitutions.

scripts/cloudbuild_images.json says what each image of cloudbuild.yaml provides and where
each fact comes from; Table reads it once for the whole build. substitute() does to a
step's fields what Cloud Build does before the step runs, so that the check looks at the
image and the arguments that really run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGES = Path(__file__).resolve().parents[2] / "scripts" / "cloudbuild_images.json"

# Cloud Build's own substitutions (docs: "Substituting variable values").
BUILT_IN_SUBSTITUTIONS = frozenset(
    "PROJECT_ID PROJECT_NUMBER BUILD_ID LOCATION TRIGGER_NAME COMMIT_SHA REVISION_ID "  # noqa: SIM905
    "SHORT_SHA REPO_NAME REPO_FULL_NAME BRANCH_NAME TAG_NAME REF_NAME "
    "TRIGGER_BUILD_CONFIG_PATH SERVICE_ACCOUNT_EMAIL SERVICE_ACCOUNT "
    "_HEAD_BRANCH _BASE_BRANCH _HEAD_REPO_URL _PR_NUMBER".split()
)
_SUBSTITUTION = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Image:
    name: str
    tools: frozenset[str]
    path: tuple[str, ...]
    entrypoint: str | None
    entrypoint_runs_args: bool
    portable: frozenset[str]


@dataclass(frozen=True)
class Table:
    images: dict[str, Image]
    apt: dict[str, frozenset[str]]
    pip: dict[str, frozenset[str]]
    venv_tools: frozenset[str]
    venv_versioned: tuple[str, ...]
    commands: dict[str, frozenset[str]]

    @classmethod
    def load(cls, path: Path = IMAGES) -> Table:
        raw: dict[str, Any] = json.loads(path.read_text())
        bases = raw["bases"]
        images = {}
        for name, image in raw["images"].items():
            base = bases[image["base"]]
            images[name] = Image(
                name=name,
                tools=frozenset(base["tools"]) | frozenset(image["tools"]),
                path=tuple(image.get("path", base["path"])),
                entrypoint=image.get("entrypoint"),
                entrypoint_runs_args=bool(image.get("entrypoint_runs_args", False)),
                portable=frozenset(image.get("portable", [])),
            )
        return cls(
            images=images,
            apt={k: frozenset(v["tools"]) for k, v in raw["apt_packages"].items()},
            pip={k.lower(): frozenset(v["tools"]) for k, v in raw["pip_packages"].items()},
            venv_tools=frozenset(raw["venv"]["tools"]),
            venv_versioned=tuple(raw["venv"]["versioned"]),
            commands={k: frozenset(v["needs"]) for k, v in raw["commands"].items()},
        )


def substitute(value: str, substitutions: Mapping[str, str], step: str) -> tuple[str, list[str]]:
    """Cloud Build's substitution of one string: ``$$`` is a ``$``, ``$NAME`` a value."""
    problems: list[str] = []

    def replace(found: re.Match[str]) -> str:
        if found[1] == "$":
            return "$"
        name = found[2] or found[3]
        if name in substitutions:
            return substitutions[name]
        if name in BUILT_IN_SUBSTITUTIONS:
            return f"<{name}>"
        problems.append(
            f"cloudbuild.yaml: step '{step}': ${name} is not a substitution of this build; "
            f"Cloud Build would refuse it (write $${name} for the shell)"
        )
        return ""

    return _SUBSTITUTION.sub(replace, value), problems
