"""Measure the platform. Prints one table and, with --out, writes it as Markdown and JSON.

    python scripts/bench.py models [--out bench-results/models] [--repeats 200]
    python scripts/bench.py http [--out bench-results/http] [--duration 5] \
        [--concurrency 1,8,32] [--scenarios risk-1,risk-100,risk-hit,dcf-1,ensemble-1] \
        [--generator auto|wrk|python] [--cold-starts 5] [--ports 8591-8599] \
        [--stage-timers /tmp/st/st]
    python scripts/bench.py http --against mlserver [--rounds 2] [--concurrency 1,8,32]
    python scripts/bench.py cold [--out bench-results/cold] [--cold-starts 5]
    python scripts/bench.py batch [--out bench-results/batch] [--risk-rows 100000] \
        [--dcf-rows 5000]
    python scripts/bench.py explain [--out bench-results/explain] [--paths 25] [--batch 10]
    python scripts/bench.py memory [--out bench-results/memory] [--minutes 15] [--every 30]
    python scripts/bench.py audit [--out bench-results/audit] [--appends 200] [--rounds 4] \
        [--firestore 127.0.0.1:8790]

``audit``: what an audit commit costs a request, one thread, as one ``set_many`` and as a
transaction of sets, on the embedded store and on a running Firestore emulator, with the
round trips to it (scripts/bench_audit.py; docs/PERFORMANCE.md).

``memory``: the gateway's resident memory, per process, under a stream of distinct rows,
sampled every --every seconds (scripts/bench_memory.py; docs/CONFIGURATION.md, memory).

``explain``: an explanation's in-process time per instance for every model in production
(scripts/bench_explain.py; docs/EXPLANATIONS.md), texts grown to 2 KB as for ``models``.

``batch``: batch prediction rows/s on one process for risk and DCF, in a throw-away data
folder (scripts/bench_batch.py; docs/BATCH.md), and what one million rows costs in
function time.

``models``: in-process time per instance of every model in production, at batch 1 and
batch 100, as serving computes it (batch validation against the model's schema, then one
vectorised predict, components included for the ensemble). Inputs are the version's
golden set; texts are grown to 2 KB. Models come from the
configured backends; run `make run` (or scripts/train_models.py) once first.

``http``: the whole stack over HTTP, in a throw-away data folder (the models the scenarios
call are trained there, the configured data is not touched): the gateway's cold start
(process start to the first 200 on POST /v1/predict/risk; the median of --cold-starts
starts), then every scenario at every concurrency, closed loop, with wrk when it is
installed (else a Python asyncio client): requests/s, latency percentiles, non-200
responses, and the server's and the generator's CPU time per request; then the models
section's batch-1 time as the in-process floor. The gateway is scripts/serve.py at its
defaults with IPO_RATE_LIMIT_PER_MINUTE=0. Exits 1 if any request failed. With
``--stage-timers FILE`` its processes time each stage of every request (earlier files of
that name are removed first); ``python scripts/stage_timers.py FILE`` prints the table.

``http --against mlserver``: uncached one-row risk on the gateway and on MLServer 1.7.1
serving the same pipeline (``make bench-deps`` installs it), side by side in one run, the
order alternated per round, with both cold starts (scripts/bench_versus.py).

``cold`` (and the end of ``http``): the cold start of ``predict_risk`` alone, as Cloud
Functions runs it (its archive unpacked, ``functions-framework --target predict_risk``),
beside the gateway's, and each function's archive size with the installed size of its
requirements (scripts/bench_function.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_audit as ba
import bench_batch as bb
import bench_explain as bx
import bench_function as bf
import bench_http as h
import bench_memory as bm
import bench_models as bmod
import bench_versus as bv
from bench_load import generator_version, resolve_generator

from common.core.config import Settings
from tools.local import settings_or_exit


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def run_http(args: argparse.Namespace) -> int:
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(h.SCENARIOS))
    if unknown or not scenarios:
        raise SystemExit(f"bench: unknown scenario(s) {unknown}; known: {', '.join(h.SCENARIOS)}")
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        concurrencies = []
    if not concurrencies or min(concurrencies) < 1:
        raise SystemExit("bench: --concurrency is a comma-separated list of positive integers")
    try:
        generator = resolve_generator(args.generator)
    except (RuntimeError, ValueError) as exc:
        raise SystemExit(f"bench: {exc}") from None

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    if args.against == "mlserver":
        return run_against(args, generator)
    about, load_start = machine(), os.getloadavg()[0]
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        environ = h.environment(Path(tmp))
        models = h.models_to_train(scenarios)
        print(f"training {', '.join(models)} in {tmp}", file=sys.stderr, flush=True)
        token = h.prepare(environ, models)
        settings = Settings.from_environ(environ)
        examples, schemas = h.production_inputs(settings)
        templates = {n: h.body_template(h.SCENARIOS[n], examples, schemas) for n in scenarios}
        options: tuple[str, ...] = ()
        if args.stage_timers:
            args.stage_timers.parent.mkdir(parents=True, exist_ok=True)
            for old in args.stage_timers.parent.glob(args.stage_timers.name + ".*.json"):
                old.unlink()  # stage_timers.py sums every file of that name
            options = ("--stage-timers", str(args.stage_timers.resolve()))
        gateway = h.Gateway(environ, Path(tmp) / "gateway.log", options=options)
        try:
            function_cold = bf.function_cold_starts(
                environ, token, examples[h.COLD_START_MODEL], args.cold_starts, Path(tmp)
            )
            print(f"function cold start: {function_cold} ms", file=sys.stderr, flush=True)
            cold = h.cold_starts(gateway, token, examples[h.COLD_START_MODEL], args.cold_starts)
            print(f"cold start: {cold} ms", file=sys.stderr, flush=True)
            runs = h.run_scenarios(
                gateway, token, generator, templates, concurrencies, args.duration, args.warmup
            )
        finally:
            gateway.stop()
        floor = bmod.bench_models(settings, args.repeats, batches=(1,))
        archives = bf.archive_sizes(Path(tmp) / "archives")
    report = {
        "date": date,
        "machine": about,
        "generator": {"name": generator, "version": generator_version(generator)},
        "gateway": {
            **{k: h.serve_defaults().get(k) for k in ("workers", "threads", "worker_class")},
            "processes": max(r["server_processes"] for r in runs),
            "environment": {"IPO_RATE_LIMIT_PER_MINUTE": "0"},
        },
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "cold_start_ms": statistics.median(cold),
        "cold_start_runs_ms": cold,
        "function_cold_start_ms": statistics.median(function_cold),
        "function_cold_start_runs_ms": function_cold,
        "archives": archives,
        "runs": runs,
        "floor": floor,
    }
    table = http_markdown(report)
    emit(args.out, table, report)
    return 1 if any(r["errors"] for r in runs) else 0


def run_against(args: argparse.Namespace, generator: str) -> int:
    table, report = bv.run_report(args, generator, machine(), generator_version(generator))
    emit(args.out, table, report)
    return 1 if any(r["errors"] for r in report["versus"]["runs"]) else 0


def emit(out: Path | None, table: str, report: dict[str, Any]) -> None:
    """Print the table; with --out, also write it and the report."""
    print(table, end="")
    if out:
        write(out, table, report)


def write(out: Path, table: str, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")


def _errors_cell(row: dict[str, Any]) -> str:
    if not row["errors"]:
        return "0"
    parts = [f"{status}: {n}" for status, n in row["statuses"].items() if status != "200"]
    if row["errors_socket"]:
        parts.append(f"socket: {row['errors_socket']}")
    return f"**{row['errors']}** ({', '.join(parts)})"


def http_markdown(report: dict[str, Any]) -> str:
    about, gw = report["machine"], report["gateway"]
    lines = [
        f"HTTP benchmark, {report['date']}: {about['cpu']}, {about['cores']} cores, "
        f"Python {about['python']}, {about['system']}.",
        "",
        f"Generator: {report['generator']['version']}; closed loop, one keep-alive connection "
        f"per concurrent client; {report['duration_s']:g} s per run after a "
        f"{report['warmup_s']:g} s warm-up, on the same machine as the server (load average "
        f"{report['load_average_1min']['start']:.2f} at the start, "
        f"{report['load_average_1min']['end']:.2f} at the end).",
        f"Gateway: scripts/serve.py, {gw['workers']} gunicorn {gw['worker_class']} processes x "
        f"{gw['threads']} threads ({gw['processes']} processes seen), "
        "IPO_RATE_LIMIT_PER_MINUTE=0, every other setting at its default.",
        "",
        "| scenario | concurrency | requests/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/request | client CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        lat = row["latency_us"]
        lines.append(
            f"| {row['scenario']} | {row['concurrency']} | {row['requests_per_s']:.1f} "
            f"| {lat['p50'] / 1000:.2f} | {lat['p95'] / 1000:.2f} | {lat['p99'] / 1000:.2f} "
            f"| {_errors_cell(row)} | {row['server_cpu_ms_per_request']:.3f} "
            f"| {row['client_cpu_ms_per_request']:.3f} |"
        )
    lines += [
        "",
        "Scenarios: "
        + "; ".join(
            f"`{n}` {h.SCENARIOS[n].about}"
            for n in dict.fromkeys(r["scenario"] for r in report["runs"])
        )
        + ". Uncached bodies differ per request by a relative 1e-6 on one float of each row.",
        "",
        "In-process floor (scripts/bench.py models, batch 1, median):",
        "",
        "| model | version | ms/instance |",
        "|---|---|---|",
    ]
    for row in report["floor"]:
        lines.append(
            f"| {row['model']} | {row['version']} | {row['batch_1_ms_per_instance']:.3f} |"
        )
    lines += ["", *bf.cold_lines(report)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the platform.")
    sub = parser.add_subparsers(dest="what", required=True)
    models = sub.add_parser("models", help="in-process time per instance of every model")
    models.add_argument("--repeats", type=int, default=30)
    models.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    http = sub.add_parser("http", help="the whole stack over HTTP, against a fresh gateway")
    http.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    http.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    http.add_argument("--warmup", type=float, default=1.0, help="seconds before each run")
    http.add_argument("--concurrency", default="1,8,32", help="comma-separated connections")
    http.add_argument(
        "--scenarios",
        default="risk-1,risk-100,risk-hit,dcf-1,ensemble-1",
        help="comma-separated scenarios",
    )
    http.add_argument("--generator", default="auto", choices=("auto", "wrk", "python"))
    http.add_argument("--cold-starts", type=int, default=5, help="starts; the median is shown")
    http.add_argument(
        "--against", choices=("none", "mlserver"), default="none", help="a reference server"
    )
    http.add_argument("--rounds", type=int, default=2, help="rounds per concurrency (--against)")
    http.add_argument("--ports", default="", help="servers' ports, e.g. 8591-8599 (default: any)")
    http.add_argument("--repeats", type=int, default=30, help="in-process floor repeats")
    http.add_argument(
        "--stage-timers",
        type=Path,
        metavar="FILE",
        help="time each stage of every request into FILE.<pid>.json (then stage_timers.py FILE)",
    )
    cold = sub.add_parser("cold", help="cold starts of predict_risk alone and of the gateway")
    cold.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    cold.add_argument("--cold-starts", type=int, default=5, help="starts; the median is shown")
    explain = sub.add_parser("explain", help="in-process time of an explanation per instance")
    explain.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    explain.add_argument("--paths", type=int, default=25, help="sampled Shapley paths")
    explain.add_argument("--batch", type=int, default=10, help="instances per explanation")
    explain.add_argument("--repeats", type=int, default=5, help="timed runs; the median is shown")
    batch = sub.add_parser("batch", help="batch prediction rows/s on one process")
    batch.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    batch.add_argument("--risk-rows", type=int, default=100_000, help="rows of the risk job")
    batch.add_argument("--dcf-rows", type=int, default=5_000, help="rows of the DCF job")
    bm.add_parser(sub)
    ba.add_parser(sub)
    args = parser.parse_args(argv)
    if args.what == "audit":
        try:
            table, report = ba.run(args, machine())
        except ValueError as exc:
            parser.error(str(exc))
        emit(args.out, table, report)
        return 0
    if args.what == "memory":
        try:
            table, report = bm.run(args, machine())
        except (RuntimeError, ValueError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        emit(args.out, table, report)
        return 0
    if args.what == "batch":
        if min(args.risk_rows, args.dcf_rows) < 1:
            parser.error("--risk-rows and --dcf-rows must be at least 1")
        about = machine()
        with tempfile.TemporaryDirectory(prefix="ipo-bench-batch-") as folder:
            found = bb.run_batch(Path(folder), {"risk": args.risk_rows, "dcf": args.dcf_rows})
        table = bb.markdown(found, about, Settings.model_fields["batch_shard_rows"].default)
        emit(args.out, table, {"machine": about, "batch": found})
        return 0
    if args.what == "explain":
        settings, about = settings_or_exit("bench"), machine()
        found = bx.bench_explain(
            settings,
            paths=args.paths,
            batch=args.batch,
            repeats=args.repeats,
            prepare=bmod.sized_texts,
        )
        table = bx.markdown(found, about)
        emit(args.out, table, {"machine": about, "explanations": found})
        return 0 if found else 1
    if args.what == "cold":
        if args.cold_starts < 1:
            parser.error("--cold-starts must be at least 1")
        try:
            table, report = bf.run_cold(args.cold_starts, machine())
        except RuntimeError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        emit(args.out, table, report)
        return 0
    if args.what == "http":
        if args.cold_starts < 1 or args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
            parser.error(
                "--cold-starts and --rounds must be at least 1, --duration > 0, --warmup >= 0"
            )
        if args.ports:
            low, _, high = args.ports.partition("-")
            h.PORT_RANGE[:] = range(int(low), int(high or low) + 1)
        try:
            return run_http(args)
        except KeyboardInterrupt:
            print("bench: interrupted; the gateway was stopped", file=sys.stderr)
            return 130
        except RuntimeError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1

    about = machine()
    rows = bmod.bench_models(settings_or_exit("bench"), args.repeats)
    if not rows:
        print("no model in production; run `make run` or scripts/train_models.py first")
        return 1
    table = bmod.markdown(rows, about)
    emit(args.out, table, {"machine": about, "models": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
