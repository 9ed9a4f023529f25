"""terraform/modules/gateway_spec, evaluated by Terraform itself: the API Gateway
configuration is common/api/openapi.yaml with every x-ipo-* extension removed, each
operation routed to its function and both kinds of token accepted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

MODULE = ROOT / "terraform" / "modules" / "gateway_spec"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
JWT = {
    "audience": "ipo-valuation",
    "issuer": "https://idp.example/",
    "jwks_url": "https://idp.example/jwks.json",
}
SERVICE_AUDIENCE = "ipo-valuation-services"

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="the terraform binary is not on PATH"
)


def render(folder: Path, functions: list[str]) -> subprocess.CompletedProcess[str]:
    """`terraform apply` of a root that only calls the module (no provider needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    backends = {
        name: {"address": f"https://{name}.run.example", "deadline_seconds": 30 + i}
        for i, name in enumerate(functions)
    }
    source = os.path.relpath(MODULE, folder)
    root = {
        "module": {
            "spec": {
                "source": source if source.startswith("..") else f"./{source}",
                "openapi_yaml": (ROOT / "common" / "api" / "openapi.yaml").read_text(),
                "jwt": JWT,
                "service_token_audience": SERVICE_AUDIENCE,
                "backends": backends,
            }
        },
        "output": {
            name: {"value": f"${{module.spec.{name}}}"}
            for name in ("spec", "spec_sha256", "functions_referenced")
        },
    }
    (folder / "main.tf.json").write_text(json.dumps(root))
    config = folder / "terraformrc"
    config.write_text("")
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }
    for command in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        done = subprocess.run(
            ["terraform", f"-chdir={folder}", *command, "-no-color"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            return done
    return subprocess.run(
        ["terraform", f"-chdir={folder}", "output", "-json", "-no-color"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = render(tmp_path_factory.mktemp("gateway_spec"), FUNCTIONS)
    assert done.returncode == 0, done.stdout + done.stderr
    return {name: value["value"] for name, value in json.loads(done.stdout).items()}


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "common" / "api" / "openapi.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def spec(outputs: dict[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(outputs["spec"])
    return rendered


def keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(keys(v) for v in node))
    return set()


def test_no_private_extension_survives(spec: dict[str, Any]) -> None:
    assert not [k for k in keys(spec) if k.startswith("x-ipo-")]


def test_every_operation_goes_to_the_function_its_route_names(
    spec: dict[str, Any], source: dict[str, Any]
) -> None:
    deadlines = {name: 30 + i for i, name in enumerate(FUNCTIONS)}
    assert set(spec["paths"]) == set(source["paths"])
    for path, operations in source["paths"].items():
        assert set(spec["paths"][path]) == set(operations)
        for method, operation in operations.items():
            function = operation["x-ipo-function"]
            backend = spec["paths"][path][method]["x-google-backend"]
            address = f"https://{function}.run.example"
            assert backend == {
                "address": address,
                "path_translation": "APPEND_PATH_TO_ADDRESS",
                "jwt_audience": address,
                "deadline": deadlines[function],
            }, f"{method.upper()} {path}"


def test_operations_keep_everything_but_the_private_extensions(
    spec: dict[str, Any], source: dict[str, Any]
) -> None:
    for path, operations in source["paths"].items():
        for method, operation in operations.items():
            rendered = dict(spec["paths"][path][method])
            rendered.pop("x-google-backend")
            public = {k: v for k, v in operation.items() if not k.startswith("x-ipo-")}
            assert rendered == public, f"{method.upper()} {path}"
    assert spec["definitions"] == source["definitions"]
    assert spec["swagger"] == "2.0"


def test_platform_and_service_account_tokens_are_both_accepted(spec: dict[str, Any]) -> None:
    assert spec["security"] == [{"platform_jwt": []}, {"service_account": []}]
    platform, service = (
        spec["securityDefinitions"][k] for k in ("platform_jwt", "service_account")
    )
    assert platform["x-google-issuer"] == JWT["issuer"]
    assert platform["x-google-jwks_uri"] == JWT["jwks_url"]
    assert platform["x-google-audiences"] == JWT["audience"]
    assert service["x-google-issuer"] == "https://accounts.google.com"
    assert service["x-google-jwks_uri"] == "https://www.googleapis.com/oauth2/v3/certs"
    assert service["x-google-audiences"] == SERVICE_AUDIENCE
    for definition in (platform, service):
        assert definition["type"] == "oauth2"
        assert definition["flow"] == "implicit"


def test_the_hash_is_the_rendered_documents(outputs: dict[str, Any]) -> None:
    assert outputs["spec_sha256"] == hashlib.sha256(outputs["spec"].encode()).hexdigest()
    assert sorted(outputs["functions_referenced"]) == FUNCTIONS


def test_a_route_to_a_function_without_a_backend_fails_with_its_name(tmp_path: Path) -> None:
    done = render(tmp_path / "root", [f for f in FUNCTIONS if f != "drift_scan"])
    assert done.returncode != 0
    message = " ".join((done.stdout + done.stderr).split())
    assert "routes to functions that are not deployed" in message
    assert "drift_scan" in message
