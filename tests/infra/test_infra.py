"""scripts/check_infra.py: Terraform, the route table and the function folders agree, and
a name changed in one place only is reported with the file to fix."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from common.api.routes import all_routes
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("check_infra", ROOT / "scripts" / "check_infra.py")
assert _spec is not None
assert _spec.loader is not None
check_infra = importlib.util.module_from_spec(_spec)
sys.modules["check_infra"] = check_infra
_spec.loader.exec_module(check_infra)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the parts of the repository the check reads."""
    shutil.copytree(ROOT / "terraform", tmp_path / "terraform", ignore=_ignored)
    shutil.copytree(ROOT / "functions", tmp_path / "functions", ignore=_ignored)
    (tmp_path / "common" / "api").mkdir(parents=True)
    shutil.copy(
        ROOT / "common" / "api" / "openapi.yaml", tmp_path / "common" / "api" / "openapi.yaml"
    )
    return tmp_path


def _ignored(_folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in {"__pycache__", ".terraform"} or n.startswith(".terraform")}


def edit(path: Path, change: Callable[[str], str]) -> None:
    before = path.read_text()
    after = change(before)
    assert after != before, f"the edit changed nothing in {path}"
    path.write_text(after)


def test_the_repository_agrees_with_itself() -> None:
    assert check_infra.check(ROOT) == []


def test_the_command_exits_zero_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_infra.main(["--root", str(ROOT)]) == 0
    assert "agree" in capsys.readouterr().out


def test_renaming_a_function_folder_is_reported_everywhere_it_is_named(repo: Path) -> None:
    old, new = repo / "functions" / "drift_scan", repo / "functions" / "drift_scanner"
    old.rename(new)
    edit(new / "main.py", lambda s: s.replace("def drift_scan(", "def drift_scanner("))
    problems = "\n".join(check_infra.check(repo))
    assert (
        "terraform/function_sizes.tf: `function_defaults` has no entry for functions/drift_scanner"
        in problems
    )
    assert "terraform/function_sizes.tf: `function_defaults` names `drift_scan`" in problems
    assert "terraform/iam.tf: `artifact_writers` names `drift_scan`" in problems
    assert "common/api/openapi.yaml: no route has x-ipo-function: drift_scanner" in problems
    assert (
        "common/api/openapi.yaml: POST /v1/jobs/drift-scan routes to x-ipo-function `drift_scan`"
        in problems
    )


def test_renaming_a_function_in_the_spec_only_names_the_spec(repo: Path) -> None:
    edit(
        repo / "common" / "api" / "openapi.yaml",
        lambda s: s.replace("x-ipo-function: predict_risk\n", "x-ipo-function: predict_risks\n"),
    )
    problems = check_infra.check(repo)
    moved = ", ".join(f"{r.method} {r.path}" for r in all_routes() if r.function == "predict_risk")
    assert problems == [
        "common/api/openapi.yaml: no route has x-ipo-function: predict_risk "
        "(functions/predict_risk)",
        f"common/api/openapi.yaml: {moved} routes to x-ipo-function `predict_risks`, "
        "which has no functions/predict_risks/main.py",
    ]


def test_renaming_a_function_in_terraform_only_names_terraform(repo: Path) -> None:
    edit(
        repo / "terraform" / "function_sizes.tf",
        lambda s: s.replace("    predict_cca ", "    predict_cca2 "),
    )
    problems = check_infra.check(repo)
    assert problems == [
        "terraform/function_sizes.tf: `function_defaults` has no entry for functions/predict_cca",
        "terraform/function_sizes.tf: `function_defaults` names `predict_cca2`, which has no "
        "functions/predict_cca/main.py".replace("predict_cca/", "predict_cca2/"),
    ]


def test_an_entry_point_that_does_not_match_the_folder_is_reported(repo: Path) -> None:
    edit(
        repo / "functions" / "list_models" / "main.py",
        lambda s: s.replace("def list_models(", "def models("),
    )
    assert check_infra.check(repo) == [
        "functions/list_models/main.py: no entry point `def list_models(...)`; Terraform "
        "deploys each function with its folder name as the entry point"
    ]


def test_a_scheduled_function_without_a_scheduler_job_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "scheduler.tf",
        lambda s: re.sub(r"\n\s*warm_cache\s*=\s*\{[^\n]*\}", "", s),
    )
    assert check_infra.check(repo) == [
        "terraform/scheduler.tf: `scheduled_jobs` has no entry for warm_cache "
        "(common/api/openapi.yaml routes POST /v1/jobs/warm-cache to it)"
    ]


