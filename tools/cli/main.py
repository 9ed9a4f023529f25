"""``ipoctl``, the command-line client of the model registry and prediction API.

    ipoctl [--url URL] [--token TOKEN] [--json] [--timeout S] COMMAND ...

The commands map one to one onto HTTP calls (docs/CLI.md lists them); the client is a
thin class over ``requests`` whose transport tests replace. Exit codes: 0 success;
1 the server refused the request (4xx); 2 usage or local configuration error; 3 a
promotion refused by its gate or its verification; 4 a server error (5xx), an answer
that is not the API's, or no connection.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from tools.cli import batch, observe
from tools.cli.client import (
    DEFAULT_TIMEOUT_S,
    EXIT_USAGE,
    URL_VARIABLE,
    ApiError,
    Client,
    CliError,
    Transport,
    UsageError,
)
from tools.cli.commands import (
    AUTH_HINT,
    MAX_USERS,
    METADATA_FIELDS,
    STAGES,
    Context,
    Minter,
    cmd_canary_check,
    cmd_experiment_assign,
    cmd_experiment_create,
    cmd_experiment_outcome,
    cmd_experiment_results,
    cmd_experiment_show,
    cmd_experiment_stop,
    cmd_history,
    cmd_models,
    cmd_predict,
    cmd_promote,
    cmd_register,
    cmd_rollback,
    cmd_show,
    cmd_stage,
    local_minter,
)

DEFAULT_URL = "http://127.0.0.1:8080"


def _add_reason(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--reason",
        default="",
        metavar="TEXT",
        help="why (at most 500 characters): kept in the deployment and the version's record",
    )


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


def _metric_value(item: str) -> tuple[str, float | bool]:
    """``NAME=NUMBER`` or ``NAME=true|false``: one outcome value of ``experiment outcome``."""
    name, sep, raw = item.partition("=")
    word = raw.strip().lower()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{item!r} is not NAME=NUMBER or NAME=true|false")
    if word in ("true", "false"):
        return name, word == "true"
    try:
        number = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number or true/false") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a finite number")
    return name, int(number) if number.is_integer() else number


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
    _add_reason(sub)

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
    _add_reason(sub)

    sub = command("rollback", cmd_rollback, "Return to the serving state before a deployment.")
    sub.add_argument("model")
    sub.add_argument("--deployment", metavar="ID", help="undo this deployment (default: the last)")
    sub.add_argument(
        "--expected-generation",
        type=_bounded_int(0, 2**53),
        metavar="N",
        help="refuse (409) unless the model is at this generation, or answer the rollback "
        "already made from it (default: the generation read from the server first)",
    )
    _add_reason(sub)

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
    sub.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        default="v1",
        help="v1: POST /v1/predict/MODEL; v2: the Open Inference Protocol, the instances "
        "sent as named tensors (POST /v2/models/MODEL/infer, docs/API.md)",
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
    _add_experiment_commands(commands)
    observe.add_commands(commands, lambda sub: _add_global_options(sub, top=False), batch.rate)
    batch.add_commands(commands, lambda sub: _add_global_options(sub, top=False))
    return parser


def _add_experiment_commands(commands: Any) -> None:
    """``experiment ACTION ...``: one group, its actions parsed like the other commands."""
    text = "A/B experiments: create, show, stop, assign, outcome, results."
    group = commands.add_parser("experiment", help=text, description=text)
    _add_global_options(group, top=False)
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(
        name: str, handler: Callable[[Context, argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        _add_global_options(sub, top=False)
        sub.set_defaults(handler=handler)
        if name != "create":
            sub.add_argument("id", metavar="ID", help="experiment id")
        return sub

    sub = action("create", cmd_experiment_create, "Start an experiment from a JSON design.")
    sub.add_argument(
        "--design",
        required=True,
        metavar="FILE",
        help="JSON design (model_id, variants, split, metrics, ...); '-' for stdin",
    )
    action("show", cmd_experiment_show, "Show an experiment's design, status and outcome window.")
    action("stop", cmd_experiment_stop, "Stop a running experiment.")
    sub = action("assign", cmd_experiment_assign, "Show which variant a user is assigned.")
    sub.add_argument(
        "--user", help="another user's id (needs experiment:write; default: the token's)"
    )
    sub = action("outcome", cmd_experiment_outcome, "Record the outcome of one prediction.")
    sub.add_argument(
        "--exposure-id", required=True, help="the exposure_id the prediction answered with"
    )
    sub.add_argument("--values", metavar="FILE", help="JSON object metric -> value; '-' for stdin")
    sub.add_argument(
        "--value",
        action="append",
        type=_metric_value,
        metavar="NAME=X",
        help="one metric's value: a number, or true/false for a binary metric (repeatable)",
    )
    action(
        "results",
        cmd_experiment_results,
        "Per metric each arm's unit, users, outcomes and mean; per comparison the difference "
        "with its Holm-level interval (ci_holm), lift, Holm-adjusted p and verdict; then the "
        "sample-ratio check.",
    )


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
        url = args.url or env.get(URL_VARIABLE) or DEFAULT_URL
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
            stderr=err,
        )
        handler: Callable[[Context, argparse.Namespace], int] = args.handler
        return handler(ctx, args)
    except CliError as exc:
        if args.json and isinstance(exc, ApiError) and exc.shaped:
            (stdout or sys.stdout).write(exc.text if exc.text.endswith("\n") else exc.text + "\n")
        err.write("\n".join(exc.lines) + "\n")
        return exc.exit_code
