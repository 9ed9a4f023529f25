"""The gateway's answers for scripts/smoke.py: how one is fetched, and what it must hold.

Kept apart so smoke.py reads as the check sequence and its output. Standard library only,
like smoke.py, which loads it from this folder.
"""

from __future__ import annotations

import json
import math
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ENSEMBLE_PARTS = ("dcf", "cca", "risk", "sentiment")
RISK_CLASSES = ("low", "medium", "high")
SENTIMENT_LABELS = ("negative", "neutral", "positive")


# --- HTTP ---------------------------------------------------------------------------------


@dataclass
class Answer:
    """One request's outcome; ``status`` is None when no HTTP answer came back."""

    method: str
    path: str
    status: int | None
    body: Any
    text: str
    ms: float
    problem: str = ""


class Client:
    """Bearer-token JSON calls with a per-request timeout; never raises on HTTP errors."""

    def __init__(self, base: str, token: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        https = urllib.request.HTTPSHandler(context=ssl.create_default_context())
        self.opener = urllib.request.build_opener(https)

    def call(self, method: str, path: str, payload: Any = None) -> Answer:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - smoke.py checks the scheme
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "ipo-smoke/1")
        # Our own id, so a failure can be found in the server's logs even without an answer.
        request.add_header("X-Request-Id", f"smoke-{uuid.uuid4().hex}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        started = time.monotonic()
        status: int | None
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            elapsed = (time.monotonic() - started) * 1000
            return Answer(method, path, None, None, "", elapsed, _transport_problem(self, exc))
        elapsed = (time.monotonic() - started) * 1000
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return Answer(method, path, status, body, text, elapsed)


def _transport_problem(client: Client, exc: Exception) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer from {client.base} within {client.timeout:g} s"
    text = getattr(reason, "strerror", None) or str(reason)
    return f"cannot reach {client.base}: {text[:1].lower()}{text[1:]}"


def error_of(answer: Answer) -> dict[str, str] | None:
    """The platform's error shape (common/core/errors.py) as code, message and request id."""
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return {
            "code": str(error.get("code", "")),
            "message": str(error.get("message", "")),
            "request_id": str(body.get("request_id", "")),
        }
    return None


def describe(answer: Answer) -> str:
    """Why a call failed, in one line: the error body's code and message when it has one."""
    if answer.status is None:
        return answer.problem
    where = f"{answer.method} {answer.path}: HTTP {answer.status}"
    error = error_of(answer)
    if error is not None:
        text = f"{where} {error['code']}: {error['message']}"
        body = answer.body
        for detail in (body["error"].get("details") or [])[:3]:
            if isinstance(detail, dict) and detail.get("message"):
                field = detail.get("field") or detail.get("criterion")
                text += f"; {field}: {detail['message']}" if field else f"; {detail['message']}"
        return text + (f" (request id {error['request_id']})" if error["request_id"] else "")
    if isinstance(answer.body, dict) and "message" in answer.body:
        # API Gateway's own refusals ({"code": 401, "message": "Jwt is missing"}).
        return f"{where} (from the gateway) {answer.body['message']}"
    snippet = " ".join(answer.text.split())[:200]
    return f"{where} not the API's JSON: {snippet!r}" if snippet else f"{where} with no body"


# --- validation ---------------------------------------------------------------------------


class CheckFailed(Exception):
    """A check's verdict, with the answer that decided it."""

    def __init__(self, detail: str, answer: Answer | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.answer = answer


def expect_ok(answer: Answer) -> dict[str, Any]:
    if answer.status != 200:
        raise CheckFailed(describe(answer), answer)
    if not isinstance(answer.body, dict):
        raise CheckFailed(f"{answer.method} {answer.path}: 200 but not a JSON object", answer)
    return answer.body


def finite(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckFailed(f"{key} is {value!r}, not a finite number")
    return float(value)


def text_field(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise CheckFailed(f"{key} is {value!r}, not a non-empty string")
    return value


def within(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise CheckFailed(f"{name} {value:g} is outside [{low:g}, {high:g}]")


def one_of(record: dict[str, Any], key: str, allowed: Sequence[str]) -> str:
    value = record.get(key)
    if value not in allowed:
        raise CheckFailed(f"{key} is {value!r}, not one of {', '.join(allowed)}")
    return str(value)


def _dcf(p: dict[str, Any]) -> str:
    value = finite(p, "value_per_share")
    finite(p, "equity_value_musd")
    enterprise = finite(p, "enterprise_value_musd")
    return f"value_per_share={value:.4g}, enterprise_value_musd={enterprise:.4g}"


def _cca(p: dict[str, Any]) -> str:
    value = finite(p, "value_per_share")
    finite(p, "equity_value_musd")
    peers = p.get("peer_count")
    if isinstance(peers, bool) or not isinstance(peers, int) or peers < 1:
        raise CheckFailed(f"peer_count is {peers!r}, not a positive integer")
    return f"value_per_share={value:.4g} from {peers} peers"


def _risk(p: dict[str, Any]) -> str:
    label = one_of(p, "risk_class", RISK_CLASSES)
    score = finite(p, "risk_score")
    within("risk_score", score, 0, 100)
    probabilities = p.get("probabilities")
    if not isinstance(probabilities, dict):
        raise CheckFailed(f"probabilities is {probabilities!r}, not an object")
    total = sum(finite(probabilities, name) for name in RISK_CLASSES)
    within("the sum of probabilities", total, 0.999, 1.001)
    return f"risk_class={label}, risk_score={score:g}"


def _sentiment(p: dict[str, Any]) -> str:
    label = one_of(p, "label", SENTIMENT_LABELS)
    score = finite(p, "score")
    within("score", score, -1, 1)
    return f"label={label}, score={score:g}"


def _ensemble(p: dict[str, Any]) -> str:
    value = finite(p, "value_per_share")
    interval = p.get("interval")
    if not isinstance(interval, dict):
        raise CheckFailed(f"interval is {interval!r}, not an object")
    low, high = finite(interval, "low"), finite(interval, "high")
    within("value_per_share", value, low, high)
    parts = p.get("contributions")
    missing = [m for m in ENSEMBLE_PARTS if not isinstance(parts, dict) or m not in parts]
    if missing:
        raise CheckFailed(f"contributions lack {', '.join(missing)}")
    return f"value_per_share={value:.4g} in [{low:.4g}, {high:.4g}]"


def any_output(p: dict[str, Any]) -> str:
    """A model without checks of its own: a non-empty object, its fields named."""
    if not p:
        raise CheckFailed("the prediction is an empty object")
    fields = ", ".join(sorted(p)[:6]) + (", ..." if len(p) > 6 else "")
    return f"fields {fields}"


OUTPUTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "dcf": _dcf,
    "cca": _cca,
    "risk": _risk,
    "sentiment": _sentiment,
    "ensemble": _ensemble,
}
"""Per model: assert on the fields a caller uses, and say them in one line; a model not
listed gets ``any_output``."""