def test_a_scheduler_job_on_the_wrong_path_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "scheduler.tf",
        lambda s: s.replace('"/v1/jobs/drift-scan"', '"/v1/jobs/drift"'),
    )
    assert check_infra.check(repo) == [
        "terraform/scheduler.tf: scheduled_jobs.drift_scan.path is /v1/jobs/drift, but "
        "common/api/openapi.yaml serves it at /v1/jobs/drift-scan"
    ]


def test_a_drift_scan_that_is_no_longer_hourly_is_reported(repo: Path) -> None:
    edit(repo / "terraform" / "variables.tf", lambda s: s.replace('"5 * * * *"', '"5 4 * * *"'))
    (problem,) = check_infra.check(repo)
    assert problem.startswith(
        "terraform/variables.tf: the default schedule of drift_scan is '5 4 * * *'"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("latency_mean_ms", "1000", "alert_thresholds.latency_mean_ms is 2000"),
        ("error_ratio", "0.05", "alert_thresholds.error_ratio is 0.1"),
        ("memory_for_s", "300", "alert_thresholds.memory_for_s is 60"),
        ("drift_score", "0.1", "alert_thresholds.drift_score is 0.2"),
    ],
)
def test_an_alert_threshold_off_the_reference_design_is_reported(
    repo: Path, key: str, value: str, expected: str
) -> None:
    changed = {"1000": "2000", "0.05": "0.1", "300": "60", "0.1": "0.2"}[value]
    edit(
        repo / "terraform" / "monitoring.tf",
        lambda s: re.sub(rf"({key}\s*=\s*){re.escape(value)}\b", rf"\g<1>{changed}", s),
    )
    problems = check_infra.check(repo)
    assert any(expected in p and p.startswith("terraform/monitoring.tf") for p in problems), (
        problems
    )


def test_an_alert_that_stops_using_its_threshold_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "monitoring.tf",
        lambda s: s.replace(
            "threshold_value = local.alert_thresholds.drift_score", "threshold_value = 0.5"
        ),
    )
    assert check_infra.check(repo) == [
        "terraform/monitoring.tf: alert `drift` has threshold_value 0.5, expected 0.1"
    ]


def test_a_missing_alert_policy_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "monitoring.tf",
        lambda s: s.replace(
            'resource "google_monitoring_alert_policy" "memory"',
            'resource "google_monitoring_alert_policy" "mem"',
        ),
    )
    assert check_infra.check(repo) == ["terraform/monitoring.tf: alert policy `memory` is missing"]


def test_an_api_config_that_is_not_replaced_safely_is_reported(repo: Path) -> None:
    edit(repo / "terraform" / "gateway.tf", lambda s: s.replace("create_before_destroy = true", ""))
    edit(
        repo / "terraform" / "gateway.tf",
        lambda s: s.replace("module.gateway_spec.spec_sha256", '"0"'),
    )
    assert check_infra.check(repo) == [
        "terraform/gateway.tf: the API config id must include the spec's hash",
        "terraform/gateway.tf: the API config must be create_before_destroy",
    ]


def test_a_secret_referenced_as_latest_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "functions.tf",
        lambda s: s.replace(
            'version    = google_secret_manager_secret_version.redis["url"].version',
            'version    = "latest"',
        ),
    )
    (problem,) = check_infra.check(repo)
    assert re.match(
        r"terraform/functions\.tf:\d+: a secret or image referenced as 'latest'", problem
    )


def test_variables_out_of_order_or_undescribed_are_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "variables.tf",
        lambda s: s + '\nvariable "aaa_extra" {\n  type = string\n}\n',
    )
    problems = check_infra.check(repo)
    assert "terraform/variables.tf: variable `aaa_extra` has no description" in problems
    assert any(
        p.startswith("terraform/variables.tf: variables are not in alphabetical order")
        for p in problems
    )


