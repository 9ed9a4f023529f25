"""The package layers of ``common/`` and the imports between them, read from the source.

Every module's imports count wherever they stand (module level, inside a function, under
``if TYPE_CHECKING:``), since each is a dependency a reader and a refactoring must
respect. ``common``'s packages form layers, lowest first in LAYERS: a package may import
its own modules and the packages below it, never one above, so a change to a low layer
never needs the high ones and the order stays free of cycles. Google's client libraries
are imported only by ``common/backends`` (the seam), and nothing deployed (``common/``,
``functions/``) imports ``tools``, which no function archive contains.
scripts/import_tree.py prints the graph; tests/test_layering.py enforces the rules.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: each may import only itself and what comes before it.
LAYERS: tuple[str, ...] = (
    "core",
    "backends",
    "models",
    "explain",
    "security",
    "registry",
    "experiments",
    "audit",
    "monitoring",
    "serving",
    "promotion",
    "batch",
    "shadow",
    "services",
    "api",
)
SEAM = "common.backends"
GOOGLE = "google"
OUTSIDE = "tools"
DEPLOYED = ("common", "functions")


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to the module it names."""

    source: str  # the importing module, e.g. common.api.dispatch
    target: str  # e.g. common.serving.pipeline, google.cloud.firestore
    path: str  # file relative to the root
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    """common/api/__init__.py -> common.api; functions/x/main.py -> functions.x.main."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = ROOT) -> list[Path]:
    """Every module of the project but the tests."""
    found: list[Path] = []
    for top in ("common", "functions", "tools", "scripts"):
        found += (root / top).rglob("*.py")
    return sorted(p for p in found if "__pycache__" not in p.parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, path: Path, node: ast.ImportFrom, known: set[str]) -> Iterator[str]:
    base = node.module or ""
    if node.level:
        package = _package_of(module, path).split(".")
        anchor = ".".join(package[: len(package) - node.level + 1])
        base = f"{anchor}.{base}" if base else anchor
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in known else base


def imports(root: Path = ROOT) -> list[Import]:
    """Every import of every module, each target resolved to a module name."""
    files = source_files(root)
    known = {module_name(p, root) for p in files}
    found: list[Import] = []
    for path in files:
        module = module_name(path, root)
        relative = path.relative_to(root).as_posix()
        here: list[Import] = []
        for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
            if isinstance(node, ast.Import):
                targets: Iterable[str] = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(module, path, node, known)
            else:
                continue
            here += [Import(module, t, relative, node.lineno) for t in targets]
        found += sorted(here, key=lambda imp: imp.line)
    return found


def layer_of(module: str) -> str | None:
    """The package of ``common`` a module belongs to (common.api.x -> api)."""
    parts = module.split(".")
    if parts[0] != "common" or len(parts) < 2:
        return None
    return parts[1]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def upward(found: Iterable[Import], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Each import from a layer of common to a higher one, or to or from no layer."""
    rank = {name: n for n, name in enumerate(layers)}
    problems: list[str] = []
    for imp in found:
        low, high = layer_of(imp.target), layer_of(imp.source)
        if low is None or high is None:
            continue
        where = f"{imp.path}:{imp.line}: {imp.source} imports {imp.target}"
        if low not in rank or high not in rank:
            unknown = low if low not in rank else high
            problems.append(f"{where}; common.{unknown} is in no layer of LAYERS")
        elif rank[low] > rank[high]:
            problems.append(f"{where}, a higher layer ({low} is above {high})")
    return problems


def google_outside_seam(found: Iterable[Import]) -> list[str]:
    """Each import of a Google client outside common/backends."""
    return [
        f"{imp.path}:{imp.line}: {imp.source} imports {imp.target}; only {SEAM} may"
        for imp in found
        if _within(imp.target, GOOGLE) and not _within(imp.source, SEAM)
    ]


