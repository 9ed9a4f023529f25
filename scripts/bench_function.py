"""One Cloud Function alone, as Cloud Functions runs it: its archive unpacked into a
folder, ``functions-framework --target <function>`` started there (gunicorn, one worker,
as functions-framework starts it on Linux), and the time from process start to the first
200. Also what each archive weighs: its zip, and the installed size of its requirements
(the files each distribution's RECORD lists in this environment)."""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import bench_http as h
from package import build, functions
from package_deps import ROOT, locked_blocks

FRAMEWORK = Path(sys.executable).with_name("functions-framework")
THREADS = "8"  # predict_risk's concurrency in terraform/function_sizes.tf


def unpack(function: str, folder: Path) -> Path:
    """Build the function's archive and unpack it as Cloud Functions' source folder."""
    archive = build(function, folder / "dist")
    source = folder / function
    shutil.rmtree(source, ignore_errors=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(source)
    return source


def function_environment(environ: dict[str, str], source: Path) -> dict[str, str]:
    """The archive's folder first on the path, as it is the only source in the cloud (an
    editable install of the checkout must not supply ``common``); one gunicorn worker."""
    return {**environ, "PYTHONPATH": str(source), "WORKERS": "1", "THREADS": THREADS}


def cold_start_ms(
    function: str,
    source: Path,
    environ: dict[str, str],
    path: str,
    body: bytes,
    token: str,
    log: Path,
    timeout_s: float = 120.0,
) -> float:
    """Start the function; ms from process start to its first 200 on ``POST path``."""
    port = h.free_port()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    command = [str(FRAMEWORK), "--target", function, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("a") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=source,
            env=function_environment(environ, source),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return h.first_200_ms(
            process,
            port,
            path,
            body,
            headers,
            started=started,
            timeout_s=timeout_s,
            log=log,
            what=function,
            only_200=True,
        )
    finally:
        h.stop_group(process)


def installed_bytes(distribution: str) -> int:
    """Sum of the files the distribution's RECORD lists, as installed here."""
    total = 0
    for file in metadata.distribution(distribution).files or ():
        with contextlib.suppress(OSError):
            total += Path(str(file.locate())).stat().st_size
    return total


def archive_sizes(folder: Path) -> list[dict[str, Any]]:
    """Per function: archive bytes, its requirements and their installed bytes."""
    rows = []
    sizes: dict[str, int] = {}
    for function in functions():
        archive = build(function, folder)
        with zipfile.ZipFile(archive) as opened:
            names = sorted(locked_blocks(opened.read("requirements.txt").decode()))
        for name in names:
            if name not in sizes:
                sizes[name] = installed_bytes(name)
        rows.append(
            {
                "function": function,
                "archive_bytes": archive.stat().st_size,
                "requirements": len(names),
                "installed_bytes": sum(sizes[n] for n in names),
            }
        )
    every = sorted(locked_blocks((ROOT / "requirements.txt").read_text()))
    rows.append(
        {
            "function": "(all of requirements.txt)",
            "archive_bytes": None,
            "requirements": len(every),
            "installed_bytes": sum(installed_bytes(n) for n in every),
        }
    )
    return rows


FUNCTION, ROUTE = "predict_risk", "/v1/predict/risk"


def function_cold_starts(
    environ: dict[str, str], token: str, example: Any, runs: int, folder: Path
) -> list[float]:
    """predict_risk from its own archive, started ``runs`` times: ms to the first 200."""
    source = unpack(FUNCTION, folder)
    body = json.dumps({"instances": [example]}).encode()
    log = folder / f"{FUNCTION}.log"
    return [
        round(cold_start_ms(FUNCTION, source, environ, ROUTE, body, token, log), 1)
        for _ in range(runs)
    ]


BARE = "def bare(request):\n    return 'ok'\n"
"""A function that only answers: what functions-framework itself costs to start."""


def bare_function_cold_starts(environ: dict[str, str], runs: int, folder: Path) -> list[float]:
    """functions-framework serving a one-line function, started ``runs`` times."""
    source = folder / "bare"
    source.mkdir(parents=True, exist_ok=True)
    (source / "main.py").write_text(BARE)
    log = folder / "bare.log"
    return [
        round(cold_start_ms("bare", source, environ, "/", b"{}", "unused", log), 1)
        for _ in range(runs)
    ]


def _runs(runs: list[float]) -> str:
    return f"{statistics.median(runs):.0f} ms, the median of {len(runs)} starts " + (
        f"({', '.join(f'{r:.0f}' for r in runs)})"
    )


def cold_lines(report: dict[str, Any]) -> list[str]:
    """The cold starts and the archives' sizes, as Markdown lines."""
    lines = [
        f"Cold start, process start to the first 200 on POST {ROUTE}:",
        "",
        f"- `{FUNCTION}` alone (`functions-framework --target {FUNCTION}` in its unpacked "
        f"archive, gunicorn, 1 worker, {THREADS} threads): "
        f"{_runs(report['function_cold_start_runs_ms'])}.",
    ]
    if report.get("cold_start_runs_ms"):
        lines.append(
            "- the local gateway (scripts/serve.py, every function, the production models "
            f"loaded before it listens): {_runs(report['cold_start_runs_ms'])}."
        )
    lines += [
        "",
        "| archive | zip bytes | requirements | installed MB |",
        "|---|---|---|---|",
    ]
    for row in report["archives"]:
        size = "" if row["archive_bytes"] is None else f"{row['archive_bytes']:,}"
        lines.append(
            f"| {row['function']} | {size} | {row['requirements']} "
            f"| {row['installed_bytes'] / 1e6:.1f} |"
        )
    lines += [
        "",
        "Installed MB: the files each required distribution's RECORD lists, as installed in "
        "this environment.",
    ]
    return lines


def run_cold(cold_starts: int, about: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``bench.py cold``: a throw-away data folder with the risk model, predict_risk alone
    and the gateway started ``cold_starts`` times each, and the archives' sizes."""
    from common.core.config import Settings

    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        environ = h.environment(Path(tmp))
        token = h.prepare(environ, [h.COLD_START_MODEL])
        example = h.production_inputs(Settings.from_environ(environ))[0][h.COLD_START_MODEL]
        function_cold = function_cold_starts(environ, token, example, cold_starts, Path(tmp))
        gateway = h.Gateway(environ, Path(tmp) / "gateway.log")
        try:
            cold = h.cold_starts(gateway, token, example, cold_starts)
        finally:
            gateway.stop()
        archives = archive_sizes(Path(tmp) / "archives")
    report = {
        "date": date,
        "machine": about,
        "function_cold_start_ms": statistics.median(function_cold),
        "function_cold_start_runs_ms": function_cold,
        "cold_start_ms": statistics.median(cold),
        "cold_start_runs_ms": cold,
        "archives": archives,
    }
    heading = (
        f"Cold starts, {date}: {about['cpu']}, {about['cores']} cores, "
        f"Python {about['python']}, {about['system']}."
    )
    return "\n".join([heading, "", *cold_lines(report)]) + "\n", report
