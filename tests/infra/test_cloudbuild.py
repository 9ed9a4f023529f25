"""scripts/check_cloudbuild.py: every Cloud Build step runs only tools its image has, and
a step changed to use a tool its image lacks is reported with the step, tool and image."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "check_cloudbuild", ROOT / "scripts" / "check_cloudbuild.py"
)
assert _spec is not None
assert _spec.loader is not None
check_cloudbuild = importlib.util.module_from_spec(_spec)
sys.modules["check_cloudbuild"] = check_cloudbuild
_spec.loader.exec_module(check_cloudbuild)

CLOUD_SDK = "gcr.io/google.com/cloudsdktool/google-cloud-cli:stable"
PYTHON = "python:3.11-slim-bookworm"
TERRAFORM = "hashicorp/terraform:1.11.4"
TRACKED: dict[str, bool] = {}  # the build runs no file of the repository by its path


@pytest.fixture(scope="module")
def table() -> Any:
    return check_cloudbuild.Table.load()


@pytest.fixture
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    return copy.deepcopy(loaded)


def step(config: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in config["steps"] if s.get("id") == step_id)
    return found


def problems(config: dict[str, Any], table: Any) -> list[str]:
    found: list[str] = check_cloudbuild.check_config(config, table, TRACKED)
    return found


def script_step(step_id: str, image: str, script: str, entrypoint: str = "bash") -> dict[str, Any]:
    return {"id": step_id, "name": image, "entrypoint": entrypoint, "args": ["-c", script]}


def test_the_build_passes(config: dict[str, Any], table: Any) -> None:
    assert problems(config, table) == []


def test_the_command_exits_zero_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_cloudbuild.main(["--config", str(ROOT / "cloudbuild.yaml")]) == 0
    assert "every step runs only tools its image has" in capsys.readouterr().out


def test_every_image_of_the_build_is_in_the_table(config: dict[str, Any], table: Any) -> None:
    names = {
        check_cloudbuild.substitute(s["name"], config["substitutions"], s["id"])[0]
        for s in config["steps"]
    }
    assert names == {CLOUD_SDK, PYTHON, TERRAFORM}
    assert names <= set(table.images)


def test_every_fact_of_the_table_says_where_it_comes_from() -> None:
    raw = json.loads((ROOT / "scripts" / "cloudbuild_images.json").read_text())
    sections: Iterator[dict[str, Any]] = (
        entry
        for group in ("bases", "images", "apt_packages", "pip_packages", "commands")
        for entry in raw[group].values()
    )
    for entry in sections:
        assert entry["source"].strip(), entry


def test_python3_on_the_cloud_sdk_image_is_reported(config: dict[str, Any], table: Any) -> None:
    step(config, "smoke")["name"] = "${_CLOUD_SDK_IMAGE}"
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'smoke': runs python3, which image {CLOUD_SDK} does not have "
        "and the step does not install"
    ]


def test_a_package_step_on_the_cloud_sdk_image_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    step(config, "package")["name"] = "${_CLOUD_SDK_IMAGE}"
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'package': runs python3, which image {CLOUD_SDK} does not "
        "have and the step does not install",
        f"cloudbuild.yaml: step 'package': runs /tmp/package-venv/bin/python, which image "
        f"{CLOUD_SDK} does not have and the step does not install",
    ]


def test_a_virtual_environment_from_an_earlier_step_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    """The seed step using the .venv that `make test` built in the test step."""
    seed = step(config, "seed-models")
    seed["args"][-1] = (
        "env $$(cat /workspace/seed-environment) .venv/bin/python scripts/train_models.py"
    )
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'seed-models': runs .venv/bin/python, which neither this step "
        f"nor an earlier one puts in /workspace (image {PYTHON}); a virtual environment made "
        "by another step (or by make) is not seen here and runs only on the image that built "
        "it: build it in this step"
    ]


def test_a_virtual_environment_built_on_another_image_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    build = script_step(
        "venv", PYTHON, "python3 -m venv /workspace/.seed && .seed/bin/pip install pytest"
    )
    config["steps"].insert(1, build)
    use = script_step("use", CLOUD_SDK, "/workspace/.seed/bin/python -V; .seed/bin/pytest -q")
    config["steps"].insert(2, use)
    found = problems(config, table)
    assert found == [
        "cloudbuild.yaml: step 'use': runs /workspace/.seed/bin/python from the virtual "
        f"environment /workspace/.seed that step 'venv' built on image {PYTHON}; a virtual "
        "environment runs only on the interpreter of the image that built it, and this step "
        f"runs {CLOUD_SDK}: build it in this step",
        "cloudbuild.yaml: step 'use': runs .seed/bin/pytest from the virtual environment "
        f"/workspace/.seed that step 'venv' built on image {PYTHON}; a virtual environment "
        "runs only on the interpreter of the image that built it, and this step runs "
        f"{CLOUD_SDK}: build it in this step",
    ]
    use["name"] = PYTHON  # the same image: the environment and what was installed in it run
    assert problems(config, table) == []


def test_a_path_that_replaces_the_images_path_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    """The old test step: PATH replaced in `env`, dropping the SDK's bin folder."""
    test = step(config, "test")
    test["name"] = "${_CLOUD_SDK_IMAGE}"
    test["env"] = [
        "CI=true",
        "PATH=/workspace/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'test': sets PATH=/workspace/.bin:/usr/local/sbin:/usr/local/bin:"
        "/usr/sbin:/usr/bin:/sbin:/bin, dropping /usr/lib/google-cloud-sdk/bin of image "
        f"{CLOUD_SDK}'s PATH; append to it instead",
        "cloudbuild.yaml: step 'test': runs python3.11 (for make test), which image "
        f"{CLOUD_SDK} does not have and the step does not install",
    ]


