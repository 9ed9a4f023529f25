"""The layers of common/ (tools/layering.py) hold in today's imports, and the drawing in
docs/ARCHITECTURE.md is what scripts/import_tree.py prints from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import layering
from tools.layering import LAYERS, Import


@pytest.fixture(scope="module")
def found() -> list[Import]:
    return layering.imports()


def test_every_package_of_common_has_one_layer() -> None:
    common = ROOT / "common"
    packages = {p.parent.name for p in common.glob("*/__init__.py")}
    modules = {p.stem for p in common.glob("*.py")} - {"__init__"}
    assert len(set(LAYERS)) == len(LAYERS), "a layer is listed twice"
    assert set(LAYERS) == packages | modules


def test_no_import_goes_to_a_higher_layer(found: list[Import]) -> None:
    assert layering.upward(found) == []


def test_the_packages_import_each_other_without_a_cycle(found: list[Import]) -> None:
    assert layering.cycle(layering.package_graph(found)) == []


def test_only_the_backends_import_a_google_client(found: list[Import]) -> None:
    assert layering.google_outside_seam(found) == []


def test_nothing_deployed_imports_tools(found: list[Import]) -> None:
    assert layering.tools_in_deployed(found) == []


def test_the_architecture_page_shows_todays_tree(found: list[Import]) -> None:
    shown = layering.doc_tree(layering.DOC.read_text())
    assert shown is not None, f"docs/ARCHITECTURE.md has no drawing under {layering.HEADING!r}"
    assert shown == layering.render(found), (
        "the imports changed: run `.venv/bin/python scripts/import_tree.py --write-doc`"
    )


def test_the_script_prints_the_tree_and_checks(found: list[Import]) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/import_tree.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == layering.render(found)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_every_kind_of_breaking_import_is_found(tmp_path: Path) -> None:
    for package in ("common", "common/core", "common/api", "common/backends", "tools"):
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "common/api/views.py", "X = 1\n")
    _write(tmp_path, "tools/cli.py", "")
    _write(
        tmp_path,
        "common/core/config.py",
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from common.api.views import X\n"
        "def later():\n"
        "    from ..api import views\n"
        "    import google.cloud.storage\n"
        "    import tools.cli\n",
    )
    _write(tmp_path, "common/backends/gcs.py", "from google.cloud import storage\n")
    _write(tmp_path, "common/api/dispatch.py", "from common.core import config\n")
    _write(tmp_path, "functions/f/main.py", "from tools import cli\n")
    found = layering.imports(tmp_path)

    assert layering.upward(found) == [
        "common/core/config.py:4: common.core.config imports common.api.views, "
        "a higher layer (api is above core)",
        "common/core/config.py:6: common.core.config imports common.api.views, "
        "a higher layer (api is above core)",
    ]
    assert [p.split(":")[0:2] for p in layering.google_outside_seam(found)] == [
        ["common/core/config.py", "7"]
    ]
    assert [p.split(":")[0:2] for p in layering.tools_in_deployed(found)] == [
        ["common/core/config.py", "8"],
        ["functions/f/main.py", "1"],
    ]
    graph = layering.package_graph(found)
    assert layering.cycle(graph) == ["api", "core", "api"]


def test_a_package_in_no_layer_is_reported(tmp_path: Path) -> None:
    _write(tmp_path, "common/__init__.py", "")
    _write(tmp_path, "common/core/__init__.py", "")
    _write(tmp_path, "common/extra.py", "from common.core import x\n")
    assert layering.upward(layering.imports(tmp_path)) == [
        "common/extra.py:1: common.extra imports common.core; common.extra is in no layer of LAYERS"
    ]
