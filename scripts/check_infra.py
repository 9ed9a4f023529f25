"""Check that Terraform, the route table and the function folders name the same things.

    python scripts/check_infra.py [--root DIR]

A function exists because its folder ``functions/<name>/main.py`` does. It must also
have an entry in Terraform's function map (terraform/functions.tf), an artifact access
rule (terraform/iam.tf) and at least one route in common/openapi.yaml; a route under
/v1/jobs/ is a scheduled job and needs a Cloud Scheduler entry (terraform/scheduler.tf)
on the same path. Nothing in Terraform or the spec may name a function that has no
folder. The alert policies must hold the reference design's thresholds, every variable
needs a description and a type and they stay in alphabetical order, every output is
described, the API config is replaced safely when the spec changes (its id holds the
spec's hash, create_before_destroy), and no secret is ever referenced as ``latest``.
Each problem names the file to fix. Exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import yaml

ROOT = Path(__file__).resolve().parents[1]
JOBS_PREFIX = "/v1/jobs/"

# The reference design's alert policies: metric threshold, window and how long it holds.
ALERTS = {
    "latency": {"latency_mean_ms": 1000, "latency_window_s": 300, "latency_for_s": 120},
    "error_rate": {"error_ratio": 0.05, "error_for_s": 60},
    "memory": {"memory_ratio": 0.9, "memory_for_s": 300},
    "drift": {"drift_score": 0.1, "drift_for_s": 600},
}
# Cron fields of each job's default schedule: daily, hourly, every 15 minutes, daily.
SCHEDULES = {
    "compliance_scan": re.compile(r"^\d{1,2} \d{1,2} \* \* \*$"),
    "drift_scan": re.compile(r"^\d{1,2} \* \* \* \*$"),
    "warm_cache": re.compile(r"^\*/15 \* \* \* \*$"),
    "purge_retention": re.compile(r"^\d{1,2} \d{1,2} \* \* \*$"),
}
_LATEST = re.compile(r"""(versions/latest\b|version\s*=\s*"latest"|:latest\b)""")


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> dict[str, Any]:
    """Parsing is slow (about a second for the whole folder); the same text parses once."""
    parsed: dict[str, Any] = hcl2.loads(text)
    return parsed


class Terraform:
    """The parsed .tf files of one folder (not its modules)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = {path.name: _parse(path.read_text()) for path in sorted(folder.glob("*.tf"))}

    def blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, parsed in self.files.items():
            for block in parsed.get(kind, []):
                yield name, block

    def local(self, name: str) -> tuple[str, Any] | None:
        for file, block in self.blocks("locals"):
            if name in block:
                return file, block[name]
        return None

    def resources(self, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
        found = {}
        for file, block in self.blocks("resource"):
            for rtype, named in block.items():
                if unquote(rtype) == kind:
                    for rname, body in named.items():
                        found[unquote(rname)] = (file, body)
        return found


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
    for local, file_hint in (
        ("function_defaults", "function_sizes.tf"),
        ("artifact_access", "iam.tf"),
    ):
        found = tf.local(local)
        if found is None:
            problems.append(f"terraform/{file_hint}: local `{local}` is missing")
            continue
        file, entries = found
        for name in sorted(folders - set(entries)):
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
            f"common/openapi.yaml: no route has x-ipo-function: {name} (functions/{name})"
        )
    for name in sorted(set(routes) - folders):
        listed = ", ".join(routes[name])
        problems.append(
            f"common/openapi.yaml: {listed} routes to x-ipo-function `{name}`, which has no "
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
                f"(common/openapi.yaml routes POST {path} to it)"
            )
        elif unquote(jobs[name].get("path")) != path:
            problems.append(
                f"terraform/{file}: scheduled_jobs.{name}.path is {unquote(jobs[name].get('path'))}"
                f", but common/openapi.yaml serves it at {path}"
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


def _resolve(expression: Any, values: dict[str, Any]) -> Any:
    """``${local.alert_thresholds.X}`` (optionally with a unit suffix) -> its value."""
    text = unquote(expression)
    found = re.fullmatch(r"\$\{local\.alert_thresholds\.(\w+)\}(s?)", str(text))
    if not found:
        return text
    value = values.get(found[1])
    return f"{value}{found[2]}" if found[2] else value


def check_alerts(tf: Terraform) -> list[str]:
    problems = []
    found = tf.local("alert_thresholds")
    if found is None:
        return ["terraform/monitoring.tf: local `alert_thresholds` is missing"]
    file, thresholds = found
    for expected in ALERTS.values():
        for key, value in expected.items():
            if thresholds.get(key) != value:
                problems.append(
                    f"terraform/{file}: alert_thresholds.{key} is {thresholds.get(key)}, "
                    f"the reference design's is {value}"
                )
    policies = tf.resources("google_monitoring_alert_policy")
    for policy, expected in ALERTS.items():
        if policy not in policies:
            problems.append(f"terraform/monitoring.tf: alert policy `{policy}` is missing")
            continue
        pfile, body = policies[policy]
        condition = body["conditions"][0]["condition_threshold"][0]
        threshold_key = next(iter(expected))
        for_key = next(k for k in expected if k.endswith("_for_s"))
        checks = {
            "threshold_value": thresholds.get(threshold_key),
            "duration": f"{thresholds.get(for_key)}s",
            "comparison": "COMPARISON_GT",
        }
        for attribute, want in checks.items():
            got = _resolve(condition.get(attribute), thresholds)
            if got != want:
                problems.append(
                    f"terraform/{pfile}: alert `{policy}` has {attribute} {got!r}, "
                    f"expected {want!r}"
                )
        if policy == "latency":
            period = _resolve(condition["aggregations"][0].get("alignment_period"), thresholds)
            if period != f"{thresholds.get('latency_window_s')}s":
                problems.append(f"terraform/{pfile}: the latency alert must average over 5 min")
        if policy == "error_rate" and "denominator_filter" not in condition:
            problems.append(f"terraform/{pfile}: the error-rate alert must divide by all requests")
        if policy == "memory" and "memory/utilizations" not in str(condition.get("filter")):
            problems.append(f"terraform/{pfile}: the memory alert must watch memory/utilizations")
    return problems


def check_declarations(tf: Terraform) -> list[str]:
    problems = []
    names = []
    for file, block in tf.blocks("variable"):
        for raw, body in block.items():
            name = unquote(raw)
            names.append(name)
            for attribute in ("description", "type"):
                if attribute not in body:
                    problems.append(f"terraform/{file}: variable `{name}` has no {attribute}")
    if names != sorted(names):
        problems.append(f"terraform/variables.tf: variables are not in alphabetical order: {names}")
    for file, block in tf.blocks("output"):
        for raw, body in block.items():
            if "description" not in body:
                problems.append(f"terraform/{file}: output `{unquote(raw)}` has no description")
    return problems


def check_gateway_config(tf: Terraform) -> list[str]:
    """A changed spec must become a new API config, created before the old one goes."""
    found = tf.resources("google_api_gateway_api_config").get("this")
    if found is None:
        return ["terraform/gateway.tf: resource google_api_gateway_api_config.this is missing"]
    file, body = found
    problems = []
    if "module.gateway_spec.spec_sha256" not in str(body.get("api_config_id")):
        problems.append(f"terraform/{file}: the API config id must include the spec's hash")
    if not any(block.get("create_before_destroy") is True for block in body.get("lifecycle", [])):
        problems.append(f"terraform/{file}: the API config must be create_before_destroy")
    return problems


def check_no_latest(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / "terraform").rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _LATEST.search(line):
                problems.append(
                    f"{path.relative_to(root)}:{number}: a secret or image referenced as "
                    "'latest'; pin a version"
                )
    return problems


def check(root: Path = ROOT) -> list[str]:
    tf = Terraform(root / "terraform")
    spec = yaml.safe_load((root / "common" / "openapi.yaml").read_text())
    return [
        *check_functions(root, tf, spec),
        *check_schedules(root, tf, spec),
        *check_alerts(tf),
        *check_declarations(tf),
        *check_gateway_config(tf),
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
        print("terraform, common/openapi.yaml and functions/ agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
