"""scripts/stage_timers.py: each stage's time excludes the stages inside it, and the
per-process files are summed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.conftest import ROOT


def _timers() -> ModuleType:
    path = ROOT / "scripts" / "stage_timers.py"
    spec = importlib.util.spec_from_file_location("stage_timers_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stage_timers_under_test"] = module
    spec.loader.exec_module(module)
    return module


def test_a_stage_excludes_the_stages_nested_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers = _timers()
    now = [0.0]
    clock = SimpleNamespace(perf_counter=lambda: now[0], thread_time=lambda: now[0] / 2)
    monkeypatch.setattr(timers, "time", clock)
    monkeypatch.setenv("IPO_STAGE_TIMERS", str(tmp_path / "st"))
    monkeypatch.setattr(timers, "DUMP_EVERY", 2)

    def advance(seconds: float) -> None:
        now[0] += seconds

    model = timers._timed("model", lambda: advance(3.0))

    def request() -> None:
        advance(1.0)
        model()

    app = timers._timed("app", request)
    app()
    app()
    found = timers.read(str(tmp_path / "st"))
    assert found["requests"] == 2
    assert found["wall_s"]["model"] == 6.0
    assert found["wall_s"]["app"] == 2.0
    assert found["cpu_s"]["app"] == 1.0
    assert found["cpu_s"]["model"] == 3.0


def test_the_table_shows_each_stage_per_request(tmp_path: Path) -> None:
    timers = _timers()
    (tmp_path / "st.1.json").write_text(
        '{"requests": 3, "cpu_s": {"model": 0.003}, "wall_s": {"model": 0.006}}'
    )
    (tmp_path / "st.2.json").write_text(
        '{"requests": 1, "cpu_s": {"model": 0.001, "auth": 0.002}, "wall_s": {"model": 0.002}}'
    )
    table = timers.table(timers.read(str(tmp_path / "st")))
    assert table.startswith("4 requests")
    assert "| model | 1.000 | 2.000 |" in table  # 4 ms of CPU and 8 ms of wall over 4
    assert "| auth | 0.500 | 0.000 |" in table
    assert "| metrics | 0.000 | 0.000 |" in table  # a stage no process timed


def test_no_file_yet_says_so_instead_of_a_table_of_zeros(tmp_path: Path) -> None:
    timers = _timers()
    assert timers.table(timers.read(str(tmp_path / "st"))).startswith("nothing recorded yet")


def test_the_slowest_one_percent_shows_which_stage_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers = _timers()
    now = [0.0]
    clock = SimpleNamespace(perf_counter=lambda: now[0], thread_time=lambda: now[0])
    monkeypatch.setattr(timers, "time", clock)
    monkeypatch.setenv("IPO_STAGE_TIMERS", str(tmp_path / "st"))
    monkeypatch.setattr(timers, "DUMP_EVERY", 100)  # ranked at each write until RANK_EVERY
    delays = iter([0.001] * 198 + [0.050, 0.040])  # two slow audit appends in 200

    def advance(seconds: float) -> None:
        now[0] += seconds

    append = timers._timed("audit append", lambda: advance(next(delays)))
    model = timers._timed("model", lambda: advance(0.002))

    def request() -> None:
        model()
        append()

    app = timers._timed("app", request)
    for _ in range(200):
        app()
    found = timers.read(str(tmp_path / "st"))
    assert found["tail"]["requests"] == 2
    table = timers.table(found)
    assert table.startswith("200 requests (2 in the slowest 1 %)")
    assert "| audit append | 1.440 | 1.440 | 45.000 |" in table  # (50 + 40) / 2
    assert "| model | 2.000 | 2.000 | 2.000 |" in table  # the same in the tail
