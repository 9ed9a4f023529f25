"""The hash-pinned requirements files install the same anywhere: they name no index and no
wheel folder of the machine that locked them, and `make lock` does not write one again."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

LOCKS = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-checkov.txt",
    "requirements-build.txt",
    "requirements-bench.txt",
)
HASHED = (*LOCKS, "requirements-kserve.txt")
"""Every file pip installs from with --require-hashes: the locks, and the one line pinned by
hand that pip-compile cannot resolve (requirements-kserve.txt says why)."""
# pip options a requirements file may carry that point at one machine or index.
MACHINE_OPTIONS = re.compile(
    r"^\s*(-f\b|--find-links\b|-i\b|--index-url\b|--extra-index-url\b|--trusted-host\b)", re.M
)


@pytest.mark.parametrize("name", HASHED)
def test_a_lock_file_names_no_index_and_no_wheel_folder(name: str) -> None:
    text = (ROOT / name).read_text()
    assert MACHINE_OPTIONS.findall(text) == []


@pytest.mark.parametrize("name", HASHED)
def test_every_pin_of_a_lock_file_carries_hashes(name: str) -> None:
    requirements = re.findall(
        r"^([A-Za-z0-9][^\s=]*)==\S+((?:\s*\\\n\s+--hash=\S+)*)", (ROOT / name).read_text(), re.M
    )
    assert requirements
    for requirement, hashes in requirements:
        assert "--hash=sha256:" in hashes, requirement


def test_make_lock_neither_reads_nor_writes_a_wheel_folder() -> None:
    done = subprocess.run(
        ["make", "-n", "lock"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    compiles = [line for line in done.stdout.splitlines() if "pip-compile" in line]
    assert len(compiles) == len(LOCKS)
    for line in compiles:
        assert line.startswith("env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "), line
        assert "--no-emit-find-links" in line
        assert "--no-emit-index-url" in line