def test_a_path_replaced_in_the_script_is_reported(config: dict[str, Any], table: Any) -> None:
    test = step(config, "test")
    test["args"][-1] = test["args"][-1].replace(
        'export PATH="$$PATH:/workspace/.bin"', "export PATH=/workspace/.bin"
    )
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'test': sets PATH=/workspace/.bin, dropping /usr/local/bin:"
        f"/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin of image {PYTHON}'s PATH; append to "
        "it instead"
    ]


def test_path_in_env_is_not_expanded(config: dict[str, Any], table: Any) -> None:
    step(config, "test")["env"] = ["PATH=$$PATH:/workspace/.bin"]
    found = problems(config, table)
    assert found[0] == (
        "cloudbuild.yaml: step 'test': env sets PATH with $PATH in it, which Cloud Build passes "
        'on literally; append to PATH in the script instead (export PATH="$$PATH:...")'
    )
    assert found[1].startswith("cloudbuild.yaml: step 'test': sets PATH=$PATH:/workspace/.bin")


def test_a_shell_variable_cloud_build_would_substitute_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    token = step(config, "smoke-token")
    token["args"][-1] = token["args"][-1].replace('"$$account"', '"$account"')
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'smoke-token': $account is not a substitution of this build; "
        "Cloud Build would refuse it (write $$account for the shell)"
    ]


def test_a_tool_the_table_does_not_know_fails(config: dict[str, Any], table: Any) -> None:
    seed = step(config, "seed-models")
    seed["args"][-1] += "jq . /workspace/terraform-outputs.json\n"
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'seed-models': runs jq, which image {PYTHON} does not have and "
        "the step does not install"
    ]


def test_a_tool_the_step_installs_is_available_and_an_unknown_package_is_named(
    config: dict[str, Any], table: Any
) -> None:
    seed = step(config, "seed-models")
    original = seed["args"][-1]
    seed["args"][-1] = "apt-get update && apt-get install -y jq\n" + original + "jq . x.json\n"
    assert problems(config, table) == []
    seed["args"][-1] = "apt-get install -y yq\n" + original + "yq . x.yaml\n"
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'seed-models': runs yq, which image {PYTHON} does not have and "
        "the step does not install (the step installs yq, which "
        "scripts/cloudbuild_images.json does not describe)"
    ]


