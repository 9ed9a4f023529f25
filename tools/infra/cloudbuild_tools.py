"""What the container of one Cloud Build step has, and what it leaves for later steps.

StepTools keeps the state of one step: its image's tools, what it installs with apt-get or
pip, the virtual environments it builds, the binaries it copies, and what earlier steps
left in /workspace. It answers whether a command runs there and, if not, why. Walking the
step's scripts to find the commands is StepCheck's part (cloudbuild_steps.py); keeping
the two apart keeps what makes a tool available in one place.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tools.infra.cloudbuild_table import Image, Table
from tools.infra.shell_commands import Word

WORKSPACE = "/workspace"

_PIP_VALUE_OPTIONS = frozenset(
    "-r --requirement -c --constraint -e --editable -t --target -i --index-url "  # noqa: SIM905
    "--extra-index-url -f --find-links --prefix --root --platform --python-version "
    "--implementation --abi --progress-bar --report --src --upgrade-strategy --cert "
    "--client-cert --cache-dir --log --proxy --retries --timeout --exists-action "
    "--trusted-host --no-binary --only-binary --config-settings -C --python".split()
)
_LOOKUP = re.compile(r"^\$\((?:command\s+-v|which)\s+([\w.+-]+)\s*\)$")


@dataclass
class Venv:
    path: str
    step: str
    image: str
    packages: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Artifact:
    path: str
    tool: str
    step: str
    image: str


@dataclass
class Carried:
    """What a step leaves in /workspace for the steps after it."""

    venvs: dict[str, Venv] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)


class StepTools:
    """What one step can run: its image's tools, its own installs, what it was left."""

    def __init__(
        self,
        step: str,
        image: Image,
        table: Table,
        carried: Carried,
        tracked: Mapping[str, bool],
        cwd: str,
        root: Path | None = None,
    ) -> None:
        self.step = step
        self.image = image
        self.table = table
        self.carried = carried
        self.tracked = tracked
        self.root = root
        self.cwd = cwd
        self.available: set[str] = set(image.tools)
        self.functions: set[str] = set()
        self.path_dirs: list[str] = []
        self.venvs: dict[str, Venv] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.unknown_packages: list[str] = []
        self.problems: list[str] = []

    # -- results ---------------------------------------------------------------------

    def leaves(self) -> Carried:
        inside = WORKSPACE + "/"
        return Carried(
            venvs={p: v for p, v in self.venvs.items() if p.startswith(inside)},
            artifacts={p: a for p, a in self.artifacts.items() if p.startswith(inside)},
        )

    def problem(self, text: str) -> None:
        message = f"cloudbuild.yaml: step '{self.step}': {text}"
        if message not in self.problems:
            self.problems.append(message)

    def missing(self, tool: str, purpose: str = "") -> str:
        hint = ""
        if self.unknown_packages:
            hint = (
                f" (the step installs {', '.join(self.unknown_packages)}, which "
                "scripts/cloudbuild_images.json does not describe)"
            )
        return (
            f"runs {tool}{purpose}, which image {self.image.name} does not have and the step "
            f"does not install{hint}"
        )

    # -- what a step installs or makes ---------------------------------------------

    def apt(self, args: list[Word]) -> None:
        words = [w.text for w in args]
        if "install" not in words:
            return
        for package in words[words.index("install") + 1 :]:
            if package.startswith("-") or not package:
                continue
            name = re.split(r"[=:/]", package)[0]
            if name in self.table.apt:
                self.available |= self.table.apt[name]
            elif name not in self.unknown_packages:
                self.unknown_packages.append(name)

    def pip(self, pip: str, args: list[Word]) -> None:
        words = [w.text for w in args]
        if "install" not in words:
            return
        packages: list[str] = []
        rest = words[words.index("install") + 1 :]
        skip = False
        for word in rest:
            if skip:
                skip = False
            elif word.startswith("-"):
                skip = word in _PIP_VALUE_OPTIONS
            elif word.startswith((".", "/")):
                continue  # a folder: this repository's own code, which no step runs as a tool
            else:
                packages.append(re.split(r"[\[=<>!~;@ ]", word)[0].lower().replace("_", "-"))
        venv = self.venv_of(self.normalise(pip)) if "/" in pip else None
        for package in packages:
            tools = self.table.pip.get(package)
            if tools is None:
                if package not in self.unknown_packages:
                    self.unknown_packages.append(package)
            elif venv is not None:
                venv.packages.add(package)
            else:
                self.available |= tools

    def python(self, python: str, args: list[Word]) -> None:
        words = [w.text for w in args]
        if words[:2] == ["-m", "pip"]:
            self.pip(
                posixpath.join(posixpath.dirname(python), "pip") if "/" in python else "pip",
                args[2:],
            )
        elif words[:2] == ["-m", "venv"]:
            targets = []
            skip = False
            for word in words[2:]:
                if skip:
                    skip = False
                elif word.startswith("-"):
                    skip = word == "--prompt"
                else:
                    targets.append(word)
            self.venv(python, targets)

    def venv(self, python: str, targets: list[str]) -> None:
        for target in targets:
            path = self.normalise(target)
            self.venvs[path] = Venv(path, self.step, self.image.name)

    def copy(self, args: list[Word]) -> None:
        operands = [w for w in args if not w.text.startswith("-")]
        if len(operands) < 2:
            return
        *sources, destination = operands
        target = self.normalise(destination.text)
        for source in sources:
            looked_up = _LOOKUP.match(source.text)
            tool = looked_up[1] if looked_up else posixpath.basename(source.text)
            path = target
            if destination.text.endswith("/") or len(sources) > 1:
                path = posixpath.join(target, tool)
            self.artifacts[path] = Artifact(path, tool, self.step, self.image.name)

    # -- finding a command --------------------------------------------------------

    def normalise(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, path))

    def venv_of(self, path: str) -> Venv | None:
        for venvs in (self.venvs, self.carried.venvs):
            for root, venv in venvs.items():
                if path.startswith(root + "/bin/"):
                    return venv
        return None

    def venv_tools(self, venv: Venv) -> set[str]:
        tools = set(self.table.venv_tools)
        for package in venv.packages:
            tools |= self.table.pip[package]
        return tools

    def resolve(self, name: str) -> bool:
        """Whether ``name`` runs here; reports the problem when it does not."""
        reason = self.why_not(name)
        if reason is not None:
            self.problem(reason)
        return reason is None

    def why_not(self, name: str, purpose: str = "") -> str | None:
        """None when ``name`` runs in this step, else why not."""
        if "/" not in name:
            if name in self.available:
                return None
            for folder in self.path_dirs:
                candidate = posixpath.join(folder, name)
                if (
                    self.venv_of(candidate)
                    or candidate in self.artifacts
                    or candidate in self.carried.artifacts
                ):
                    return self.why_not(candidate, purpose)
            return self.missing(name, purpose)
        path = self.normalise(name)
        tool = posixpath.basename(path)
        venv = self.venv_of(path)
        if venv is not None:
            provided = self.venv_tools(venv)
            versioned = any(
                tool.startswith(p) and tool[len(p) :].isdigit() for p in self.table.venv_versioned
            )
            if tool not in provided and not versioned:
                return (
                    f"runs {name}{purpose}, which the virtual environment {venv.path} does not "
                    "provide (install the package that does into it in this step)"
                )
            if venv.image != self.image.name:
                return (
                    f"runs {name}{purpose} from the virtual environment {venv.path} that step "
                    f"'{venv.step}' built on image {venv.image}; a virtual environment runs only "
                    f"on the interpreter of the image that built it, and this step runs "
                    f"{self.image.name}: build it in this step"
                )
            return None
        artifact = self.artifacts.get(path) or self.carried.artifacts.get(path)
        if artifact is not None:
            images = self.table.images
            portable = artifact.image in images and artifact.tool in images[artifact.image].portable
            if artifact.image != self.image.name and not portable:
                return (
                    f"runs {name}{purpose}, copied from image {artifact.image} by step "
                    f"'{artifact.step}'; {artifact.tool} is not known to run outside that image "
                    f"(this step runs {self.image.name})"
                )
            return None
        if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
            relative = posixpath.relpath(path, WORKSPACE)
            if self.tracked.get(relative):
                return None  # an executable file of the repository, uploaded into /workspace
            if relative in self.tracked:
                return (
                    f"runs {name}{purpose}, a file of the repository that is not executable; "
                    "run it with its interpreter"
                )
            hint = ""
            if posixpath.basename(posixpath.dirname(path)) == "bin":
                hint = (
                    "; a virtual environment made by another step (or by make) is not seen "
                    "here and runs only on the image that built it: build it in this step"
                )
            return (
                f"runs {name}{purpose}, which neither this step nor an earlier one puts in "
                f"/workspace (image {self.image.name}){hint}"
            )
        if tool in self.available and posixpath.dirname(path) in self.image.path:
            return None
        return self.missing(name, purpose)
