"""Smoke test of a deployed gateway: health, one prediction per model, one control read.

    python scripts/smoke.py --url https://GATEWAY [--token TOKEN | --token-file PATH]
                            [--timeout 30] [--retries 10 --retry-wait 6] [--json]

Run after every deploy; any failed check fails the build. Standard library only, so it
runs in any Python 3.11 image without installing the project (docs/CLI.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import NoReturn

# `python -I` leaves the script's own folder off sys.path, and smoke_answers.py is there.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smoke_answers import (
    OUTPUTS,
    Answer,
    CheckFailed,
    Client,
    any_output,
    describe,
    error_of,
    expect_ok,
    one_of,
    text_field,
)

SPEC = os.path.abspath(os.path.join(__file__, "..", "..", "common", "api", "openapi.yaml"))
"""The routes API Gateway was configured from in the same build."""
PREDICT_ROUTE = re.compile(r"^  /v1/predict/([A-Za-z0-9_.@+-]+):[ \t]*$", re.M)


def routed_models(spec_text: str) -> tuple[str, ...]:
    """The models with a prediction route (``POST /v1/predict/<model>``) in the OpenAPI
    file, sorted: what ``common.api.routes.served_models`` reads, without a YAML parser."""
    return tuple(sorted(set(PREDICT_ROUTE.findall(spec_text))))


with open(SPEC, encoding="utf-8") as _spec:
    MODELS = routed_models(_spec.read())
"""Every model the platform serves, in the order checked."""
CONTROL_MODEL = MODELS[0]
"""Whose deployment history the control read fetches."""
TOKEN_ENV = "SMOKE_TOKEN"  # noqa: S105 - a variable name, not a secret
PERMISSIONS = "model:read and model:*:predict"
RETRY_STATUSES = frozenset({404, 408, 429, 500, 502, 503, 504})
"""What a gateway or function still starting answers; anything else will not get better."""
DEPLOYMENT_KINDS = ("promote", "rollback")
DEPLOYMENT_STATUSES = ("succeeded", "failed")
MODELS_PATH = "/v1/models"


def model_path(model_id: str) -> str:
    return f"/v1/models/{model_id}"


def predict_path(model_id: str) -> str:
    return f"/v1/predict/{model_id}"


def deployments_path(model_id: str) -> str:
    return f"/v1/models/{model_id}/deployments"


# --- checks -------------------------------------------------------------------------------


@dataclass
class Result:
    """One printed line, or one entry of the --json summary."""

    check: str
    passed: bool
    status: int | None
    ms: float
    detail: str
    error: dict[str, str] | None = None


def health(client: Client, retries: int, wait: float) -> tuple[Answer, dict[str, str]]:
    """``GET /v1/models`` until it answers 200 (a fresh deploy may 404/5xx for a while);
    the production version of each model that has one."""
    started = time.monotonic()
    for attempt in range(1, retries + 2):
        answer = client.call("GET", MODELS_PATH)
        transient = answer.status is None or answer.status in RETRY_STATUSES
        if answer.status == 200 or not transient or attempt > retries:
            break
        print(
            f"smoke: health attempt {attempt}/{retries + 1}: {describe(answer)}; "
            f"retrying in {wait:g} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(wait)
    if answer.status != 200:
        waited = time.monotonic() - started
        tries = f"after {attempt} attempts in {waited:.0f} s: " if attempt > 1 else ""
        raise CheckFailed(tries + describe(answer), answer)
    body = expect_ok(answer)
    listed = body.get("models")
    if not isinstance(listed, list):
        raise CheckFailed("the answer has no models list", answer)
    production = {
        str(m.get("model_id")): m["production_version"]
        for m in listed
        if isinstance(m, dict) and isinstance(m.get("production_version"), str)
    }
    missing = [m for m in MODELS if m not in production]
    if missing:
        raise CheckFailed(f"no production version of {', '.join(missing)}", answer)
    return answer, production


def predict(client: Client, model_id: str) -> tuple[Answer, str]:
    """The production example from the model's detail, sent to its predict route."""
    found = client.call("GET", model_path(model_id))
    production = expect_ok(found).get("production")
    example = production.get("example") if isinstance(production, dict) else None
    if not isinstance(example, dict) or not example:
        raise CheckFailed(f"GET {model_path(model_id)}: no production example", found)
    answer = client.call("POST", predict_path(model_id), {"instances": [example]})
    body = expect_ok(answer)
    try:
        predictions = body.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != 1:
            raise CheckFailed(f"predictions is {predictions!r:.80}, not a list of one")
        if body.get("model_id") != model_id:
            raise CheckFailed(f"model_id is {body.get('model_id')!r}, not {model_id!r}")
        version, variant = text_field(body, "model_version"), text_field(body, "variant")
        text_field(body, "request_id")
        if not isinstance(predictions[0], dict):
            raise CheckFailed("the prediction is not an object")
        summary = OUTPUTS.get(model_id, any_output)(predictions[0])
    except CheckFailed as exc:
        raise CheckFailed(exc.detail, answer) from None
    return answer, f"{summary} ({model_id} {version}, {variant})"


