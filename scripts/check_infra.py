"""Check that Terraform, the route table and the function folders name the same things.

    python scripts/check_infra.py [--root DIR]

A function exists because its folder ``functions/<name>/main.py`` does. It must also have
an entry in Terraform's function map (terraform/function_sizes.tf) and at least one route
in common/api/openapi.yaml; a route under /v1/jobs/ is a scheduled job and needs a Cloud
Scheduler entry (terraform/scheduler.tf) on the same path. A function reads the artifact
bucket unless terraform/iam.tf's ``artifact_writers`` gives it more. Nothing in Terraform
or the spec may name a function that has no folder. The alert policies must hold the
reference design's thresholds, every variable needs a description and a type and they
stay in alphabetical order, every output is described, the API config is replaced safely
when the spec changes (its id holds the spec's hash, create_before_destroy), every
function's server runs one worker process with as many threads as the requests Cloud Run
sends it at once (THREADS = concurrency, WORKERS = 1), the audit chain's anchor lines are
exported to the locked-retention audit-log bucket by a sink of their own, and no secret
is ever referenced as ``latest``. Each problem names the file to fix. Exit status 1 when
there is any.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tools.infra.terraform_checks import (
    check_alerts,
    check_audit_anchors,
    check_declarations,
    check_gateway_config,
    check_no_latest,
    check_server_threads,
)
from tools.infra.terraform_reader import Terraform, unquote

ROOT = Path(__file__).resolve().parents[1]
JOBS_PREFIX = "/v1/jobs/"

# Cron fields of each job's default schedule: daily, hourly, every 15 minutes, daily,
# every minute, every 15 minutes.
SCHEDULES = {
    "compliance_scan": re.compile(r"^\d{1,2} \d{1,2} \* \* \*$"),
    "drift_scan": re.compile(r"^\d{1,2} \* \* \* \*$"),
    "warm_cache": re.compile(r"^\*/15 \* \* \* \*$"),
    "purge_retention": re.compile(r"^\d{1,2} \d{1,2} \* \* \*$"),
    "run_batch_jobs": re.compile(r"^\* \* \* \* \*$"),
    "shadow_replay": re.compile(r"^\*/15 \* \* \* \*$"),
}


def function_folders(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "functions").glob("*/main.py")}


def spec_functions(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Function name -> the 'METHOD path' of each route that names it."""
    routes: dict[str, list[str]] = {}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            name = operation.get("x-ipo-function") if isinstance(operation, dict) else None
            routes.setdefault(str(name), []).append(f"{method.upper()} {path}")
    return routes


def check_functions(root: Path, tf: Terraform, spec: dict[str, Any]) -> list[str]:
    problems = []
    folders = function_folders(root)
    for name in sorted(folders):
        source = (root / "functions" / name / "main.py").read_text()
        if not re.search(rf"^def {re.escape(name)}\(", source, re.M):
            problems.append(
                f"functions/{name}/main.py: no entry point `def {name}(...)`; Terraform deploys "
                "each function with its folder name as the entry point"
            )
    # Every function has its size; only the functions that do more than read the artifact
    # bucket are named in `artifact_writers`, and those must exist.
    for local, file_hint, complete in (
        ("function_defaults", "function_sizes.tf", True),
        ("artifact_writers", "iam.tf", False),
    ):
        found = tf.local(local)
        if found is None:
            problems.append(f"terraform/{file_hint}: local `{local}` is missing")
            continue
        file, entries = found
        for name in sorted(folders - set(entries)) if complete else ():
            problems.append(f"terraform/{file}: `{local}` has no entry for functions/{name}")
        for name in sorted(set(entries) - folders):
            problems.append(
                f"terraform/{file}: `{local}` names `{name}`, which has no functions/{name}/main.py"
            )
    deployed = tf.resources("google_cloudfunctions2_function").get("this")
    if deployed is None:
        problems.append(
            "terraform/functions.tf: resource google_cloudfunctions2_function.this is missing"
        )
    else:
        file, body = deployed
        if body.get("for_each") != "${local.functions}":
            problems.append(
                f"terraform/{file}: the functions must be deployed for_each local.functions"
            )
        entry = [unquote(b.get("entry_point")) for b in body.get("build_config", [])]
        if entry != ["${each.key}"]:
            problems.append(f"terraform/{file}: build_config.entry_point must be each.key")
    routes = spec_functions(spec)
    for name in sorted(folders - set(routes)):
        problems.append(
            f"common/api/openapi.yaml: no route has x-ipo-function: {name} (functions/{name})"
        )
    for name in sorted(set(routes) - folders):
        listed = ", ".join(routes[name])
        problems.append(
            f"common/api/openapi.yaml: {listed} routes to x-ipo-function `{name}`, which has no "
            f"functions/{name}/main.py"
        )
    return problems


def check_schedules(root: Path, tf: Terraform, spec: dict[str, Any]) -> list[str]:
    problems = []
    found = tf.local("scheduled_jobs")
    if found is None:
        return ["terraform/scheduler.tf: local `scheduled_jobs` is missing"]
    file, jobs = found
    folders = function_folders(root)
    job_routes = {
        operation.get("x-ipo-function"): path
        for path, operations in spec.get("paths", {}).items()
        if path.startswith(JOBS_PREFIX)
        for operation in operations.values()
        if isinstance(operation, dict)
    }
    for name, path in sorted(job_routes.items()):
        if name not in jobs:
            problems.append(
                f"terraform/{file}: `scheduled_jobs` has no entry for {name} "
                f"(common/api/openapi.yaml routes POST {path} to it)"
            )
        elif unquote(jobs[name].get("path")) != path:
            problems.append(
                f"terraform/{file}: scheduled_jobs.{name}.path is {unquote(jobs[name].get('path'))}"
                f", but common/api/openapi.yaml serves it at {path}"
            )
    for name in sorted(set(jobs) - set(job_routes)):
        where = "has no functions/{0}/main.py" if name not in folders else "has no /v1/jobs/ route"
        problems.append(
            f"terraform/{file}: `scheduled_jobs` names `{name}`, which {where.format(name)}"
        )
    variables = {unquote(k): (f, v) for f, block in tf.blocks("variable") for k, v in block.items()}
    if "schedules" not in variables:
        return [*problems, "terraform/variables.tf: variable `schedules` is missing"]
    vfile, schedules = variables["schedules"]
    defaults = dict(re.findall(r'(\w+)\s*=\s*optional\(string,\s*"([^"]*)"\)', schedules["type"]))
    for name, pattern in SCHEDULES.items():
        if not pattern.match(defaults.get(name, "")):
            problems.append(
                f"terraform/{vfile}: the default schedule of {name} is {defaults.get(name)!r}, "
                f"expected to match {pattern.pattern}"
            )
    return problems


def check(root: Path = ROOT) -> list[str]:
    tf = Terraform(root / "terraform")
    spec = yaml.safe_load((root / "common" / "api" / "openapi.yaml").read_text())
    return [
        *check_functions(root, tf, spec),
        *check_schedules(root, tf, spec),
        *check_alerts(tf),
        *check_declarations(tf),
        *check_gateway_config(tf),
        *check_server_threads(tf),
        *check_audit_anchors(tf),
        *check_no_latest(root),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    problems = check(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        print("terraform, common/api/openapi.yaml and functions/ agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
