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
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from common.cli_client import (
    DEFAULT_TIMEOUT_S,
    EXIT_USAGE,
    ApiError,
    Client,
    CliError,
    Transport,
    UsageError,
)
from common.cli_commands import (
    AUTH_HINT,
    MAX_USERS,
    METADATA_FIELDS,
    STAGES,
    Context,
    Minter,
    cmd_canary_check,
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
