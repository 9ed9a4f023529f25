"""terraform/variables.tf and terraform/function_sizes.tf, evaluated by Terraform itself:
a wrong value is refused at plan time with a message that names it, and the function
sizes are the reference design's with the user's overrides applied."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="the terraform binary is not on PATH"
)

REQUIRED: dict[str, Any] = {
    "project_id": "my-project-1",
    "jwt": {
        "issuer": "https://idp.example/",
        "audience": "ipo-valuation",
        "jwks_url": "https://idp.example/jwks.json",
    },
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two provider-free files, plus an output exposing the resolved sizes."""
    folder = tmp_path_factory.mktemp("terraform_variables")
    for name in ("variables.tf", "function_sizes.tf"):
        shutil.copy(ROOT / "terraform" / name, folder / name)
    (folder / "outputs.tf").write_text(
        'output "functions" {\n  value = local.functions\n}\n'
        'output "server_environment" {\n  value = local.function_server_environment\n}\n'
    )
    done = terraform(folder, "init", "-input=false")
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


def terraform(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = folder / "terraformrc"
    config.touch()
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        ["terraform", f"-chdir={folder}", *args, "-no-color"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def apply(root: Path, **values: Any) -> subprocess.CompletedProcess[str]:
    (root / "test.tfvars.json").write_text(json.dumps({**REQUIRED, **values}))
    for state in root.glob("terraform.tfstate*"):
        state.unlink()
    return terraform(root, "apply", "-auto-approve", "-input=false", "-var-file=test.tfvars.json")


def sizes(root: Path, **values: Any) -> dict[str, Any]:
    done = apply(root, **values)
    assert done.returncode == 0, done.stdout + done.stderr
    return output(root, "functions")


def output(root: Path, name: str) -> dict[str, Any]:
    shown = terraform(root, "output", "-json", name)
    assert shown.returncode == 0, shown.stderr
    resolved: dict[str, Any] = json.loads(shown.stdout)
    return resolved


def refused(root: Path, **values: Any) -> str:
    done = apply(root, **values)
    assert done.returncode != 0, f"accepted: {values}"
    return " ".join((done.stdout + done.stderr).split())


def test_every_function_folder_has_a_size(root: Path) -> None:
    folders = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    assert set(sizes(root)) == folders


def test_defaults_follow_the_reference_design(root: Path) -> None:
    resolved = sizes(root)
    assert resolved["predict_dcf"] == {
        "cpu": "2",
        "memory": "4Gi",
        "timeout": 30,
        "min": 1,
        "max": 100,
        "concurrency": 16,
        "threads": 16,
        "workers": 1,
    }
    assert resolved["predict_ensemble"]["cpu"] == "2"
    assert resolved["predict_ensemble"]["memory"] == "6Gi"
    for job in ("warm_cache", "drift_scan", "compliance_scan", "purge_retention"):
        assert resolved[job]["concurrency"] == 1
        assert resolved[job]["timeout"] == 540


def test_an_override_changes_only_what_it_names(root: Path) -> None:
    before = sizes(root)
    after = sizes(root, functions={"predict_dcf": {"min_instances": 3, "memory": "8Gi"}})
    assert after["predict_dcf"] == {**before["predict_dcf"], "min": 3, "memory": "8Gi"}
    assert {k: v for k, v in after.items() if k != "predict_dcf"} == {
        k: v for k, v in before.items() if k != "predict_dcf"
    }


def test_each_function_serves_its_concurrency_with_as_many_threads_in_one_process(
    root: Path,
) -> None:
    resolved = sizes(root)
    environment = output(root, "server_environment")
    assert set(environment) == set(resolved)
    for name, size in resolved.items():
        assert environment[name] == {"THREADS": str(size["concurrency"]), "WORKERS": "1"}, name
    assert environment["list_models"]["THREADS"] == "40"
    assert environment["warm_cache"]["THREADS"] == "1"


def test_threads_follow_an_overridden_concurrency(root: Path) -> None:
    resolved = sizes(root, functions={"predict_risk": {"concurrency": 32}})
    assert resolved["predict_risk"]["threads"] == 32
    assert output(root, "server_environment")["predict_risk"] == {
        "THREADS": "32",
        "WORKERS": "1",
    }


def test_an_override_of_a_function_that_does_not_exist_is_refused(root: Path) -> None:
    message = refused(root, functions={"predict_dfc": {"min_instances": 2}})
    assert "var.functions names functions that do not exist: predict_dfc" in message
    assert "Known: assign_variant," in message


def test_memory_the_cpu_count_does_not_allow_is_refused(root: Path) -> None:
    message = refused(root, functions={"list_models": {"memory": "6Gi"}})
    assert "list_models: 6Gi with 1 CPU (allowed 128Mi to 4096Mi)" in message
    message = refused(root, functions={"predict_dcf": {"cpu": "8", "memory": "2Gi"}})
    assert "predict_dcf: 2Gi with 8 CPU (allowed 4096Mi to 32768Mi)" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"project_id": "My Project"}, "project_id must be a project id"),
        ({"region": "us-central1-a"}, "region must be a region such as us-central1"),
        ({"name_prefix": "ipo-valuation-prod"}, "name_prefix must be 2-12 lower-case"),
        ({"audit_hmac_key_version": "latest"}, 'aliases like "latest" are refused'),
        ({"kms_key_rotation_period": "100s"}, "kms_key_rotation_period must be between"),
        ({"kms_protection_level": "EXTERNAL"}, "kms_protection_level must be SOFTWARE or HSM"),
        ({"alert_notification_channels": ["my-channel"]}, "Each notification channel must"),
        ({"retention_days": 0}, "retention_days must be a whole number between 1 and 3650"),
        ({"audit_log_retention": {"days": 0.5}}, "audit_log_retention.days must be a whole"),
        ({"log_level": "TRACE"}, "log_level must be DEBUG, INFO, WARNING or ERROR"),
        ({"schedules": {"drift_scan": "@hourly"}}, "five-field cron expression"),
        (
            {"redis": {"connector_cidr": "10.8.0.0/24"}},
            "redis.connector_cidr must be an unused /28",
        ),
        ({"redis": {"tier": "PREMIUM"}}, "redis.tier must be BASIC or STANDARD_HA"),
        ({"firestore": {"database_id": "My_DB"}}, "firestore.database_id must be"),
        ({"smoke_test": {"caller": "you@example.com"}}, "smoke_test.caller must be an IAM member"),
        ({"service_token_audience": " "}, "service_token_audience must not be empty"),
        ({"functions": {"predict_dcf": {"cpu": "3"}}}, 'functions[*].cpu must be "1", "2"'),
        ({"functions": {"predict_dcf": {"memory": "4GB"}}}, "functions[*].memory must look like"),
        ({"functions": {"predict_dcf": {"timeout_seconds": 0}}}, "timeout_seconds must be between"),
        ({"functions": {"predict_dcf": {"concurrency": 5000}}}, "concurrency must be between"),
        (
            {"functions": {"predict_dcf": {"min_instances": 5, "max_instances": 2}}},
            "min_instances at most max_instances",
        ),
        (
            {"jwt": {**REQUIRED["jwt"], "jwks_url": "http://idp.example/jwks.json"}},
            "jwt.jwks_url must be an https:// address",
        ),
        (
            {"jwt": {**REQUIRED["jwt"], "issuer": "https://accounts.google.com"}},
            "jwt.issuer must be your identity provider's issuer",
        ),
    ],
)
def test_a_wrong_value_is_refused_with_a_message_naming_it(
    root: Path, values: dict[str, Any], expected: str
) -> None:
    assert expected in refused(root, **values)


def test_a_complete_valid_configuration_is_accepted(root: Path) -> None:
    sizes(
        root,
        region="europe-west1",
        name_prefix="ipo-prod",
        audit_hmac_key_version="3",
        alert_notification_channels=["projects/my-project-1/notificationChannels/123"],
        audit_log_retention={"days": 400, "locked": True},
        redis={"enabled": True, "connector_cidr": "10.9.0.0/28"},
        schedules={"time_zone": "Europe/London", "paused": True},
        smoke_test={"caller": "serviceAccount:1@cloudbuild.gserviceaccount.com"},
        functions={"predict_risk": {"cpu": "4", "memory": "8Gi", "concurrency": 32}},
    )
