"""What one Cloud Function runs: the ``common/`` modules it can reach and the distributions
they import, each pinned with the hashes of ``requirements.txt``.

The modules are a static import closure (every ``import`` anywhere in a module, lazy ones
inside functions included, ``if TYPE_CHECKING:`` blocks excluded) from
``functions/<f>/main.py``, ``common.api.dispatch``, the handler modules of the function's
routes (``x-ipo-handler``; ``common.api.operations`` imports them by name) and every model
runtime module (``common.models`` imports them by kind at run time, and promotion,
registration and the ensemble load any kind). The distributions are the ones those
modules' third-party imports come from (``importlib.metadata``), with everything they
require in turn, extras included; their versions and hashes are copied from
``requirements.txt``, so a function's install is the lock's, only smaller.

scikit-learn and joblib are imported only to unpickle a model a user registered as a
joblib file (``common.models.base.joblib_load``); they are left out unless asked for
(``with_pickled_models``), and a function without them answers such a model with a clear
error instead.

Run in the environment ``requirements.txt`` installs: the mapping from import names to
distributions and their dependencies is read from the installed metadata.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare interpreter: the distributions' metadata is not there either
    raise SystemExit(
        "package: run with the Python of an environment installed from requirements.txt "
        "(.venv/bin/python scripts/package.py); it reads the distributions' metadata"
    ) from None

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "common"
OUTSIDE = "tools"  # the CLI, gateway, local set-up and training: never in an archive
DISPATCH = "common.api.dispatch"
HANDLERS = "common.api.handlers"
# Import names used only to load a pickled (joblib) model a user registered.
PICKLED_MODEL_IMPORTS = frozenset({"sklearn", "joblib"})
PICKLED_MODEL_DISTRIBUTIONS = ("scikit-learn", "joblib")


@dataclass(frozen=True)
class Closure:
    modules: frozenset[str]  # common.* modules (packages by their dotted name)
    third_party: frozenset[str]  # dotted names of every other non-stdlib import


def _module_path(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Dotted names each import statement may load (``from a import b``: a, and a.b)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo += node.orelse
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        todo += ast.iter_child_nodes(node)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def runtime_modules(root: Path = ROOT) -> list[str]:
    """Every model runtime module: the string values of ``_KINDS`` in common/models."""
    tree = ast.parse((root / "common" / "models" / "__init__.py").read_text())
    found = []
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Constant) else None
        if (
            isinstance(value, str)
            and value.startswith("common.models.")
            and _module_path(value, root)
        ):
            found.append(value)
    if not found:
        raise SystemExit("package: no model runtime module named in common/models/__init__.py")
    return sorted(set(found))


def route_handlers(function: str, root: Path = ROOT) -> list[str]:
    """The handler modules of the function's routes, from the OpenAPI file."""
    import yaml

    spec = yaml.safe_load((root / "common" / "api" / "openapi.yaml").read_text())
    handlers = {
        op["x-ipo-handler"]
        for item in spec["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and op.get("x-ipo-function") == function
    }
    return sorted(f"{HANDLERS}.{h}" for h in handlers)


def closure(function: str, root: Path = ROOT) -> Closure:
    main = root / "functions" / function / "main.py"
    if not main.is_file():
        raise SystemExit(f"package: no function {function!r} (no {main})")
    handlers = route_handlers(function, root)
    if not handlers:
        raise SystemExit(f"package: no route in common/api/openapi.yaml serves {function!r}")
    seen: set[str] = set()
    third: set[str] = set()
    todo: list[tuple[str, Path]] = [("__main__", main)]
    todo += [
        (m, p)
        for m in (DISPATCH, *handlers, *runtime_modules(root))
        if (p := _module_path(m, root))
    ]
    while todo:
        module, path = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imports(tree, module, path.name == "__init__.py"):
            top = name.split(".")[0]
            if top == OUTSIDE:
                raise SystemExit(
                    f"package: {path.relative_to(root)} imports {name}, outside every archive"
                )
            if top == LIBRARY:
                for parent in _parents(name):
                    found = _module_path(parent, root)
                    if found is not None and parent not in seen:
                        todo.append((parent, found))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third.add(name)
    seen.discard("__main__")
    return Closure(frozenset(seen), frozenset(third))


# --- distributions ----------------------------------------------------------------------


@cache
def _top_level_owners() -> dict[str, list[str]]:
    return {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}


@cache
def _files(distribution: str) -> tuple[str, ...]:
    return tuple(str(f) for f in metadata.distribution(distribution).files or ())


def _ships(distribution: str, dotted: str) -> bool:
    path = dotted.replace(".", "/")
    return any(f == f"{path}.py" or f.startswith(f"{path}/") for f in _files(distribution))


@cache
def distributions_of(name: str) -> list[str]:
    """The distribution(s) an import comes from; a namespace package (``google``) by the
    longest dotted prefix some distribution ships."""
    owners = _top_level_owners().get(name.split(".")[0], [])
    if len(owners) <= 1:
        if not owners:
            raise SystemExit(f"package: no installed distribution provides {name!r}")
        return owners
    parts = name.split(".")
    for length in range(len(parts), 1, -1):
        prefix = ".".join(parts[:length])
        shipping = [d for d in owners if _ships(d, prefix)]
        if shipping:
            return shipping
    raise SystemExit(f"package: {name!r} is in several distributions ({owners}); none ships it")


def with_dependencies(roots: Iterable[str]) -> set[str]:
    """Canonical names of ``roots`` and everything they require on this platform,
    following extras (``google-api-core[grpc]``) as pip does."""
    found: set[str] = set()
    done: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(r), "") for r in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        found.add(name)
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            if requirement.marker is None and extra:
                continue  # unconditional requirements were followed with extra ""
            child = canonicalize_name(requirement.name)
            todo += [(child, "")] + [(child, e) for e in requirement.extras]
    return found


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def locked_blocks(text: str) -> dict[str, str]:
    """Canonical name -> its lines in a lock (the pin and its hashes, no comments)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = blocks.setdefault(canonicalize_name(pin.group(1)), [])
            current.append(line)
        elif current is not None and line.startswith("    --hash="):
            current.append(line)
        else:
            current = None
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


def requirement_names(closure_: Closure, with_pickled_models: bool = False) -> set[str]:
    imports = {n for n in closure_.third_party if n.split(".")[0] not in PICKLED_MODEL_IMPORTS}
    roots = {d for name in imports for d in distributions_of(name)}
    if with_pickled_models:
        roots.update(PICKLED_MODEL_DISTRIBUTIONS)
    return with_dependencies(roots)


def requirements_text(function: str, root: Path = ROOT, with_pickled_models: bool = False) -> str:
    """The function's requirements.txt: its distributions' blocks of the lock, by name."""
    names = requirement_names(closure(function, root), with_pickled_models)
    blocks = locked_blocks((root / "requirements.txt").read_text())
    missing = sorted(names - blocks.keys())
    if missing:
        raise SystemExit(
            f"package: {function} needs {', '.join(missing)}, which requirements.txt does not "
            "pin; add them to requirements.in and run `make lock`"
        )
    header = (
        f"# {function}: the distributions its code imports and what they require, copied\n"
        "# from the repository's requirements.txt by scripts/package.py"
        + (" --with-pickled-models" if with_pickled_models else "")
        + ".\n"
    )
    return header + "".join(blocks[name] for name in sorted(names))