def tools_in_deployed(found: Iterable[Import]) -> list[str]:
    """Each import of tools from common/ or functions/, which no archive could satisfy."""
    return [
        f"{imp.path}:{imp.line}: {imp.source} imports {imp.target}; nothing deployed may"
        for imp in found
        if _within(imp.target, OUTSIDE) and any(_within(imp.source, d) for d in DEPLOYED)
    ]


def violations(found: Iterable[Import], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Each import that breaks a rule, as ``file:line: what``."""
    found = list(found)
    return upward(found, layers) + google_outside_seam(found) + tools_in_deployed(found)


def package_graph(
    found: Iterable[Import], node_of: Callable[[str], str | None] = layer_of
) -> dict[str, set[str]]:
    """Each importing node (by default a layer of common) -> the layers it imports."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        high, low = node_of(imp.source), layer_of(imp.target)
        if high is None:
            continue
        graph.setdefault(high, set())
        if low is not None and low != high:
            graph[high].add(low)
    return graph


def cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle of the graph (its packages in order, the first repeated), or []."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def top_of(module: str) -> str | None:
    """The node a module stands for in the drawing: a layer of common, or functions/tools."""
    if module.split(".")[0] in ("functions", OUTSIDE):
        return module.split(".")[0]
    return layer_of(module)


def _reachable(graph: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def reduction(graph: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Each node's imports less those it also reaches through another of them."""
    reduced: dict[str, list[str]] = {}
    for node, targets in graph.items():
        direct = set(targets)
        implied = set().union(*(_reachable(graph, t) for t in direct)) if direct else set()
        reduced[node] = sorted(direct - implied, key=_rank, reverse=True)
    return reduced


def _rank(node: str) -> int:
    return LAYERS.index(node) if node in LAYERS else len(LAYERS)


def render(found: Iterable[Import]) -> str:
    """The tree of the packages (each drawn once, under the highest one that imports it),
    then every package's direct imports, lowest layer first."""
    found = list(found)
    graph = package_graph(found, top_of)
    reduced = reduction(graph)
    importers = {t for targets in graph.values() for t in targets}
    roots = sorted((n for n in graph if n not in importers), key=_rank, reverse=True)
    lines: list[str] = []
    drawn: set[str] = set()

    def draw(node: str, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        again = node in drawn
        lines.append(f"{prefix}{branch}{node}{' (drawn above)' if again else ''}")
        if again:
            return
        drawn.add(node)
        children = reduced.get(node, [])
        below = prefix if top else prefix + ("    " if last else "│   ")
        for n, child in enumerate(children):
            draw(child, below, n == len(children) - 1, False)

    for root in roots:
        draw(root, "", True, True)
    width = max(len(n) for n in graph) + 2
    lines += ["", "direct imports, lowest layer first:"]
    for node in sorted(graph, key=_rank):
        targets = sorted(graph[node], key=_rank)
        lines.append(f"{node:<{width}}{' '.join(targets) or '-'}".rstrip())
    return "\n".join(lines) + "\n"


DOC = ROOT / "docs" / "ARCHITECTURE.md"
HEADING = "## Packages and their dependencies"


def _block(text: str) -> tuple[int, int] | None:
    """Where the first fenced block under HEADING starts and ends (its content only)."""
    at = text.find(f"\n{HEADING}\n")
    if at < 0:
        return None
    start = text.find("```\n", at)
    end = text.find("\n```", start + 3)
    following = text.find("\n## ", at + 1)
    if start < 0 or end < 0 or (0 <= following < start):
        return None
    return start + 4, end + 1


def doc_tree(text: str) -> str | None:
    """The drawing the architecture page shows under HEADING, or None without one."""
    span = _block(text)
    return None if span is None else text[span[0] : span[1]]


def with_tree(text: str, tree: str) -> str:
    """The page with the drawing under HEADING replaced by ``tree``."""
    span = _block(text)
    if span is None:
        raise ValueError(f"{DOC.name} has no fenced block under {HEADING!r}")
    return text[: span[0]] + tree + text[span[1] :]