def deployments(client: Client, model_id: str, production: str | None) -> tuple[Answer, str]:
    """The deployment history: documented shape, and its newest success is what serves."""
    answer = client.call("GET", deployments_path(model_id))
    body = expect_ok(answer)
    try:
        history = body.get("deployments")
        if not isinstance(history, list) or not history:
            raise CheckFailed(f"deployments is {history!r:.80}, not a non-empty list")
        for entry in history:
            if not isinstance(entry, dict):
                raise CheckFailed(f"a deployment is {entry!r:.80}, not an object")
            text_field(entry, "deployment_id")
            text_field(entry, "created_at")
            one_of(entry, "kind", DEPLOYMENT_KINDS)
            one_of(entry, "status", DEPLOYMENT_STATUSES)
        newest = next((d for d in history if d["status"] == "succeeded"), None)
        if newest is None:
            raise CheckFailed("no succeeded deployment, yet the model is in production")
        target = newest.get("to")
        serving = target.get("production_version") if isinstance(target, dict) else None
        if production is not None and serving != production:
            raise CheckFailed(
                f"newest succeeded deployment {newest['deployment_id']} set {serving!r}, "
                f"but {production!r} is in production"
            )
    except CheckFailed as exc:
        raise CheckFailed(exc.detail, answer) from None
    plural = "s" if len(history) != 1 else ""
    return answer, (
        f"{len(history)} deployment{plural}; newest succeeded: {newest['kind']} to {serving} "
        f"at {newest['created_at']}"
    )


def run_check(name: str, check: Callable[[], tuple[Answer, str]]) -> Result:
    started = time.monotonic()
    try:
        answer, detail = check()
    except CheckFailed as exc:
        decided = exc.answer
        ms = decided.ms if decided else (time.monotonic() - started) * 1000
        return Result(
            name,
            False,
            decided.status if decided else None,
            round(ms, 1),
            exc.detail,
            error_of(decided) if decided else None,
        )
    return Result(name, True, answer.status, round(answer.ms, 1), detail)


# --- command line -------------------------------------------------------------------------


def line(result: Result) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    status = "-" if result.status is None else str(result.status)
    check = result.check.ljust(NAME_WIDTH)
    return f"{verdict}  {check}  {status:>3}  {result.ms:7.1f} ms  {result.detail}"


def check_names() -> list[str]:
    return ["health", *(f"predict:{m}" for m in MODELS), f"deployments:{CONTROL_MODEL}"]


NAME_WIDTH = max(map(len, check_names()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="smoke.py",
        description=(
            f"Smoke-test a deployed gateway: GET /v1/models lists {', '.join(MODELS)} (the "
            "models common/api/openapi.yaml routes) in production; one prediction per model "
            f"from its production example; the deployment history of {CONTROL_MODEL}. Exit 0 "
            "when every check passes, 1 when any fails, 2 on a usage error."
        ),
        epilog=(
            f"The token needs {PERMISSIONS}; no experiment permission is used. "
            f"Prefer --token-file or ${TOKEN_ENV}: a --token value shows in the process list."
        ),
    )
    parser.add_argument(
        "--url",
        required=True,
        help="the gateway's base URL: https://... when deployed, http://127.0.0.1:8080 locally",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    source.add_argument("--token-file", metavar="PATH", help="read the bearer token from PATH")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for each answer (30)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=10,
        metavar="N",
        help="retry the health check up to N times while the gateway is not ready (10)",
    )
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=6.0,
        metavar="S",
        help="seconds between health retries (6)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead")
    args = parser.parse_args(argv)
    if not args.url.startswith(("https://", "http://")):
        parser.error(f"--url must start with https:// or http://, not {args.url!r}")
    if args.timeout <= 0 or args.retries < 0 or args.retry_wait < 0:
        parser.error("--timeout must be positive, --retries and --retry-wait not negative")
    return args


def usage_error(message: str) -> NoReturn:
    print(f"smoke: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            usage_error(f"cannot read --token-file: {exc}")
        where = f"--token-file {args.token_file}"
    else:
        token = (args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")).strip()
        where = "--token" if args.token is not None else f"${TOKEN_ENV}"
    if not token:
        if args.token_file or args.token is not None or TOKEN_ENV in os.environ:
            usage_error(f"{where} is empty; the token needs {PERMISSIONS}")
        usage_error(
            f"no token: pass --token or --token-file, or set ${TOKEN_ENV}; it needs {PERMISSIONS}"
        )
    return token


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    client = Client(args.url, read_token(args), args.timeout)
    results: list[Result] = []
    production: dict[str, str] = {}

    def report(result: Result) -> None:
        results.append(result)
        if not args.json:
            print(line(result), flush=True)

    def health_check() -> tuple[Answer, str]:
        answer, production_versions = health(client, args.retries, args.retry_wait)
        production.update(production_versions)
        listed = ", ".join(f"{m} {production_versions[m]}" for m in MODELS)
        return answer, f"in production: {listed}"

    first = run_check("health", health_check)
    report(first)
    skipped: list[str] = []
    if first.status != 200:
        skipped = check_names()[1:]
        print(
            f"smoke: {args.url} did not answer GET {MODELS_PATH} with 200; "
            f"{len(skipped)} other checks were not run",
            file=sys.stderr,
        )
    else:
        for model_id in MODELS:
            report(run_check(f"predict:{model_id}", partial(predict, client, model_id)))
        report(
            run_check(
                f"deployments:{CONTROL_MODEL}",
                lambda: deployments(client, CONTROL_MODEL, production.get(CONTROL_MODEL)),
            )
        )
    passed = not skipped and all(r.passed for r in results)
    failed = sum(not r.passed for r in results)
    if args.json:
        summary = {
            "url": args.url,
            "passed": passed,
            "checks": [asdict(r) for r in results],
            "skipped": skipped,
        }
        print(json.dumps(summary, indent=1))
    elif passed:
        print(f"smoke: all {len(results)} checks passed against {args.url}")
    else:
        not_run = f", {len(skipped)} not run" if skipped else ""
        print(f"smoke: {failed} of {len(results)} checks failed{not_run} against {args.url}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
