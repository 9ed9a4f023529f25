"""scripts/package.py: one archive per function, byte-identical when built twice."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def package(out: Path, *functions: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "scripts/package.py", "--out", str(out), *functions],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return {line.split("\t")[0]: line.split("\t")[1] for line in done.stdout.splitlines()}


def test_building_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first = package(tmp_path / "a")
    (ROOT / "common" / "__pycache__").mkdir(exist_ok=True)  # build droppings never count
    os.utime(ROOT / "common" / "core" / "config.py")  # a newer timestamp changes nothing either
    second = package(tmp_path / "b")
    assert first == second
    assert set(first) == {f"{p.parent.name}.zip" for p in (ROOT / "functions").glob("*/main.py")}
    for name, digest in first.items():
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest() == digest


def test_an_archive_holds_what_cloud_functions_builds_from(tmp_path: Path) -> None:
    package(tmp_path, "predict_risk")
    with zipfile.ZipFile(tmp_path / "predict_risk.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert archive.read("main.py") == (ROOT / "functions/predict_risk/main.py").read_bytes()
        assert archive.read("requirements.txt") == (ROOT / "requirements.txt").read_bytes()
        assert "common/api/dispatch.py" in names
        assert "common/api/openapi.yaml" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_an_unknown_function_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/package.py", "--out", str(tmp_path), "nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no function 'nope'" in done.stderr