ONE_EDIT_ONE_MESSAGE = {
    "threads not the concurrency": (
        "terraform/function_sizes.tf",
        "threads = f.concurrency",
        "threads = 4",
        "terraform/function_sizes.tf: local.functions sets threads to 4; it must be each "
        "function's concurrency (f.concurrency), or requests queue inside the instance",
    ),
    "more than one worker": (
        "terraform/function_sizes.tf",
        "workers = 1",
        "workers = 2",
        "terraform/function_sizes.tf: local.functions sets workers to 2; one process per "
        "instance keeps one model pool, cache and audit group commit",
    ),
    "server environment not from the sizes": (
        "terraform/function_sizes.tf",
        "THREADS = tostring(f.threads)",
        'THREADS = "8"',
        'terraform/function_sizes.tf: function_server_environment sets THREADS to "8", '
        "expected tostring(<function>.threads)",
    ),
    "function deployed without its server environment": (
        "terraform/functions.tf",
        "merge(local.function_environment, local.function_server_environment[each.key])",
        "local.function_environment",
        "terraform/functions.tf: environment_variables is local.function_environment; it must "
        "end with local.function_server_environment[each.key] (THREADS and WORKERS)",
    ),
    "concurrency not from the sizes": (
        "terraform/functions.tf",
        "max_instance_request_concurrency = each.value.concurrency",
        "max_instance_request_concurrency = 80",
        "terraform/functions.tf: max_instance_request_concurrency is 80, expected "
        "each.value.concurrency (the value THREADS is set from)",
    ),
    "threads among the shared settings": (
        "terraform/functions.tf",
        '    IPO_DATA_DIR               = "/tmp/ipo"\n',
        '    IPO_DATA_DIR               = "/tmp/ipo"\n    THREADS = "4"\n',
        "terraform/functions.tf: function_environment must not set THREADS or WORKERS; they "
        "come from each function's size (function_server_environment)",
    ),
    "anchors no sink exports": (
        "terraform/logging.tf",
        '"jsonPayload.logger=\\"ipo.audit.anchor\\"",',
        "",
        "terraform/logging.tf: no log sink exports the audit anchors "
        '(jsonPayload.logger="ipo.audit.anchor")',
    ),
}


@pytest.mark.parametrize("case", sorted(ONE_EDIT_ONE_MESSAGE))
def test_a_server_or_anchor_setting_out_of_line_is_reported(repo: Path, case: str) -> None:
    path, old, new, message = ONE_EDIT_ONE_MESSAGE[case]
    text = (repo / path).read_text()
    assert old in text, f"{path} no longer holds {old!r}: update this case"
    edit(repo / path, lambda s: s.replace(old, new))
    assert check_infra.check(repo) == [message]


def test_an_anchor_sink_that_exports_more_than_the_anchors_is_reported(repo: Path) -> None:
    edit(
        repo / "terraform" / "logging.tf",
        lambda s: s.replace('join(" AND ", [', 'join(" OR ", [').replace(
            '"resource.type=\\"cloud_run_revision\\"",', ""
        ),
    )
    assert check_infra.check(repo) == [
        'terraform/logging.tf: sink `audit_anchors` must take only resource.type="'
        "cloud_run_revision\" entries (the functions' own lines)",
        "terraform/logging.tf: sink `audit_anchors` must export only the anchor lines; its "
        "filter has an OR",
    ]


def test_an_anchor_sink_outside_the_locked_bucket_or_without_its_grant_is_reported(
    repo: Path,
) -> None:
    edit(
        repo / "terraform" / "logging.tf",
        lambda s: s.replace(
            'name        = "${local.prefix}-audit-anchors"\n'
            '  description = "Audit chain anchors (logger ipo.audit.anchor) of the '
            "${local.prefix} functions, kept under the audit-log bucket's retention policy.\"\n"
            '  destination = "storage.googleapis.com/${google_storage_bucket.audit_logs.name}"',
            'name        = "${local.prefix}-audit-anchors"\n'
            '  destination = "storage.googleapis.com/${google_storage_bucket.access_logs.name}"',
        ).replace("google_logging_project_sink.audit_anchors.writer_identity", '"user:x@y.z"'),
    )
    assert check_infra.check(repo) == [
        "terraform/logging.tf: sink `audit_anchors` must write to the locked-retention bucket "
        "google_storage_bucket.audit_logs",
        "terraform/logging.tf: sink `audit_anchors`'s writer identity has no "
        "roles/storage.objectCreator grant on google_storage_bucket.audit_logs",
    ]


def test_make_check_infra_installs_the_test_dependencies_then_runs_the_check(
    tmp_path: Path,
) -> None:
    """After `make run` alone python-hcl2 is missing; the target installs it first."""
    done = subprocess.run(
        ["make", "-n", "check-infra", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    install = next(i for i, line in enumerate(lines) if "-r requirements-dev.txt" in line)
    run = next(i for i, line in enumerate(lines) if "scripts/check_infra.py" in line)
    assert install < run
    assert "`make check-infra`" in (ROOT / "README.md").read_text()
