"""``bench.py http --against mlserver``: the gateway and MLServer side by side in one run.

Both serve the same risk pipeline (scripts/bench_mlserver.py) on the same two cores as
the load generator. The gateway runs as scripts/serve.py starts it, with the rate limit
off, the audit trail on (every answer waits for its entry) and the risk model's payload
log on at a sampling rate of 0.1; MLServer runs with its own defaults. At each
concurrency every round runs both, the order alternated per round, each after its own
warm-up; every request carries a distinct row, so neither server's cache could answer.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_function as bf
import bench_http as h
import bench_mlserver as bm
from bench_load import Target, run_load

from common.core.config import Settings

SERVERS = ("gateway", "mlserver")
SAMPLING_RATE = 0.1


def payload_log_on(base: str, token: str, rate: float = SAMPLING_RATE) -> None:
    """PUT /v1/models/risk/payload-log: keep a share ``rate`` of the risk predictions."""
    body = json.dumps({"enabled": True, "sampling_rate": rate, "reason": "HTTP benchmark"})
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "PUT",
            f"/v1/models/{bm.MODEL}/payload-log",
            body,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"the payload log was not turned on: {response.status} {answer!r}")


def measure(
    server: Any, target: Target, generator: str, concurrency: int, duration_s: float, warmup: float
) -> dict[str, Any]:
    run_load(generator, target, concurrency=concurrency, duration_s=warmup)
    pids = server.pids()
    before = h.cpu_seconds(pids)
    result = run_load(generator, target, concurrency=concurrency, duration_s=duration_s)
    server_cpu = h.cpu_seconds(pids) - before
    done = max(result["requests"], 1)
    return {
        **result,
        "server_cpu_s": round(server_cpu, 4),
        "server_cpu_ms_per_request": round(server_cpu * 1000.0 / done, 4),
        "client_cpu_ms_per_request": round(result["client_cpu_s"] * 1000.0 / done, 4),
        "server_processes": len(pids),
    }


def run_versus(args: Any, generator: str) -> dict[str, Any]:
    """Train, start both servers, time their cold starts, run every round; the report."""
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-versus-") as tmp:
        folder = Path(tmp)
        environ = h.environment(folder)
        print(f"training risk in {tmp}", file=sys.stderr, flush=True)
        token = h.prepare(environ, ["risk"])
        settings = Settings.from_environ(environ)
        examples, schemas = h.production_inputs(settings)
        example = examples[bm.MODEL]
        ours = h.body_template(h.SCENARIOS["risk-1"], examples, schemas)
        theirs = bm.body_template(example, schemas[bm.MODEL])
        ports: list[int] = []
        for _ in range(4):  # the gateway; MLServer's HTTP, gRPC and metrics
            ports.append(h.free_port(exclude=tuple(ports)))
        gateway = h.Gateway(environ, folder / "gateway.log", port=ports[0])
        mlserver = bm.MLServer(
            bm.model_folder(
                folder / "mlserver",
                bm.fitted_risk_pipeline(settings),
                (ports[1], ports[2], ports[3]),
            ),
            ports[1],
            folder / "mlserver.log",
        )
        bodies = {
            "gateway": json.dumps({"instances": [example]}).encode(),
            "mlserver": theirs.render(random.Random(0)),  # noqa: S311 - not a secret
        }
        starts: dict[str, Any] = {"gateway": [], "mlserver": []}
        try:
            gateway.start(token, bodies["gateway"])
            payload_log_on(gateway.base, token)
            for index in range(args.cold_starts):  # alternated, each stopped before the other
                for name in SERVERS if index % 2 == 0 else SERVERS[::-1]:
                    if name == "gateway":
                        mlserver.stop()
                        starts[name].append(round(gateway.start(token, bodies[name]), 1))
                    else:
                        gateway.stop()
                        starts[name].append(round(mlserver.start(bodies[name]), 1))
            gateway.start(token, bodies["gateway"])
            mlserver.start(bodies["mlserver"])
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            targets = {
                "gateway": Target(f"{gateway.base}/v1/predict/{bm.MODEL}", headers, ours),
                "mlserver": Target(
                    f"{mlserver.base}{mlserver.path}", {"Content-Type": "application/json"}, theirs
                ),
            }
            servers = {"gateway": gateway, "mlserver": mlserver}
            runs = []
            for concurrency in concurrencies:
                for index in range(args.rounds):
                    for name in SERVERS if index % 2 == 0 else SERVERS[::-1]:
                        row = measure(
                            servers[name],
                            targets[name],
                            generator,
                            concurrency,
                            args.duration,
                            args.warmup,
                        )
                        runs.append(
                            {"server": name, "concurrency": concurrency, "round": index + 1, **row}
                        )
                        print(
                            f"{name} c={concurrency} round {index + 1}: "
                            f"{row['requests_per_s']:.1f} req/s, "
                            f"p99 {row['latency_us']['p99'] / 1000:.2f} ms, "
                            f"{row['server_cpu_ms_per_request']:.3f} ms CPU, "
                            f"errors {row['errors']}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            gateway.stop()
            mlserver.stop()
        function_cold = bf.function_cold_starts(
            environ, token, example, args.cold_starts, folder / "function"
        )
        bare_cold = bf.bare_function_cold_starts(environ, args.cold_starts, folder / "bare")
    return {
        "mlserver_version": bm.mlserver_version(),
        "payload_log_sampling_rate": SAMPLING_RATE,
        "rounds": args.rounds,
        "runs": runs,
        "cold_start_runs_ms": starts,
        "function_cold_start_runs_ms": function_cold,
        "bare_function_cold_start_runs_ms": bare_cold,
    }


def run_report(
    args: Any, generator: str, about: dict[str, Any], generator_name: str
) -> tuple[str, dict[str, Any]]:
    """Run both servers; the Markdown table and the report."""
    load_start = os.getloadavg()[0]
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    versus = run_versus(args, generator)
    gateway = h.serve_defaults()
    report = {
        "date": date,
        "machine": about,
        "generator": {"name": generator, "version": generator_name},
        "gateway": gateway,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "versus": versus,
        "summary": summary(versus),
    }
    header = [
        f"HTTP benchmark against MLServer, {date}: {about['cpu']}, {about['cores']} cores, "
        f"Python {about['python']}, {about['system']}.",
        "",
        f"Generator: {generator_name}; closed loop, one keep-alive connection per concurrent "
        f"client; {args.duration:g} s per run after a {args.warmup:g} s warm-up, on the same "
        f"cores as the servers (load average {load_start:.2f} at the start, "
        f"{report['load_average_1min']['end']:.2f} at the end). Gateway: scripts/serve.py, "
        f"{gateway['workers']} processes x {gateway['threads']} threads "
        f"({gateway['worker_class']}), IPO_RATE_LIMIT_PER_MINUTE=0.",
        "",
    ]
    return markdown(report, header), report


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(float(r[key]) for r in rows)


def _p(rows: list[dict[str, Any]], p: str) -> float:
    return statistics.fmean(r["latency_us"][p] / 1000 for r in rows)


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per concurrency: each server's means over its rounds and the gateway's ratios."""
    out = []
    for concurrency in dict.fromkeys(r["concurrency"] for r in report["runs"]):
        by = {
            name: [
                r for r in report["runs"] if r["server"] == name and r["concurrency"] == concurrency
            ]
            for name in SERVERS
        }
        row: dict[str, Any] = {"concurrency": concurrency}
        for name, rows in by.items():
            row[name] = {
                "requests_per_s": _mean(rows, "requests_per_s"),
                "p50_ms": _p(rows, "p50"),
                "p99_ms": _p(rows, "p99"),
                "p99_range_ms": [
                    min(r["latency_us"]["p99"] / 1000 for r in rows),
                    max(r["latency_us"]["p99"] / 1000 for r in rows),
                ],
                "cpu_ms_per_request": _mean(rows, "server_cpu_ms_per_request"),
                "errors": sum(r["errors"] for r in rows),
            }
        g, m = row["gateway"], row["mlserver"]
        row["ratio"] = {
            "throughput": g["requests_per_s"] / m["requests_per_s"],
            "p99": g["p99_ms"] / m["p99_ms"],
            "cpu_per_request": g["cpu_ms_per_request"] / m["cpu_ms_per_request"],
        }
        out.append(row)
    return out


