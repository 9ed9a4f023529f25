"""Memory under a stream of distinct rows: the gateway's resident size sampled over time.

Every row sent differs from every other (one float of each row drawn per request, as the
HTTP benchmark's uncached scenarios do), so each row misses the cache, is computed, kept
in L1 and counted by the hot-key and drift tallies: whatever grows with distinct requests
grows here. The gateway is scripts/serve.py on a throw-away data folder, as for ``bench.py
http``; the load comes in slices of ``every_s`` seconds (wrk, or the Python client), and
after each slice the resident size (VmRSS) of every gateway process is read from /proc
with L1's entries and accounted bytes from ``/metrics``. A bounded process's curve rises
while its caches fill, then stays flat: the report gives the samples and the growth over
the last half of the run.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_http as h
from bench_load import Target, run_load

MODEL = "risk"
ROWS_PER_REQUEST = 10


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def workers(gateway: h.Gateway) -> list[int]:
    """The processes that serve requests: the leaves of the gateway's tree (scripts/serve.py
    runs a gunicorn arbiter per core, each with its worker)."""
    pids = gateway.pids()
    return [pid for pid in pids if not h.process_tree(pid)[1:]]


def l1_gauges(gateway: h.Gateway) -> dict[str, float]:
    """L1's entries and accounted bytes summed over processes, and rows computed."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    found = {"l1_entries": 0.0, "l1_bytes": 0.0, "rows_computed": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("ipo_cache_l1_entries"):
            found["l1_entries"] += float(value)
        elif name.startswith("ipo_cache_l1_bytes"):
            found["l1_bytes"] += float(value)
        elif name.startswith("ipo_cache_rows_total") and 'level="miss"' in name:
            found["rows_computed"] += float(value)
    return found


def run_memory(
    minutes: float, every_s: float, concurrency: int, generator: str, about: dict[str, Any]
) -> dict[str, Any]:
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        environ = h.environment(Path(tmp))
        token = h.prepare(environ, h.models_to_train([f"{MODEL}-1"]))
        examples, schemas = h.production_inputs(_settings(environ))
        scenario = h.Scenario(MODEL, ROWS_PER_REQUEST, True, "distinct rows")
        template = h.body_template(scenario, examples, schemas)
        gateway = h.Gateway(environ, Path(tmp) / "gateway.log")
        samples: list[dict[str, Any]] = []
        try:
            gateway.start(token, json.dumps({"instances": [examples[MODEL]]}).encode())
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            target = Target(f"{gateway.base}/v1/predict/{MODEL}", headers, template)
            started, requests, errors = time.monotonic(), 0, 0
            samples.append(_sample(gateway, 0.0, requests, errors))
            while time.monotonic() - started < minutes * 60.0:
                result = run_load(generator, target, concurrency=concurrency, duration_s=every_s)
                requests += result["requests"]
                errors += result["errors"]
                sample = _sample(gateway, time.monotonic() - started, requests, errors)
                samples.append(sample)
                print(
                    f"{sample['minute']:6.1f} min: {sample['rss_mb']} MB, "
                    f"L1 {sample['l1_entries']:.0f} entries, {requests} requests",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            gateway.stop()
    return {
        "date": date,
        "machine": about,
        "generator": generator,
        "concurrency": concurrency,
        "rows_per_request": ROWS_PER_REQUEST,
        "minutes": minutes,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "samples": samples,
    }


def _settings(environ: dict[str, str]) -> Any:
    from common.core.config import Settings

    return Settings.from_environ(environ)


def _sample(gateway: h.Gateway, elapsed_s: float, requests: int, errors: int) -> dict[str, Any]:
    rss = [round(rss_mb(pid), 1) for pid in sorted(workers(gateway))]
    return {
        "minute": round(elapsed_s / 60.0, 2),
        "requests": requests,
        "errors": errors,
        "rss_mb": rss,
        "rss_total_mb": round(sum(rss), 1),
        **l1_gauges(gateway),
    }


def growth_mb_per_10_min(samples: list[dict[str, Any]]) -> float:
    """Total RSS growth over the last half of the run, scaled to 10 minutes."""
    half = [s for s in samples if s["minute"] >= samples[-1]["minute"] / 2.0]
    if len(half) < 2 or half[-1]["minute"] <= half[0]["minute"]:
        return 0.0
    span = float(half[-1]["minute"]) - float(half[0]["minute"])
    return (float(half[-1]["rss_total_mb"]) - float(half[0]["rss_total_mb"])) * 10.0 / span


def markdown(report: dict[str, Any], rows: int = 12) -> str:
    """The run in a few lines and about ``rows`` evenly spaced samples."""
    about, samples = report["machine"], report["samples"]
    step = max(1, len(samples) // rows)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    lines = [
        f"Memory under distinct rows, {report['date']}: {about['cpu']}, {about['cores']} "
        f"cores, Python {about['python']}, {about['system']}.",
        "",
        f"{report['generator']}, closed loop at concurrency {report['concurrency']}, "
        f"{report['rows_per_request']} distinct {MODEL} rows per request, "
        f"{samples[-1]['minute']:.1f} minutes (load average "
        f"{report['load_average_1min']['start']:.2f} at the start, "
        f"{report['load_average_1min']['end']:.2f} at the end); scripts/serve.py at its "
        "defaults with IPO_RATE_LIMIT_PER_MINUTE=0.",
        "",
        "| minute | requests | rows computed | RSS per process MB | RSS total MB "
        "| L1 entries | L1 accounted MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in shown:
        lines.append(
            f"| {s['minute']:.1f} | {s['requests']:,} | {s['rows_computed']:,.0f} "
            f"| {', '.join(f'{r:.0f}' for r in s['rss_mb'])} | {s['rss_total_mb']:.0f} "
            f"| {s['l1_entries']:,.0f} | {s['l1_bytes'] / 2**20:.1f} |"
        )
    peak = max(s["rss_total_mb"] for s in samples)
    lines += [
        "",
        f"Peak total RSS {peak:.0f} MB; growth over the last half of the run "
        f"{growth_mb_per_10_min(samples):+.1f} MB per 10 minutes; errors "
        f"{samples[-1]['errors']}.",
    ]
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    memory = sub.add_parser("memory", help="gateway memory under a stream of distinct rows")
    memory.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    memory.add_argument("--minutes", type=float, default=15.0, help="how long to stream")
    memory.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    memory.add_argument("--concurrency", type=int, default=4, help="connections")
    memory.add_argument("--generator", default="auto", choices=("auto", "wrk", "python"))
    memory.add_argument("--ports", default="8691-8699", help="the gateway's port range")


def run(args: Any, about: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The report of ``bench.py memory``, as Markdown and as data."""
    from bench_load import resolve_generator

    if args.minutes <= 0 or args.every < 1 or args.concurrency < 1:
        raise ValueError("--minutes > 0, --every >= 1 and --concurrency >= 1")
    low, _, high = args.ports.partition("-")
    h.PORT_RANGE[:] = range(int(low), int(high or low) + 1)
    generator = resolve_generator(args.generator)
    report = run_memory(args.minutes, args.every, args.concurrency, generator, about)
    return markdown(report), report
