"""The HTTP benchmark's gateway and scenarios: a throw-away data folder with trained models,
the gateway started by scripts/serve.py (cold start timed), each scenario run at each
concurrency with the server's CPU time per request, and the Markdown report."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_load import BodyTemplate, Target, run_load

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "scripts" / "serve.py"
COLD_START_MODEL = "risk"
RELATIVE_STEP = 1e-6
SLOT = "\x00bench-slot\x00"


@dataclass(frozen=True)
class Scenario:
    model: str
    rows: int
    uncached: bool
    about: str


SCENARIOS = {
    "risk-1": Scenario("risk", 1, True, "uncached risk, 1 row"),
    "risk-100": Scenario("risk", 100, True, "uncached risk, 100 rows"),
    "risk-hit": Scenario("risk", 1, False, "risk, the same body every time (cache hit)"),
    "dcf-1": Scenario("dcf", 1, True, "uncached dcf, 1 row"),
    "ensemble-1": Scenario("ensemble", 1, True, "uncached ensemble, 1 row"),
}


def models_to_train(scenarios: list[str]) -> list[str]:
    """The models the scenarios (and the cold start) call, in the order they are built; a
    model that combines others (the ensemble) needs every model the API serves."""
    from common.api.routes import served_models
    from tools.training.builders import build_order, needs_registry

    wanted = {COLD_START_MODEL} | {SCENARIOS[s].model for s in scenarios}
    if any(needs_registry(m) for m in wanted):
        wanted = set(served_models())
    return build_order(sorted(wanted))


# --- request bodies ---------------------------------------------------------------------


def first_float_leaf(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Path of the first non-zero float in document order (ints and booleans are skipped)."""
    if isinstance(value, float) and value != 0.0:
        return path
    children = value.items() if isinstance(value, dict) else ()
    for key, child in enumerate(value) if isinstance(value, list) else children:
        found = first_float_leaf(child, (*path, key))
        if found is not None:
            return found
    return None


def leaf_schema(
    schemas: dict[str, dict[str, Any]], model: str, path: tuple[Any, ...]
) -> dict[str, Any]:
    """The schema of one leaf; a composite's part without properties is that model's schema."""
    schema = schemas.get(model, {})
    for depth, key in enumerate(path):
        properties = schema.get("properties", {})
        if key in properties and ("properties" in properties[key] or depth == len(path) - 1):
            schema = properties[key]
        elif key in schemas:
            schema = schemas[key]
        else:
            return {}
    return schema


def perturbation_step(base: float, schema: dict[str, Any]) -> float:
    """A tiny relative step that keeps base + step * u (u in [0, 1)) inside the schema."""
    step = abs(base) * RELATIVE_STEP
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if high is None or base + step < high:
        return step
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is None or base - step > low:
        return -step
    raise ValueError(f"no room to perturb {base} inside {low}..{high}")


def body_template(
    scenario: Scenario, examples: dict[str, Any], schemas: dict[str, dict[str, Any]]
) -> BodyTemplate:
    example = examples[scenario.model]
    if not scenario.uncached:
        instances = [example] * scenario.rows
        return BodyTemplate((json.dumps({"instances": instances}, separators=(",", ":")),))
    path = first_float_leaf(example)
    if path is None:
        raise ValueError(f"the {scenario.model} example has no float to perturb")
    marked: Any = json.loads(json.dumps(example))
    holder = marked
    for key in path[:-1]:
        holder = holder[key]
    base = holder[path[-1]]
    holder[path[-1]] = SLOT
    text = json.dumps({"instances": [marked] * scenario.rows}, separators=(",", ":"))
    parts = tuple(text.split(json.dumps(SLOT)))
    step = perturbation_step(base, leaf_schema(schemas, scenario.model, path))
    return BodyTemplate(parts, ((base, step),) * (len(parts) - 1))


# --- set-up ------------------------------------------------------------------------------


def environment(folder: Path) -> dict[str, str]:
    """This process's environment without IPO_ variables, on a data folder of its own."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IPO_") and k != "PORT"}
    environ["IPO_DATA_DIR"] = str(folder / "data")
    environ["IPO_ENV_FILE"] = str(folder / "bench.env")
    environ["IPO_RATE_LIMIT_PER_MINUTE"] = "0"
    return environ


def _script(environ: dict[str, str], name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare(environ: dict[str, str], models: list[str]) -> str:
    """Train ``models`` into the data folder; an admin token signed with its secrets."""
    _script(environ, "train_models.py", "--if-absent", "--models", ",".join(models))
    return _script(environ, "issue_token.py", "--ttl", str(12 * 3600)).strip()


def production_inputs(settings: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Each production version's example instance and input schema, by model id."""
    from common.backends import build_backends
    from common.registry.records import Registry

    backends = build_backends(settings)
    examples, schemas = {}, {}
    try:
        registry = Registry(backends.documents, backends.artifacts)
        for model in registry.list_models():
            version = registry.get_model(model.model_id).production_version
            if version is not None:
                record = registry.get_version(model.model_id, version)
                examples[model.model_id] = record.example
                schemas[model.model_id] = dict(record.input_schema or {})
    finally:
        backends.close()
    return examples, schemas