def markdown(report: dict[str, Any], header: list[str]) -> str:
    v = report["versus"]
    lines = [
        *header,
        f"Against MLServer {v['mlserver_version']} (scikit-learn runtime, `predict_proba`, its "
        "defaults) serving the same risk pipeline; the gateway with the audit trail on and the "
        f"risk payload log sampling {v['payload_log_sampling_rate']:g}. {v['rounds']} rounds "
        "per concurrency, the order alternated; every request a distinct row.",
        "",
        "| server | concurrency | round | requests/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/request | client CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in v["runs"]:
        lat = r["latency_us"]
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['round']} | {r['requests_per_s']:.1f} "
            f"| {lat['p50'] / 1000:.2f} | {lat['p95'] / 1000:.2f} | {lat['p99'] / 1000:.2f} "
            f"| {r['errors']} | {r['server_cpu_ms_per_request']:.3f} "
            f"| {r['client_cpu_ms_per_request']:.3f} |"
        )
    lines += [
        "",
        "Means over the rounds, and the gateway's ratio to MLServer:",
        "",
        "| concurrency | gateway requests/s | MLServer requests/s | throughput ratio "
        "| gateway p99 ms | MLServer p99 ms | p99 ratio | gateway CPU ms/request "
        "| MLServer CPU ms/request | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary(v):
        g, m, ratio = row["gateway"], row["mlserver"], row["ratio"]
        lines.append(
            f"| {row['concurrency']} | {g['requests_per_s']:.0f} | {m['requests_per_s']:.0f} "
            f"| {ratio['throughput']:.2f} | {g['p99_ms']:.1f} | {m['p99_ms']:.1f} "
            f"| {ratio['p99']:.2f} | {g['cpu_ms_per_request']:.3f} "
            f"| {m['cpu_ms_per_request']:.3f} | {ratio['cpu_per_request']:.2f} |"
        )
    cold = v["cold_start_runs_ms"]
    lines += [
        "",
        "Cold start, process start to the first 200 (alternated, medians):",
        "",
        "- the gateway (every function, models loaded before it listens): "
        f"{_runs(cold['gateway'])}",
        f"- MLServer (the risk model): {_runs(cold['mlserver'])}",
        "- `predict_risk` alone under functions-framework: "
        f"{_runs(v['function_cold_start_runs_ms'])}",
        "- a one-line function under functions-framework: "
        f"{_runs(v['bare_function_cold_start_runs_ms'])}",
    ]
    return "\n".join(lines) + "\n"


def _runs(runs: list[float]) -> str:
    return f"{statistics.median(runs):.0f} ms ({', '.join(f'{r:.0f}' for r in runs)})"
