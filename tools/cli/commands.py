"""What each ``ipoctl`` command does: build the request, call the API, print the answer.

Kept apart from the argument parser (tools/cli/main.py) so each command reads top to bottom.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from tools.cli import experiment_output as xout
from tools.cli import output as out
from tools.cli import v2
from tools.cli.client import (
    EXIT_OK,
    EXIT_REFUSED,
    Answer,
    ApiError,
    Client,
    CliError,
    UsageError,
)

STAGES = ("development", "staging", "retired")
METADATA_FIELDS: dict[str, type] = {
    "description": str,
    "metrics": dict,
    "metrics_fresh_sample": dict,
    "tags": dict,
    "model_card": dict,
    "golden_set": list,
    "drift_baseline": dict,
    "explanation_baseline": dict,
    "example": dict,
    "reports": dict,
    "gate": dict,
}
"""What ``register --metadata`` may carry; ``metrics_fresh_sample``,
``explanation_baseline``, ``reports`` and ``gate`` (the first version's promotion
criteria) are sent only when present."""
JSON_TYPE_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "an array"}
CANARY_PERMISSIONS = ("model:*:predict",)
CANARY_TOKEN_TTL_S = 600
MAX_USERS = 10_000
AUTH_HINT = "set IPOCTL_TOKEN or pass --token (on a laptop: export IPOCTL_TOKEN=$(make -s token))"

Minter = Callable[[str], str]
"""Subject -> bearer token; canary-check's way to act as many users."""


@dataclass
class Context:
    client: Client
    json: bool
    stdin: TextIO
    stdout: TextIO
    minter: Callable[[], Minter]
    stderr: TextIO | None = None
    """Notes that are not the answer; None: the process's stderr."""

    def emit(self, answer: Answer, render: Callable[[Any], str]) -> int:
        if self.json:
            self.stdout.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
        else:
            self.stdout.write(render(answer.data) + "\n")
        return EXIT_OK


def cmd_models(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.list_models(), out.models)


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    if args.version is not None:
        return ctx.emit(ctx.client.get_version(args.model, args.version), out.version)
    return ctx.emit(ctx.client.get_model(args.model), out.model)


def _read_json(source: str, stdin: TextIO, what: str) -> Any:
    try:
        raw = stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {source}: {exc}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{what} {source} is not valid JSON: {exc}") from None


def load_metadata(source: str | None, stdin: TextIO) -> dict[str, Any]:
    if source is None:
        return {}
    metadata = _read_json(source, stdin, "metadata")
    if not isinstance(metadata, dict):
        raise UsageError(f"metadata {source} must be a JSON object")
    unknown = sorted(set(metadata) - set(METADATA_FIELDS))
    if unknown:
        allowed = ", ".join(METADATA_FIELDS)
        raise UsageError(f"metadata {source} has unknown keys {unknown}; allowed: {allowed}")
    for key, value in metadata.items():
        expected = METADATA_FIELDS[key]
        if not isinstance(value, expected):
            kind = JSON_TYPE_NAMES[expected]
            raise UsageError(f"metadata {source}: {key!r} must be {kind}")
    return metadata


