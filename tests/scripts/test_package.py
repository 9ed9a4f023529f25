"""scripts/package.py: one archive per function, byte-identical when built twice, holding
only the ``common/`` modules the function can reach and the requirements they import."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from tests.support.fixtures import Stack

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
CHARTS = {"drift_scan", "compliance_scan", "shadow_replay"}  # report charts need matplotlib


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "scripts"))  # package.py imports package_deps beside it
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


deps = _load("package_deps")


def package(out: Path, *args: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "scripts/package.py", "--out", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return {line.split("\t")[0]: line.split("\t")[1] for line in done.stdout.splitlines()}


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every function's archive, built once for the module."""
    out = tmp_path_factory.mktemp("dist")
    package(out)
    return out


def requirement_names(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as opened:
        text = opened.read("requirements.txt").decode()
    return set(deps.locked_blocks(text))


@cache
def owners() -> dict[str, list[str]]:
    return {
        k: [canonicalize_name(d) for d in v] for k, v in metadata.packages_distributions().items()
    }


def test_building_twice_gives_the_same_bytes(tmp_path: Path, archives: Path) -> None:
    first = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in archives.glob("*.zip")}
    (ROOT / "common" / "__pycache__").mkdir(exist_ok=True)  # build droppings never count
    os.utime(ROOT / "common" / "core" / "config.py")  # a newer timestamp changes nothing either
    second = package(tmp_path)
    assert first == second
    assert set(first) == {f"{f}.zip" for f in FUNCTIONS}


