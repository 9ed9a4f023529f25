"""Closed-loop HTTP load: wrk driven by a generated Lua script, or a Python asyncio client.

Both take a ``Target`` (URL, headers, body template) and report the same fields:
requests, duration_s, requests_per_s, errors (= errors_status + errors_socket),
errors_status (responses other than 200), errors_socket (connect, read, write, timeout),
statuses (count per HTTP status), latency_us (p50, p95, p99) and client_cpu_s (CPU time of
the generator itself, so a reader sees what the server shared the machine with).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

GENERATORS = ("auto", "wrk", "python")
MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class BodyTemplate:
    """A request body: literal ``parts`` around one number per slot.

    Slot i is rendered as ``base + step * u`` with u uniform in [0, 1), fresh per request,
    so bodies differ per request; with no slot every body is the same.
    """

    parts: tuple[str, ...]
    slots: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.slots) + 1:
            raise ValueError("a body template has one more part than it has slots")

    def render(self, rng: random.Random) -> bytes:
        out = [self.parts[0]]
        for (base, step), part in zip(self.slots, self.parts[1:], strict=True):
            out.append(repr(base + step * rng.random()))
            out.append(part)
        return "".join(out).encode()


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    body: BodyTemplate
    method: str = "POST"


def resolve_generator(name: str) -> str:
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    if name == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if name == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (use --generator python)")
    return name


def generator_version(name: str) -> str:
    if name != "wrk":
        return "python asyncio client"
    found = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (found.stdout + found.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk"


def run_load(
    generator: str, target: Target, *, concurrency: int, duration_s: float, timeout_s: float = 10.0
) -> dict[str, Any]:
    run = run_wrk if generator == "wrk" else run_python
    return run(target, concurrency=concurrency, duration_s=duration_s, timeout_s=timeout_s)


def summarise(
    *,
    requests: int,
    duration_s: float,
    statuses: dict[int, int],
    errors_socket: int,
    latency_us: dict[str, float],
    client_cpu_s: float,
) -> dict[str, Any]:
    errors_status = sum(n for status, n in statuses.items() if status != 200)
    return {
        "requests": requests,
        "duration_s": round(duration_s, 4),
        "requests_per_s": round(requests / duration_s, 2) if duration_s > 0 else 0.0,
        "errors": errors_status + errors_socket,
        "errors_status": errors_status,
        "errors_socket": errors_socket,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency_us": {k: round(v, 1) for k, v in latency_us.items()},
        "client_cpu_s": round(client_cpu_s, 4),
    }


def percentiles(samples_us: list[float]) -> dict[str, float]:
    """Nearest-rank p50, p95 and p99; zeros without samples."""
    ordered = sorted(samples_us)
    out = {}
    for p in (50, 95, 99):
        if not ordered:
            out[f"p{p}"] = 0.0
            continue
        rank = max(1, -(-p * len(ordered) // 100))
        out[f"p{p}"] = float(ordered[rank - 1])
    return out


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# --- wrk --------------------------------------------------------------------------------


def _lua_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # a long bracket drops a newline right after its opening, so none may start the text
    return f"[{eq}[\n{text}]{eq}]"


def lua_script(target: Target) -> str:
    path = urlsplit(target.url)
    path_q = path.path + (f"?{path.query}" if path.query else "")
    headers = ", ".join(
        f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in target.headers.items()
    )
    parts = ",\n".join(_lua_string(p) for p in target.body.parts)
    slots = ",\n".join(f"{{{base!r}, {step!r}}}" for base, step in target.body.slots)
    return f"""
local method = {_lua_string(target.method)}
local path = {_lua_string(path_q)}
local headers = {{{headers}}}
local parts = {{{parts}}}
local slots = {{{slots}}}
local fixed = nil
if #slots == 0 then fixed = wrk.format(method, path, headers, parts[1]) end

local threads = {{}}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

statuses = {{}}
function init(args)
  math.randomseed((tonumber(args[1]) or 0) + id * 7919)
end

function request()
  if fixed then return fixed end
  local out = {{}}
  for i = 1, #slots do
    out[#out + 1] = parts[i]
    out[#out + 1] = string.format("%.17g", slots[i][1] + slots[i][2] * math.random())
  end
  out[#out + 1] = parts[#parts]
  return wrk.format(method, path, headers, table.concat(out))
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local items = {{}}
  for status, n in pairs(merged) do
    items[#items + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "errors_socket": %d, "errors_status": %d, '
      .. '"statuses": {{%s}}, "latency_us": {{"p50": %d, "p95": %d, "p99": %d}}}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    table.concat(items, ", "),
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def run_wrk(
    target: Target, *, concurrency: int, duration_s: float, timeout_s: float = 10.0
) -> dict[str, Any]:
    threads = max(1, min(os.cpu_count() or 1, concurrency))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(lua_script(target))
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "--latency",
            "-s",
            str(script),
            target.url,
            "--",
            str(random.SystemRandom().randrange(1 << 30)),
        ]
        cpu_before = _cpu_s(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=duration_s + 60
        )
        client_cpu = _cpu_s(resource.RUSAGE_CHILDREN) - cpu_before
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    found = json.loads(lines[-1][len(MARKER) :])
    statuses = {int(k): int(v) for k, v in found["statuses"].items()}
    return summarise(
        requests=int(found["requests"]),
        duration_s=found["duration_us"] / 1e6,
        statuses=statuses,
        errors_socket=int(found["errors_socket"]),
        latency_us={k: float(v) for k, v in found["latency_us"].items()},
        client_cpu_s=client_cpu,
    )


# --- Python asyncio client --------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors_socket = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one full response; its status and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        close = True
    return status, close


async def _slot(
    target: Target, head: bytes, host: str, port: int, deadline: float, timeout_s: float, s: _Stats
) -> None:
    rng = random.Random(os.urandom(16))  # noqa: S311
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        try:
            async with asyncio.timeout(timeout_s):
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                body = target.body.render(rng)
                started = time.perf_counter()
                writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
                status, close = await _read_response(reader)
                s.latencies_us.append((time.perf_counter() - started) * 1e6)
                s.statuses[status] = s.statuses.get(status, 0) + 1
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            IndexError,
        ):
            s.errors_socket += 1
            close = True
            if writer is None:
                await asyncio.sleep(0.01)
        if close and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _python_load(
    target: Target, concurrency: int, duration_s: float, timeout_s: float
) -> tuple[_Stats, float]:
    url = urlsplit(target.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path + (f"?{url.query}" if url.query else "")
    lines = [f"{target.method} {path} HTTP/1.1", f"Host: {url.netloc}"]
    lines += [f"{k}: {v}" for k, v in target.headers.items()]
    head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
    stats = _Stats()
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(
        *(_slot(target, head, host, port, deadline, timeout_s, stats) for _ in range(concurrency))
    )
    return stats, time.perf_counter() - started


def run_python(
    target: Target, *, concurrency: int, duration_s: float, timeout_s: float = 10.0
) -> dict[str, Any]:
    cpu_before = _cpu_s(resource.RUSAGE_SELF)
    stats, elapsed = asyncio.run(_python_load(target, concurrency, duration_s, timeout_s))
    return summarise(
        requests=sum(stats.statuses.values()),
        duration_s=elapsed,
        statuses=stats.statuses,
        errors_socket=stats.errors_socket,
        latency_us=percentiles(stats.latencies_us),
        client_cpu_s=_cpu_s(resource.RUSAGE_SELF) - cpu_before,
    )