def register_body(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    try:
        artifact = Path(args.artifact).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read artifact {args.artifact}: {exc}") from None
    body: dict[str, Any] = {
        "version": args.version,
        "kind": args.kind,
        "artifact_base64": base64.b64encode(artifact).decode("ascii"),
        "description": "",
        "metrics": {},
        "tags": {},
        "model_card": {},
        "golden_set": [],
        "drift_baseline": {},
        "example": {},
    }
    body.update(load_metadata(args.metadata, stdin))
    return body


def cmd_register(ctx: Context, args: argparse.Namespace) -> int:
    body = register_body(args, ctx.stdin)
    return ctx.emit(ctx.client.register(args.model, body), out.registered)


def cmd_stage(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client.set_stage(args.model, args.version, args.stage, args.reason)
    return ctx.emit(answer, out.staged)


def _deployment(model_id: str) -> Callable[[Any], str]:
    return lambda data: out.deployment(data, model_id)


def cmd_promote(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client.promote(
        args.model, args.version, args.traffic, args.expected_generation, args.reason
    )
    return ctx.emit(answer, _deployment(args.model))


def cmd_rollback(ctx: Context, args: argparse.Namespace) -> int:
    expected = args.expected_generation
    if expected is None:  # the state seen now: the request repeated cannot roll back twice
        expected = ctx.client.generation(args.model)
    answer = ctx.client.rollback(args.model, args.deployment, expected, args.reason)
    return ctx.emit(answer, _deployment(args.model))


def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.deployments(args.model), out.history)


def predict_body(source: str, stdin: TextIO) -> dict[str, Any]:
    """A JSON array of instances, a ``{"instances": [...]}`` body, or one instance."""
    loaded = _read_json(source, stdin, "instances")
    if isinstance(loaded, list):
        return {"instances": loaded}
    if isinstance(loaded, dict):
        return loaded if "instances" in loaded else {"instances": [loaded]}
    raise UsageError(f"instances {source} must be a JSON array or object")


def cmd_predict(ctx: Context, args: argparse.Namespace) -> int:
    body = predict_body(args.instances, ctx.stdin)
    if args.protocol == "v2":
        return ctx.emit(v2.predict(ctx.client, args.model, body), v2.answer)
    return ctx.emit(ctx.client.predict(args.model, body), out.prediction)


def local_minter(environ: Mapping[str, str]) -> Minter:
    """Tokens signed with the local signing secret, as scripts/issue_token.py signs them."""
    from common.core.config import Settings
    from common.core.errors import ServiceError
    from tools.local import development_token

    def refuse(problem: str) -> UsageError:
        return UsageError(
            f"canary-check cannot mint local tokens: {problem} (it needs the signing secret "
            "of a local gateway: run it from the repository root, or set IPO_ENV_FILE)"
        )

    try:
        settings = Settings.from_environ(environ)
    except ValueError as exc:
        raise refuse(str(exc)) from None

    def mint(subject: str) -> str:
        try:
            return development_token(
                settings, subject=subject, permissions=CANARY_PERMISSIONS, ttl_s=CANARY_TOKEN_TTL_S
            )
        except ServiceError as exc:
            raise refuse(exc.message) from None
        except ValueError as exc:
            raise refuse(str(exc)) from None

    return mint


def canary_check(ctx: Context, model_id: str, users: int) -> dict[str, Any]:
    model = ctx.client.get_model(model_id).data
    production = model.get("production")
    if not isinstance(production, dict):
        raise CliError([f"error: {model_id} has no production version to compare"], EXIT_REFUSED)
    example = production.get("example")
    if not example:
        message = f"error: {model_id} {production.get('version')} has no example to send"
        raise CliError([message], EXIT_REFUSED)
    mint = ctx.minter()
    counts: dict[tuple[str, str], int] = {}
    for i in range(1, users + 1):
        try:
            answer = ctx.client.predict(model_id, {"instances": [example]}, token=mint(f"user-{i}"))
        except ApiError as exc:
            if exc.status == 401:
                exc.lines.append(
                    "hint: the gateway refused a locally minted token; canary-check works only "
                    "against a local gateway that shares this checkout's signing secret"
                )
            raise
        key = (str(answer.data.get("model_version")), str(answer.data.get("variant")))
        counts[key] = counts.get(key, 0) + 1
    results = [
        {"model_version": v, "variant": variant, "users": n}
        for (v, variant), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "model_id": model_id,
        "users": users,
        "production_version": model.get("production_version"),
        "canary_version": model.get("canary_version"),
        "canary_percentage": model.get("canary_percentage"),
        "results": results,
    }


def cmd_canary_check(ctx: Context, args: argparse.Namespace) -> int:
    summary = canary_check(ctx, args.model, args.users)
    if ctx.json:
        ctx.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        ctx.stdout.write(out.canary(summary) + "\n")
    return EXIT_OK


# --- experiments ------------------------------------------------------------------------
# The client has no experiment methods; these commands call its generic ``call``.


def _experiment_path(experiment_id: str, action: str = "") -> str:
    path = f"/v1/experiments/{quote(experiment_id, safe='')}"
    return f"{path}/{action}" if action else path


def cmd_experiment_create(ctx: Context, args: argparse.Namespace) -> int:
    design = _read_json(args.design, ctx.stdin, "design")
    if not isinstance(design, dict):
        raise UsageError(f"design {args.design} must be a JSON object")
    return ctx.emit(ctx.client.call("POST", "/v1/experiments", design), xout.render_experiment)


def cmd_experiment_show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("GET", _experiment_path(args.id)), xout.render_experiment)


def cmd_experiment_stop(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client.call("POST", _experiment_path(args.id, "stop"), {})
    return ctx.emit(answer, xout.render_experiment)


def cmd_experiment_assign(ctx: Context, args: argparse.Namespace) -> int:
    body = {} if args.user is None else {"user_id": args.user}
    answer = ctx.client.call("POST", _experiment_path(args.id, "assign"), body)
    return ctx.emit(answer, xout.render_assignment)


def outcome_values(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.values is not None:
        loaded = _read_json(args.values, stdin, "values")
        if not isinstance(loaded, dict):
            raise UsageError(f"values {args.values} must be a JSON object")
        values.update(loaded)
    values.update(args.value or [])
    if not values:
        raise UsageError("outcome needs --values FILE.json or at least one --value NAME=X")
    return values


def cmd_experiment_outcome(ctx: Context, args: argparse.Namespace) -> int:
    body = {"exposure_id": args.exposure_id, "values": outcome_values(args, ctx.stdin)}
    answer = ctx.client.call("POST", _experiment_path(args.id, "outcomes"), body)
    return ctx.emit(answer, xout.render_outcome)


def cmd_experiment_results(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client.call("GET", _experiment_path(args.id, "results"))
    return ctx.emit(answer, xout.render_results)