def test_an_archive_holds_what_cloud_functions_builds_from(archives: Path) -> None:
    lock = deps.locked_blocks((ROOT / "requirements.txt").read_text())
    with zipfile.ZipFile(archives / "predict_risk.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert archive.read("main.py") == (ROOT / "functions/predict_risk/main.py").read_bytes()
        assert "common/api/dispatch.py" in names
        assert "common/api/handlers/predict.py" in names
        assert "common/api/openapi.yaml" in names
        assert "common/models/data/finance_lexicon.json" in names
        assert "common/api/handlers/control.py" not in names  # another function's handler
        assert "common/monitoring/charts.py" not in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        blocks = deps.locked_blocks(archive.read("requirements.txt").decode())
    assert blocks
    assert all(block == lock[name] for name, block in blocks.items())  # the lock's pins, hashes


def test_no_archive_contains_tools(archives: Path) -> None:
    for function in FUNCTIONS:
        with zipfile.ZipFile(archives / f"{function}.zip") as archive:
            assert not [n for n in archive.namelist() if n.split("/")[0] == "tools"], function


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_reachable_import_is_in_the_functions_requirements(
    function: str, archives: Path
) -> None:
    closure = deps.closure(function)
    required = requirement_names(archives / f"{function}.zip")
    missing = {}
    for name in sorted(closure.third_party):
        if name.split(".")[0] in deps.PICKLED_MODEL_IMPORTS:
            continue
        found = {canonicalize_name(d) for d in deps.distributions_of(name)}
        if not found & required:
            missing[name] = sorted(found)
    assert not missing, f"{function} imports what its requirements.txt lacks: {missing}"
    with zipfile.ZipFile(archives / f"{function}.zip") as archive:
        shipped = {n for n in archive.namelist() if n.startswith("common/") and n.endswith(".py")}
    expected = {
        "/".join(m.split("."))
        + ("/__init__.py" if (ROOT / m.replace(".", "/")).is_dir() else ".py")
        for m in closure.modules
    }
    assert shipped == expected


@pytest.mark.parametrize("function", FUNCTIONS)
def test_heavy_libraries_only_where_they_run(function: str, archives: Path) -> None:
    required = requirement_names(archives / f"{function}.zip")
    assert "tqdm" not in required
    assert not required & {"scikit-learn", "joblib"}
    assert ("matplotlib" in required) == (function in CHARTS)
    assert {"functions-framework", "numpy", "pydantic"} <= required


def test_the_pickled_model_libraries_only_on_request(tmp_path: Path) -> None:
    package(tmp_path, "--with-pickled-models", "predict_risk")
    required = requirement_names(tmp_path / "predict_risk.zip")
    assert {"scikit-learn", "joblib", "scipy", "threadpoolctl"} <= required


def test_scikit_learn_and_joblib_are_imported_only_inside_functions() -> None:
    """They are left out of archives, so no module may import them when it is loaded."""
    import ast

    for path in sorted((ROOT / "common").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not {n.split(".")[0] for n in names} & deps.PICKLED_MODEL_IMPORTS, path


PROBE = """
import json, os, sys
before = set(sys.modules)
import functions_framework
app = functions_framework.create_app(sys.argv[1], "main.py")
reply = app.test_client().open(sys.argv[2], method=sys.argv[3], json=json.loads(sys.argv[4]),
                               headers={"Authorization": "Bearer " + os.environ["PROBE_TOKEN"]})
loaded = {}
for name in sorted(set(sys.modules) - before):
    module = sys.modules[name]
    loaded[name] = getattr(module, "__file__", None)
print("PROBE", json.dumps({"status": reply.status_code, "body": reply.get_data(as_text=True)[:500],
                  "modules": loaded}))
"""


@pytest.mark.parametrize(
    ("function", "method", "path"),
    [("predict_risk", "POST", "/v1/predict/risk"), ("list_models", "GET", "/v1/models/risk")],
)
def test_serving_a_request_loads_only_what_the_archive_requires(
    function: str, method: str, path: str, stack: Stack, archives: Path, tmp_path: Path
) -> None:
    """The function run from its unpacked archive, as Cloud Functions runs it: every
    third-party package it loads to answer is in its requirements.txt, and every ``common``
    module comes from the archive."""
    source = tmp_path / function
    with zipfile.ZipFile(archives / f"{function}.zip") as archive:
        archive.extractall(source)
    body = None
    if method == "POST":
        body = {"instances": [stack.registry.get_version("risk", "1.0.0").example]}
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IPO_")},
        **stack.environ,
        "PYTHONPATH": str(source),
        "PROBE_TOKEN": stack.token(),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, function, path, method, json.dumps(body)],
        cwd=source, env=environ, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    result = json.loads(line.removeprefix("PROBE "))
    assert result["status"] == 200, result["body"]
    required = requirement_names(archives / f"{function}.zip")
    archive_dir = str(source.resolve())
    foreign = {
        name: file
        for name, file in result["modules"].items()
        if name.split(".")[0] == "common"
        and file is not None
        and not str(Path(file).resolve()).startswith(archive_dir)
    }
    assert not foreign, f"common modules loaded from outside the archive: {foreign}"
    outside = packages_outside(result["modules"], required)
    assert not outside, f"{function} loaded packages its requirements.txt lacks: {outside}"
    if function == "predict_risk":  # the check itself sees a missing requirement
        assert "numpy" in packages_outside(result["modules"], required - {"numpy"})


def packages_outside(modules: dict[str, str | None], required: set[str]) -> dict[str, list[str]]:
    """Top-level packages loaded from site-packages whose distribution is not required."""
    site = {str(Path(p).resolve()) for p in sys.path if p.endswith("site-packages")}
    outside = {}
    for name, file in modules.items():
        if file is None or "." in name or name == "common":
            continue
        where = str(Path(file).resolve())
        if not any(where.startswith(s) for s in site):
            continue  # the standard library, the archive's own main.py
        distributions = set(owners().get(name, []))
        if not distributions & required:
            outside[name] = sorted(distributions)
    return outside


def test_the_closure_knows_every_import_by_name_in_common() -> None:
    """Modules imported by a computed name are invisible to a static closure: only the
    two it adds itself (handlers by route, runtimes by kind) may exist."""
    found = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "common").rglob("*.py")
        if "import_module(" in path.read_text() or "__import__(" in path.read_text()
    )
    assert found == ["common/api/operations.py", "common/models/__init__.py"]