@pytest.mark.parametrize(
    ("script", "tool"),
    [
        ("echo ok && curl -fsS https://example.com", "curl"),
        ("true || npm test", "npm"),
        ("ls; make test", "make"),
        ("cat x | gpg --dearmor", "gpg"),
        ('echo "$(python3 -V)"', "python3"),
        ("echo `python3 -V`", "python3"),
        ("if java -version; then echo; fi", "java"),
        ("for x in 1 2; do jq . $$x; done", "jq"),
        ("xargs -n 1 redis-cli < keys", "redis-cli"),
        ("env A=1 B=2 node x.js", "node"),
        ("timeout 5s curl x", "curl"),
        ("sh -c 'pip3 install x'", "pip3"),
        ("f() { gsutil ls; }\nf", "gsutil"),
        ("cat <<EOF\n$(jq -n 1)\nEOF", "jq"),
        ("x=$(hg id)", "hg"),
        ("trap 'curl -X POST x' EXIT", "curl"),
        ("find . -name '*.json' -exec jq . {} ';'", "jq"),
        ("(cd /tmp && npm ci)", "npm"),
        ("! make check", "make"),
        ("while read -r x; do curl $$x; done < list", "curl"),
        ("echo a |& jq .", "jq"),
    ],
)
def test_every_command_position_is_read(
    config: dict[str, Any], table: Any, script: str, tool: str
) -> None:
    config["steps"] = [script_step("probe", TERRAFORM, script, entrypoint="sh")]
    found = problems(config, table)
    assert any(f"runs {tool}, which image {TERRAFORM}" in p for p in found), found


def test_words_that_are_not_commands_are_not_taken_for_commands(table: Any) -> None:
    script = (
        "cat <<'EOF'\nmake test\nEOF\n"
        "echo 'curl x' \"git y\" # gpg z\n"
        "python3 -c 'import json; jq'\n"
        "command -v make || echo no make\n"
    )
    config = {"steps": [script_step("probe", PYTHON, script)]}
    assert problems(config, table) == []


def test_bash_on_the_terraform_image_is_reported(config: dict[str, Any], table: Any) -> None:
    step(config, "terraform-apply")["entrypoint"] = "bash"
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'terraform-apply': runs bash, which image {TERRAFORM} does not "
        "have and the step does not install"
    ]


def test_an_image_the_table_does_not_describe_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    config["substitutions"]["_PYTHON_IMAGE"] = "python:3.12-slim"
    found = problems(config, table)
    assert found[0] == (
        "cloudbuild.yaml: step 'test': image python:3.12-slim is not described in "
        "scripts/cloudbuild_images.json; add it with its tools and where they come from"
    )
    assert len(found) == 4  # test, package, seed-models, smoke


def test_a_binary_copied_from_another_image_must_be_portable(table: Any) -> None:
    config = {
        "steps": [
            script_step("copy", TERRAFORM, 'cp "$(command -v git)" /workspace/.bin/git', "sh"),
            script_step("use", PYTHON, "/workspace/.bin/git status"),
        ]
    }
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'use': runs /workspace/.bin/git, copied from image {TERRAFORM} "
        f"by step 'copy'; git is not known to run outside that image (this step runs {PYTHON})"
    ]


def test_terraform_copied_to_the_workspace_runs_on_the_python_image(table: Any) -> None:
    copy_step = 'mkdir -p /workspace/.bin && cp "$(command -v terraform)" /workspace/.bin/'
    config = {
        "steps": [
            script_step("copy", TERRAFORM, copy_step, "sh"),
            script_step("use", PYTHON, 'export PATH="$$PATH:/workspace/.bin"\nterraform fmt'),
        ]
    }
    assert problems(config, table) == []
    config["steps"][1]["waitFor"] = ["-"]  # started with the copy, not after it
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'use': runs terraform, which image {PYTHON} does not have and "
        "the step does not install"
    ]


def test_a_script_the_check_cannot_read_fails(config: dict[str, Any], table: Any) -> None:
    seed = step(config, "seed-models")
    seed["args"][-1] += 'case "$$x" in a) curl x;; esac\n'
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'seed-models': cannot check its script: case statements are "
        "not supported"
    ]


def test_only_an_executable_file_of_the_repository_runs_by_its_path(table: Any) -> None:
    config = {"steps": [{"id": "run", "name": PYTHON, "args": ["scripts/check.sh", "-v"]}]}
    tracked = {"scripts/check.sh": True, "scripts/package.py": False}
    assert check_cloudbuild.check_config(config, table, tracked) == []
    config["steps"][0]["args"] = ["scripts/package.py"]
    assert check_cloudbuild.check_config(config, table, tracked) == [
        "cloudbuild.yaml: step 'run': runs scripts/package.py, a file of the repository that "
        "is not executable; run it with its interpreter"
    ]
    config["steps"][0]["args"] = [".venv/bin/python", "-V"]  # present locally, not in git
    (problem,) = check_cloudbuild.check_config(config, table, tracked)
    assert problem.startswith(
        "cloudbuild.yaml: step 'run': runs .venv/bin/python, which neither this step nor an "
        "earlier one puts in /workspace"
    )


@pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("git") is None, reason="not a git checkout"
)
def test_the_repository_files_are_what_git_tracks() -> None:
    tracked = check_cloudbuild.tracked_files(ROOT)
    assert tracked["cloudbuild.yaml"] is False
    assert not any(name.startswith(".venv/") for name in tracked)


def test_make_test_on_an_image_without_python_3_11_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    """make installs fine on the Cloud SDK image, but the Makefile needs Python 3.11."""
    step(config, "test")["name"] = "${_CLOUD_SDK_IMAGE}"
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'test': runs python3.11 (for make test), which image "
        f"{CLOUD_SDK} does not have and the step does not install"
    ]


def test_make_test_without_terraform_on_the_path_is_reported(
    config: dict[str, Any], table: Any
) -> None:
    test = step(config, "test")
    test["args"][-1] = test["args"][-1].replace('export PATH="$$PATH:/workspace/.bin"\n', "")
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'test': runs terraform (for make test), which image {PYTHON} "
        "does not have and the step does not install"
    ]


def test_a_make_target_the_table_does_not_list_fails(config: dict[str, Any], table: Any) -> None:
    test = step(config, "test")
    test["args"][-1] = test["args"][-1].replace("make test", "make lint")
    assert problems(config, table) == [
        "cloudbuild.yaml: step 'test': runs make lint, whose needs "
        "scripts/cloudbuild_images.json does not list"
    ]


def test_the_command_exits_one_and_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(
        text.replace("python3 -m venv /tmp/package-venv", "python3.12 -m venv /tmp/package-venv", 1)
    )
    assert check_cloudbuild.main(["--config", str(broken)]) == 1
    assert capsys.readouterr().out == (
        f"cloudbuild.yaml: step 'package': runs python3.12, which image {PYTHON} does not have "
        "and the step does not install\n"
        "cloudbuild.yaml: step 'package': runs /tmp/package-venv/bin/python, which image "
        f"{PYTHON} does not have and the step does not install\n"
    )


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ('"$$TOOL" --version', "runs a command named by an expansion ($TOOL)"),
        ("$(command -v python3) -V", "runs a command named by an expansion"),
        ("bash <<'EOF'\ncurl x\nEOF", "runs a shell that reads its script from standard input"),
        ("bash scripts/deploy.sh", "runs the shell script scripts/deploy.sh, which is not a file"),
        (". /workspace/env.sh", "runs the shell script /workspace/env.sh, which is not a file"),
        ("echo 'unterminated", "cannot check its script: unterminated '"),
        ("cat <<EOF\nno end", "cannot check its script: here-document EOF without its end"),
    ],
)
def test_what_the_check_cannot_see_fails(table: Any, script: str, expected: str) -> None:
    config = {"steps": [script_step("probe", PYTHON, script)]}
    (problem,) = problems(config, table)
    assert problem.startswith(f"cloudbuild.yaml: step 'probe': {expected}"), problem


def test_a_shell_script_of_the_repository_is_read(tmp_path: Path, table: Any) -> None:
    (tmp_path / "ci.sh").write_text("set -eu\ncurl -fsS https://example.com\n")
    config = {"steps": [script_step("probe", PYTHON, "bash ci.sh")]}
    found = check_cloudbuild.check_config(config, table, {"ci.sh": False}, tmp_path)
    assert found == [
        f"cloudbuild.yaml: step 'probe': runs curl, which image {PYTHON} does not have and the "
        "step does not install"
    ]


def test_a_shell_with_long_options_still_has_its_script_read(table: Any) -> None:
    config = {"steps": [script_step("probe", PYTHON, "bash --norc -o pipefail -ec 'npm ci'")]}
    assert problems(config, table) == [
        f"cloudbuild.yaml: step 'probe': runs npm, which image {PYTHON} does not have and the "
        "step does not install"
    ]
