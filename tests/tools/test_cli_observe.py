"""ipoctl's payload-log, prediction and shadow commands, in process against the functions."""

from __future__ import annotations

import json

from tests.functions.test_shadow_api import other_risk, replay, staged, traffic
from tests.support.cli import ipoctl
from tests.support.fixtures import Stack


def test_payload_log_then_a_kept_prediction_then_a_shadow_report(stack: Stack) -> None:
    admin = stack.token(("admin",))
    shown = ipoctl(admin, "payload-log", "show", "risk")
    assert "enabled" in shown
    assert "no" in shown.splitlines()[1]

    changed = ipoctl(
        admin, "payload-log", "set", "risk", "--enable", "--rate", "1", "--reason", "pilot"
    )
    assert "yes" in changed
    # only what is given changes: a field redacted, then the rate moved, keeps the field
    ipoctl(admin, "payload-log", "set", "risk", "--redact", "sector")
    moved = ipoctl(admin, "payload-log", "set", "risk", "--rate", "0.5")
    assert "sector" in moved
    assert "0.5" in moved
    cleared = ipoctl(admin, "payload-log", "set", "risk", "--no-redact", "--rate", "1")
    assert "sector" not in cleared
    history = ipoctl(admin, "payload-log", "show", "risk")
    assert "pilot" in history
    assert "tester" in history

    staged(stack, "1.1.0", other_risk())
    started = ipoctl(admin, "shadow", "start", "risk", "1.1.0", "--until", "2099-01-01T00:00:00Z")
    assert "1.1.0" in started
    assert "active" in started

    traffic(stack, 3)
    kept = ipoctl(admin, "prediction", "shadow-0")
    assert "risk 1.0.0" in kept
    assert "instance 1" in kept
    explained = ipoctl(admin, "prediction", "shadow-0", "--explain")
    assert "exact_linear" in explained
    assert "ATTRIBUTION" in explained

    replay(stack)
    report = ipoctl(admin, "shadow", "report", "risk", "--tolerance", "0.1")
    assert "risk_score" in report
    assert "risk_class" in report
    raw = json.loads(ipoctl(admin, "--json", "shadow", "report", "risk"))
    assert raw["n"] == 6
    stopped = ipoctl(admin, "shadow", "stop", "risk")
    assert "stopped" in stopped
    first = raw["shadow"]["shadow_id"]
    ipoctl(admin, "shadow", "start", "risk", "1.1.0", "--until", "2099-01-01T00:00:00Z")
    listed = ipoctl(admin, "shadow", "list", "risk")
    assert first in listed
    assert len(listed.strip().splitlines()) == 3  # header and two shadows
    again = json.loads(ipoctl(admin, "--json", "shadow", "report", "risk", "--shadow-id", first))
    assert again["n"] == 6  # the first shadow's report, after a newer one started


def test_turning_the_log_on_without_a_rate_is_refused_before_anything_is_sent(
    stack: Stack,
) -> None:
    import io

    from tests.support.cli import URL, transport
    from tools.cli import main as cli

    err = io.StringIO()
    code = cli.main(
        [
            "--url",
            URL,
            "--token",
            stack.token(("admin",)),
            "payload-log",
            "set",
            "risk",
            "--enable",
        ],
        transport=transport,
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 2
    assert "--rate" in err.getvalue()


def test_ipoctl_gate_replaces_a_models_gate_with_a_reason(stack: Stack) -> None:
    gate = {"criteria": [{"metric": "accuracy", "op": ">=", "threshold": 0.8}]}
    shown = ipoctl(
        stack.token(("admin",)), "gate", "risk", "--gate", "-", "--reason", "pilot gate",
        stdin=json.dumps(gate),
    )  # fmt: skip
    assert "accuracy >= 0.8" in shown
    assert "pilot gate" in shown
    assert stack.registry.get_model("risk").gate["criteria"][0]["threshold"] == 0.8
