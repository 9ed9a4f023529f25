"""The checks of scripts/check_infra.py that read Terraform on its own.

Alert thresholds, variable and output declarations, the API config's replacement, the
server's threads and workers, the audit-anchor log sink and pinned versions: each holds
or breaks within terraform/, without the route table or the function folders (those
cross-checks stay in check_infra.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tools.infra.terraform_reader import Terraform, expression_text, object_attribute, unquote

# The reference design's alert policies: metric threshold, window and how long it holds.
ALERTS: dict[str, dict[str, float]] = {
    "latency": {"latency_mean_ms": 1000, "latency_window_s": 300, "latency_for_s": 120},
    "error_rate": {"error_ratio": 0.05, "error_for_s": 60},
    "memory": {"memory_ratio": 0.9, "memory_for_s": 300},
    "drift": {"drift_score": 0.1, "drift_for_s": 600},
}
# The logger of the line each committed audit batch writes (docs/DEPLOYMENT.md).
ANCHOR_LOGGER = "ipo.audit.anchor"
ANCHOR_RESOURCE = "cloud_run_revision"
_LATEST = re.compile(r"""(versions/latest\b|version\s*=\s*"latest"|:latest\b)""")


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


def check_server_threads(tf: Terraform) -> list[str]:
    """gunicorn's THREADS must be the function's concurrency, and WORKERS one process.

    functions-framework starts gunicorn with THREADS threads (default 4 per CPU) in
    WORKERS processes; Cloud Run sends up to max_instance_request_concurrency requests to
    an instance at once. Fewer threads queue requests inside the instance; more workers
    split the per-instance caches, the model pool and the audit group commit.
    """
    problems = []
    sizes = tf.local("functions")
    if sizes is None:
        return ["terraform/function_sizes.tf: local `functions` is missing"]
    file, functions = sizes
    expression = expression_text(functions)
    loop = re.match(r"\{?\s*for\s+\w+\s*,\s*(\w+)\s+in\b", expression)
    item = loop[1] if loop else "f"
    threads, workers = (
        object_attribute(expression, "threads"),
        object_attribute(expression, "workers"),
    )
    if threads != f"{item}.concurrency":
        problems.append(
            f"terraform/{file}: local.functions sets threads to {threads or 'nothing'}; it must "
            f"be each function's concurrency ({item}.concurrency), or requests queue inside "
            "the instance"
        )
    if workers != "1":
        problems.append(
            f"terraform/{file}: local.functions sets workers to {workers or 'nothing'}; one "
            "process per instance keeps one model pool, cache and audit group commit"
        )
    server = tf.local("function_server_environment")
    if server is None:
        problems.append(f"terraform/{file}: local `function_server_environment` is missing")
    else:
        sfile, environment = server
        expression = expression_text(environment)
        for variable, field in (("THREADS", "threads"), ("WORKERS", "workers")):
            value = object_attribute(expression, variable)
            if value is None or not re.fullmatch(rf"tostring\(\w+\.{field}\)", value):
                problems.append(
                    f"terraform/{sfile}: function_server_environment sets {variable} to "
                    f"{value or 'nothing'}, expected tostring(<function>.{field})"
                )
    shared = tf.local("function_environment")
    if shared is not None and {"THREADS", "WORKERS"} & set(shared[1]):
        problems.append(
            f"terraform/{shared[0]}: function_environment must not set THREADS or WORKERS; "
            "they come from each function's size (function_server_environment)"
        )
    deployed = tf.resources("google_cloudfunctions2_function").get("this")
    if deployed is not None:
        dfile, body = deployed
        service = (body.get("service_config") or [{}])[0]
        concurrency = expression_text(service.get("max_instance_request_concurrency"))
        if concurrency != "each.value.concurrency":
            problems.append(
                f"terraform/{dfile}: max_instance_request_concurrency is {concurrency}, "
                "expected each.value.concurrency (the value THREADS is set from)"
            )
        environment = expression_text(service.get("environment_variables"))
        if not re.fullmatch(
            r"merge\(.*,\s*local\.function_server_environment\[each\.key\]\)", environment
        ):
            problems.append(
                f"terraform/{dfile}: environment_variables is {environment}; it must end with "
                "local.function_server_environment[each.key] (THREADS and WORKERS)"
            )
    return problems


def check_audit_anchors(tf: Terraform) -> list[str]:
    """One sink exports exactly the anchor lines to the locked-retention bucket."""
    wanted = f'jsonPayload.logger="{ANCHOR_LOGGER}"'
    sinks = [
        (name, file, body, expression_text(body.get("filter")).replace('\\"', '"'))
        for name, (file, body) in tf.resources("google_logging_project_sink").items()
    ]
    anchors = [sink for sink in sinks if wanted in sink[3]]
    if not anchors:
        return [f"terraform/logging.tf: no log sink exports the audit anchors ({wanted})"]
    grants = tf.resources("google_storage_bucket_iam_member").values()
    problems = []
    for name, file, body, text in anchors:
        if f'resource.type="{ANCHOR_RESOURCE}"' not in text:
            problems.append(
                f'terraform/{file}: sink `{name}` must take only resource.type="{ANCHOR_RESOURCE}" '
                "entries (the functions' own lines)"
            )
        if re.search(r"\bOR\b", text):
            problems.append(
                f"terraform/{file}: sink `{name}` must export only the anchor lines; its filter "
                "has an OR"
            )
        if "google_storage_bucket.audit_logs.name" not in str(body.get("destination")):
            problems.append(
                f"terraform/{file}: sink `{name}` must write to the locked-retention bucket "
                "google_storage_bucket.audit_logs"
            )
        if body.get("unique_writer_identity") is not True:
            problems.append(
                f"terraform/{file}: sink `{name}` needs its own writer identity "
                "(unique_writer_identity = true)"
            )
        member = f"${{google_logging_project_sink.{name}.writer_identity}}"
        if not any(
            grant.get("member") == member
            and unquote(grant.get("role")) == "roles/storage.objectCreator"
            and grant.get("bucket") == "${google_storage_bucket.audit_logs.name}"
            for _file, grant in grants
        ):
            problems.append(
                f"terraform/{file}: sink `{name}`'s writer identity has no "
                "roles/storage.objectCreator grant on google_storage_bucket.audit_logs"
            )
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
