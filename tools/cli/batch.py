"""``ipoctl batch submit|status|wait|cancel``: batch prediction jobs (docs/BATCH.md).

``wait`` polls the job until it ends, with a progress bar of rows done on a terminal, and
exits 0 when it succeeded, 1 when it failed or was cancelled. A job no worker moves for a
minute gets one line on stderr saying what runs the workers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tools.cli.client import EXIT_OK, EXIT_REFUSED, UsageError
from tools.cli.commands import Context
from tools.progress import bar

FINAL = ("succeeded", "failed", "cancelled")
DEFAULT_INTERVAL_S = 2.0
STALLED_S = 60.0
"""How long wait sees no row done before it says no worker seems to be running."""
sleep: Callable[[float], None] = time.sleep
"""How wait pauses between polls; tests replace it."""


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 300:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 300 seconds")
    return seconds


def rate(value: str) -> float:
    """A share between 0 and 1, for an argument."""
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= rate <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return rate


def add_commands(
    commands: Any, add_global_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    text = "Batch prediction jobs over JSONL files under batch/ in the artifact store."
    group = commands.add_parser("batch", help=text, description=text)
    add_global_options(group)
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(
        name: str, handler: Callable[[Context, argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        add_global_options(sub)
        sub.set_defaults(handler=handler)
        return sub

    sub = action("submit", cmd_batch_submit, "Start a job; prints it (and waits with --wait).")
    sub.add_argument("model")
    served = sub.add_mutually_exclusive_group(required=True)
    served.add_argument("--version", help="a production version, or a staging one that may serve")
    served.add_argument(
        "--stage", choices=("production",), help="the stage's version, resolved now"
    )
    sub.add_argument(
        "--input", required=True, metavar="URI", help="key, prefix/ or glob under batch/"
    )
    sub.add_argument(
        "--output", required=True, metavar="PREFIX", help="a new prefix under batch/, ending in /"
    )
    sub.add_argument("--key-field", metavar="FIELD", help="a field naming each row in the outputs")
    sub.add_argument(
        "--max-error-rate",
        type=rate,
        default=0.0,
        metavar="R",
        help="fail once more than this share of rows is refused (0..1, default 0)",
    )
    sub.add_argument("--wait", action="store_true", help="then wait for the job to end")
    _add_interval(sub)
    sub = action("status", cmd_batch_status, "Show a job: state, rows, errors, rate, time left.")
    sub.add_argument("id", metavar="ID", help="batch job id")
    sub = action("wait", cmd_batch_wait, "Wait for a job to end, showing its progress.")
    sub.add_argument("id", metavar="ID", help="batch job id")
    _add_interval(sub)
    sub = action("cancel", cmd_batch_cancel, "Cancel a job; rows already written stay.")
    sub.add_argument("id", metavar="ID", help="batch job id")


def _add_interval(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between polls (default {DEFAULT_INTERVAL_S:g})",
    )


def _path(job_id: str, action: str = "") -> str:
    path = f"/v1/batch-jobs/{quote(job_id, safe='')}"
    return f"{path}/{action}" if action else path


def cmd_batch_submit(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "model": args.model,
        "input_uri": args.input,
        "output_prefix": args.output,
        "max_error_rate": args.max_error_rate,
    }
    body.update({"version": args.version} if args.version else {"stage": args.stage})
    if args.key_field:
        body["key_field"] = args.key_field
    answer = ctx.client.call("POST", "/v1/batch-jobs", body)
    if not args.wait:
        return ctx.emit(answer, render)
    return wait(ctx, answer.data, args.interval)


def cmd_batch_status(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("GET", _path(args.id)), render)


def cmd_batch_wait(ctx: Context, args: argparse.Namespace) -> int:
    if not args.id.strip():
        raise UsageError("a batch job id is required")
    return wait(ctx, ctx.client.call("GET", _path(args.id)).data, args.interval)


def cmd_batch_cancel(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("POST", _path(args.id, "cancel")), render)


def wait(ctx: Context, job: dict[str, Any], interval: float) -> int:
    """Poll until the job ends; the bar counts rows done (on a terminal only)."""
    answer = None
    with bar(total=job["rows_total"], unit="rows", desc=job["job_id"][:8]) as progress:
        progress.update(job["rows_done"])
        still, told = 0.0, False
        while job["state"] not in FINAL:
            sleep(interval)
            answer = ctx.client.call("GET", _path(job["job_id"]))
            moved = answer.data["rows_done"] - job["rows_done"]
            progress.update(moved)
            still = 0.0 if moved else still + interval
            if still >= STALLED_S and not told:
                told = True
                (ctx.stderr or sys.stderr).write(
                    f"note: no row done for {still:.0f} s: workers run every minute on Cloud "
                    "Scheduler; on a laptop run one with `curl -X POST .../v1/jobs/batch-jobs` "
                    "(docs/BATCH.md)\n"
                )
            job = answer.data
    if ctx.json:
        ctx.stdout.write(json.dumps(job) + "\n")
    else:
        ctx.stdout.write(render(job) + "\n")
    return EXIT_OK if job["state"] == "succeeded" else EXIT_REFUSED


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "-"


def render(job: dict[str, Any]) -> str:
    """A job as a few aligned lines, its first errors one a line."""
    done, total, errors = job["rows_done"], job["rows_total"], job["errors"]
    rate, left = job.get("rows_per_s"), job.get("estimated_seconds_left")
    lines = [
        f"job       {job['job_id']}  {job['model_id']} {job['version']}  {job['state']}",
        f"rows      {_count(done)} / {_count(total)} done, {_count(job['predicted'])} predicted, "
        f"{_count(errors)} refused ({job['error_rate']:.2%}; limit {job['max_error_rate']:.2%})",
        f"shards    {_count(job['shards_done'])} / {_count(job['shards_total'])}",
        f"rate      {f'{rate:,.0f} rows/s' if rate else '-'}"
        f"   time left {f'{left:,.0f} s' if left is not None else '-'}",
        f"input     {job['input_uri']}",
        f"output    {job['output_uri']}",
    ]
    if job.get("reason"):
        lines.append(f"reason    {job['reason']}")
    if job.get("first_errors"):
        lines.append("first errors:")
        for error in job["first_errors"]:
            key = f" [{error['key']}]" if error.get("key") is not None else ""
            problem = error["error"]
            lines.append(
                f"  {error['source']}:{error['line']}{key}  {problem['code']}: {problem['message']}"
            )
    return "\n".join(lines)
