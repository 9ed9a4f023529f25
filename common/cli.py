"""``ipoctl``, the command-line client of the model registry and prediction API.

    python scripts/ipoctl.py [--url URL] [--token TOKEN] [--json] [--timeout S] COMMAND ...

The commands map one to one onto HTTP calls (docs/CLI.md lists them); the client is a
thin class over ``requests`` whose transport tests replace. Exit codes: 0 success;
1 the server refused the request (4xx); 2 usage or local configuration error; 3 a
promotion refused by its gate or its verification; 4 a server error (5xx), an answer
that is not the API's, or no connection.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from common import cli_output as out
from common.cli_client import (
    DEFAULT_TIMEOUT_S,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Answer,
    ApiError,
    Client,
    CliError,
    Transport,
    UsageError,
)

DEFAULT_URL = "http://127.0.0.1:8080"
STAGES = ("development", "staging", "retired")
METADATA_FIELDS: dict[str, type] = {
    "description": str,
    "metrics": dict,
    "tags": dict,
    "model_card": dict,
    "golden_set": list,
    "drift_baseline": dict,
    "example": dict,
    "reports": dict,
    "gate": dict,
}
"""What ``register --metadata`` may carry; ``reports`` and ``gate`` (the first version's
promotion criteria) are sent only when present."""
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
    return ctx.emit(ctx.client.set_stage(args.model, args.version, args.stage), out.staged)


def _deployment(model_id: str) -> Callable[[Any], str]:
    return lambda data: out.deployment(data, model_id)


def cmd_promote(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client.promote(args.model, args.version, args.traffic, args.expected_generation)
    return ctx.emit(answer, _deployment(args.model))


def cmd_rollback(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.rollback(args.model, args.deployment), _deployment(args.model))


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
    return ctx.emit(ctx.client.predict(args.model, body), out.prediction)


def local_minter(environ: Mapping[str, str]) -> Minter:
    """Tokens signed with the local signing secret, as scripts/issue_token.py signs them."""
    from common.config import Settings
    from common.errors import ServiceError
    from common.local import development_token

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


# --- argument parsing -------------------------------------------------------------------


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is not between {low} and {high}")
        return number

    return parse


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 3600 seconds")
    return seconds


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The connection options, accepted before or after the command."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(None),
        help=f"gateway base URL (default: $IPOCTL_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token", default=default(None), help="bearer token (default: $IPOCTL_TOKEN)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the server's JSON answer as received instead of a table",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(DEFAULT_TIMEOUT_S),
        help=f"seconds to wait for each answer (default: {DEFAULT_TIMEOUT_S:g})",
    )


EPILOG = """\
exit codes: 0 success; 1 the server refused the request (4xx); 2 usage or local
configuration error (bad arguments, unreadable file, no token); 3 a promotion refused by
its gate or its verification; 4 a server error (5xx), an unexpected answer, or no
connection.

Every command needs a token: export IPOCTL_TOKEN=$(make -s token) on a laptop."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipoctl",
        description="Manage and call the IPO valuation models through the gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[Context, argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        _add_global_options(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    command("models", cmd_models, "List the models with their serving state.")

    sub = command("show", cmd_show, "Show a model and its versions, or one version.")
    sub.add_argument("model")
    sub.add_argument("--version", help="show this version's full record instead")

    sub = command("register", cmd_register, "Register a new version (stage development).")
    sub.add_argument("model")
    sub.add_argument("--version", required=True, help="semantic version, e.g. 1.2.0")
    sub.add_argument("--kind", required=True, help="model kind, e.g. risk")
    sub.add_argument("--artifact", required=True, help="artifact file, sent base64-encoded")
    sub.add_argument(
        "--metadata",
        help="JSON object with any of: " + ", ".join(METADATA_FIELDS) + " ('-' for stdin)",
    )

    sub = command("stage", cmd_stage, "Move a version to another stage.")
    sub.add_argument("model")
    sub.add_argument("version")
    sub.add_argument("stage", choices=STAGES)

    sub = command(
        "promote",
        cmd_promote,
        "Promote a version: to production (100%%) or as a canary on part of the traffic.",
    )
    sub.add_argument("model")
    sub.add_argument("version")
    sub.add_argument(
        "--traffic",
        type=_bounded_int(1, 100),
        default=100,
        metavar="PCT",
        help="percentage of users served by the version, 1..100 (default: 100)",
    )
    sub.add_argument(
        "--expected-generation",
        type=_bounded_int(0, 2**53),
        metavar="N",
        help="refuse (409) unless the model is still at this generation (see `show`)",
    )

    sub = command("rollback", cmd_rollback, "Return to the serving state before a deployment.")
    sub.add_argument("model")
    sub.add_argument("--deployment", metavar="ID", help="undo this deployment (default: the last)")

    sub = command("history", cmd_history, "List a model's deployments, newest first.")
    sub.add_argument("model")

    sub = command("predict", cmd_predict, "Send instances; prints the version and variant.")
    sub.add_argument("model")
    sub.add_argument(
        "--instances",
        required=True,
        metavar="FILE",
        help="JSON array of instances, {'instances': [...]} or one instance; '-' for stdin",
    )

    sub = command(
        "canary-check",
        cmd_canary_check,
        "Send the model's example once per simulated user and count who got which version. "
        "Mints one token per user (user-1..user-N) with the local signing secret, so it works "
        "only against a local gateway sharing this checkout's .env (or $IPO_ENV_FILE).",
    )
    sub.add_argument("model")
    sub.add_argument(
        "--users",
        type=_bounded_int(1, MAX_USERS),
        required=True,
        metavar="N",
        help=f"number of simulated users, 1..{MAX_USERS}",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    minter: Callable[[], Minter] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    env = os.environ if environ is None else environ
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        url = args.url or env.get("IPOCTL_URL") or DEFAULT_URL
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--url {url!r} must start with http:// or https://")
        token = args.token or env.get("IPOCTL_TOKEN")
        if not token:
            raise UsageError(f"no token: {AUTH_HINT}")
        ctx = Context(
            client=Client(url, token, timeout=args.timeout, transport=transport),
            json=args.json,
            stdin=stdin or sys.stdin,
            stdout=stdout or sys.stdout,
            minter=minter or (lambda: local_minter(env)),
        )
        handler: Callable[[Context, argparse.Namespace], int] = args.handler
        return handler(ctx, args)
    except CliError as exc:
        if args.json and isinstance(exc, ApiError) and exc.shaped:
            (stdout or sys.stdout).write(exc.text if exc.text.endswith("\n") else exc.text + "\n")
        err.write("\n".join(exc.lines) + "\n")
        return exc.exit_code