# --- the gateway ------------------------------------------------------------------------


PORT_RANGE: list[int] = []
"""Ports the servers started here may take (``bench.py http --ports``); empty: any free one."""


def free_port(exclude: tuple[int, ...] = ()) -> int:
    """A port nothing listens on: the first free one of PORT_RANGE, else one the kernel picks."""
    for port in [p for p in PORT_RANGE if p not in exclude] or [0]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[-1]}")


def serve_defaults() -> dict[str, Any]:
    """The server layout scripts/serve.py uses when given no options."""
    import serve

    return {
        "workers": serve.default_processes(),
        "threads": serve.THREADS,
        "worker_class": "gthread",
    }


def process_tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (fields 14 and 15 of /proc/<pid>/stat) of the given processes."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def first_200_ms(
    process: subprocess.Popen[bytes],
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    started: float,
    timeout_s: float,
    log: Path,
    what: str,
    poll_s: float = 0.005,
    only_200: bool = False,
) -> float:
    """Ms from ``started`` to the first 200 on ``POST path`` from a server just started;
    RuntimeError with the tail of ``log`` if the process exits or ``timeout_s`` passes
    first (or, with ``only_200``, at any other status)."""
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return (time.perf_counter() - started) * 1000.0
            if only_200:
                raise RuntimeError(f"{what} answered {response.status} on {path}")
        except OSError:
            pass
        finally:
            connection.close()
        if process.poll() is not None or time.perf_counter() - started > timeout_s:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{what} did not answer {path}:\n{tail}")
        time.sleep(poll_s)


class Gateway:
    """scripts/serve.py on a free port in its own process group, logging to ``log``."""

    def __init__(
        self, environ: dict[str, str], log: Path, port: int = 0, options: tuple[str, ...] = ()
    ) -> None:
        self.environ, self.log = environ, log
        self.process: subprocess.Popen[bytes] | None = None
        self.fixed_port = self.port = port
        self.options = options
        """More of scripts/serve.py's options (``--stage-timers FILE``)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, token: str, body: bytes, timeout_s: float = 120.0) -> float:
        """Start it; ms from process start to the first 200 on POST /v1/predict/<model>."""
        self.stop()
        self.port = self.fixed_port or free_port()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with self.log.open("a") as sink:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, str(SERVE), "--port", str(self.port), *self.options],
                cwd=ROOT,
                env=self.environ,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return first_200_ms(
                self.process,
                self.port,
                f"/v1/predict/{COLD_START_MODEL}",
                body,
                headers,
                started=started,
                timeout_s=timeout_s,
                log=self.log,
                what="the gateway",
            )
        except RuntimeError:
            self.stop()
            raise

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        stop_group(process)


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after 15 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15.0)
            return


def cold_starts(gateway: Gateway, token: str, example: Any, runs: int) -> list[float]:
    """Start the gateway ``runs`` times (stopping it in between); the last one keeps running."""
    body = json.dumps({"instances": [example]}).encode()
    return [round(gateway.start(token, body), 1) for _ in range(runs)]


def run_scenarios(
    gateway: Gateway,
    token: str,
    generator: str,
    templates: dict[str, BodyTemplate],
    concurrencies: list[int],
    duration_s: float,
    warmup_s: float,
) -> list[dict[str, Any]]:
    rows = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for name, template in templates.items():
        url = f"{gateway.base}/v1/predict/{SCENARIOS[name].model}"
        target = Target(url=url, headers=headers, body=template)
        for concurrency in concurrencies:
            run_load(generator, target, concurrency=concurrency, duration_s=warmup_s)
            pids = gateway.pids()
            before = cpu_seconds(pids)
            result = run_load(generator, target, concurrency=concurrency, duration_s=duration_s)
            server_cpu = cpu_seconds(pids) - before
            done = max(result["requests"], 1)
            rows.append(
                {
                    "scenario": name,
                    "concurrency": concurrency,
                    **result,
                    "server_cpu_s": round(server_cpu, 4),
                    "server_cpu_ms_per_request": round(server_cpu * 1000.0 / done, 4),
                    "client_cpu_ms_per_request": round(result["client_cpu_s"] * 1000.0 / done, 4),
                    "server_processes": len(pids),
                }
            )
            print(
                f"{name} c={concurrency}: {result['requests_per_s']:.1f} req/s, "
                f"p50 {result['latency_us']['p50'] / 1000:.2f} ms, errors {result['errors']}",
                file=sys.stderr,
                flush=True,
            )
    return rows
