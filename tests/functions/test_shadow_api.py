"""Shadow evaluation over HTTP: a candidate that never answers a user is replayed on the
production traffic the payload log kept, compared output by output, and a gate can
require what the comparison shows."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from common.audit.retention import ErasureRequest, erase_subject
from common.shadow import replay as replay_module
from common.shadow.shadows import PAIRS
from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, trained_risk
from tools.training import risk_builder, synthetic
from tools.training.base import BuiltModel, register_built

UNTIL = "2099-01-01T00:00:00Z"


@cache
def other_risk() -> BuiltModel:
    """A risk model trained on another sample: close to production's, not the same."""
    return risk_builder.train(synthetic.generate(3000, 11), seed=11)


def staged(stack: Stack, version: str, built: BuiltModel) -> None:
    register_built(stack.lifecycle, built, version=version, created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", version, "staging")


def payload_log(stack: Stack, **body: Any) -> None:
    response = function_client("promote_model").put(
        "/v1/models/risk/payload-log",
        json={"enabled": True, "sampling_rate": 1.0, **body},
        headers=stack.headers(("admin",)),
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def start(stack: Stack, **body: Any) -> Any:
    return function_client("promote_model").post(
        "/v1/models/risk/shadow",
        json={"version": "1.1.0", "until": UNTIL, **body},
        headers=stack.headers(("admin",)),
    )


def traffic(stack: Stack, count: int) -> list[dict[str, Any]]:
    example = stack.registry.get_version("risk", "1.0.0").example
    answers = []
    for i in range(count):
        instance = {**example, "revenue_growth": round(-0.2 + 0.05 * i, 3)}
        instance["sector"] = ("technology", "healthcare", "finance")[i % 3]
        sent = [instance, {**instance, "market_volatility": 20.0 + i}]
        response = function_client("predict_risk").post(
            "/v1/predict/risk",
            json={"instances": sent},
            headers={**stack.headers(("model:risk:predict",)), "X-Request-Id": f"shadow-{i}"},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        answers.append({**response.get_json(), "sent": sent})
    return answers


def replay(stack: Stack) -> dict[str, Any]:
    response = function_client("shadow_replay").post(
        "/v1/jobs/shadow-replay", json={}, headers=stack.headers(("job:shadow-replay:run",))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def report(stack: Stack, query: str = "") -> dict[str, Any]:
    response = function_client("list_models").get(
        f"/v1/models/risk/shadow/report{query}", headers=stack.headers(("model:read",))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def test_a_shadow_replays_kept_production_traffic_and_reports_the_differences(
    stack: Stack,
) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    started = start(stack, sampling_rate=1.0, reason="retrained on a new sample")
    assert started.status_code == 201, started.get_data(as_text=True)
    answers = traffic(stack, 12)
    # the candidate never answered anyone: every answer came from production
    assert {(a["model_version"], a["variant"]) for a in answers} == {("1.0.0", "production")}

    ran = replay(stack)
    (one,) = ran["shadows"]
    assert (one["version"], one["replayed"]) == ("1.1.0", 12)
    assert one["report_html"] == f"reports/shadow/{one['shadow_id']}.html"
    assert replay(stack)["shadows"][0]["replayed"] == 0  # the checkpoint moved on

    found = report(stack)
    assert (found["n"], found["candidate_errors"]) == (24, 0)
    score = found["outputs"]["risk_score"]
    assert score["type"] == "numeric"
    assert score["n"] == 24
    assert score["mean_abs_rel_diff"] > 0  # another sample, another model
    assert score["rank_correlation"] > 0.5
    low, high = score["mean_abs_rel_diff_ci95"]
    assert low <= score["mean_abs_rel_diff"] <= high
    risk_class = found["outputs"]["risk_class"]
    assert 0.5 <= risk_class["agreement"] <= 1.0
    assert sum(sum(row.values()) for row in risk_class["confusion"].values()) == 24
    assert {s["field"] for s in found["segments"]} <= {"sector"}
    assert found["latency_ms_per_instance"]["candidate"] > 0
    assert found["report_html"] == one["report_html"]
    html = stack.services.backends.artifacts.get(one["report_html"]).decode()
    assert "risk_score" in html
    assert "data:image/png;base64," in html

    # by hand: both versions run directly on the instances sent give the report's number
    sent = [i for a in answers for i in a["sent"]]
    production = [p["risk_score"] for a in answers for p in a["predictions"]]
    runtime = stack.services.pool.get(stack.registry.get_version("risk", "1.1.0")).runtime
    kind = type(runtime)
    candidate = [
        p["risk_score"]
        for p in runtime.predict(
            kind.instances_adapter().validate_python(sent),
            kind.parameters_adapter().validate_python({}),
        )
    ]
    floor = 0.01 * sum(abs(v) for v in production) / len(production)
    expected = sum((c - v) / max(abs(v), floor) for v, c in zip(production, candidate, strict=True))
    assert score["mean_rel_diff"] == pytest.approx(expected / len(production), abs=1e-6)


def test_the_same_version_in_shadow_agrees_exactly(stack: Stack) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", trained_risk())  # the production model's own artifact
    assert start(stack).status_code == 201
    traffic(stack, 4)
    replay(stack)
    found = report(stack)
    assert found["summary"]["max_mean_abs_rel_diff"] == 0.0
    assert found["summary"]["min_agreement"] == 1.0


def test_what_cannot_be_a_shadow_is_refused(stack: Stack) -> None:
    register_built(stack.lifecycle, other_risk(), version="1.1.0", created_by="t", promote=False)
    payload_log(stack)
    error = assert_error(start(stack), 422, "invalid_values")["error"]
    assert error["details"][0]["criterion"] == "stage"  # development never runs
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    past = start(stack, until="2020-01-01T00:00:00Z")
    assert assert_error(past, 422, "invalid_values")["error"]["details"][0]["field"] == "until"
    assert_error(start(stack, version="1.0.0"), 409, "conflict")  # production itself
    function_client("promote_model").put(
        "/v1/models/risk/payload-log",
        json={"enabled": False, "sampling_rate": 0.0},
        headers=stack.headers(("admin",)),
    )
    off = assert_error(start(stack), 409, "conflict")["error"]
    assert "payload log" in off["message"]


def test_redacted_records_are_skipped_not_miscounted(stack: Stack) -> None:
    payload_log(stack, redact_fields=["sector"])
    staged(stack, "1.1.0", other_risk())
    assert start(stack).status_code == 201
    traffic(stack, 3)
    (one,) = replay(stack)["shadows"]
    assert (one["replayed"], one["skipped_redacted"]) == (0, 3)
    assert stack.services.backends.documents.query(PAIRS) == []


def test_a_gate_can_require_the_shadow(stack: Stack) -> None:
    """A model whose gate names a shadow criterion: promotion is refused until the shadow
    has compared enough instances within the bounds."""
    from common.registry.records import MODELS

    documents = stack.services.backends.documents
    gate = {
        "criteria": [{"metric": "accuracy", "op": ">=", "threshold": 0.5}],
        "shadow": {"min_n": 10, "max_mean_abs_rel_diff": 5.0, "min_agreement": 0.5},
    }
    documents.update(MODELS, "risk", {"gate": gate})
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    promote = function_client("promote_model").post(
        "/v1/models/risk/promote", json={"version": "1.1.0"}, headers=stack.headers(("admin",))
    )
    details = assert_error(promote, 422, "invalid_values")["error"]["details"]
    assert {d["criterion"] for d in details} == {
        "shadow.n",
        "shadow.max_mean_abs_rel_diff",
        "shadow.min_agreement",
    }
    assert all(d["message"] == "no shadow evaluation of this version" for d in details)

    assert start(stack).status_code == 201  # the shadow bound is not asked of the shadow
    traffic(stack, 3)
    replay(stack)
    refused = function_client("promote_model").post(
        "/v1/models/risk/promote", json={"version": "1.1.0"}, headers=stack.headers(("admin",))
    )
    (short,) = assert_error(refused, 422, "invalid_values")["error"]["details"]
    assert (short["criterion"], short["value"]) == ("shadow.n", 6)

    traffic(stack, 6)  # request ids repeat: the kept predictions are new ones
    replay(stack)
    done = function_client("promote_model").post(
        "/v1/models/risk/promote", json={"version": "1.1.0"}, headers=stack.headers(("admin",))
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    shadow_results = [
        r for r in done.get_json()["deployment"]["gate"] if r["criterion"].startswith("shadow.")
    ]
    assert all(r["passed"] for r in shadow_results)
    assert shadow_results[0]["value"] == 18


def test_stop_ends_the_replay_and_keeps_the_report(stack: Stack) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    assert start(stack).status_code == 201
    traffic(stack, 2)
    replay(stack)
    stopped = function_client("promote_model").post(
        "/v1/models/risk/shadow/stop", headers=stack.headers(("admin",))
    )
    assert stopped.status_code == 200
    assert stopped.get_json()["status"] == "stopped"
    traffic(stack, 2)
    assert replay(stack)["shadows"] == []
    assert report(stack)["n"] == 4
    again = function_client("promote_model").post(
        "/v1/models/risk/shadow/stop", headers=stack.headers(("admin",))
    )
    assert_error(again, 409, "conflict")


def test_an_admin_adds_the_shadow_criterion_to_an_existing_model(stack: Stack) -> None:
    shown = (
        function_client("list_models")
        .get("/v1/models/risk", headers=stack.headers(("model:read",)))
        .get_json()
    )
    gate = {**shown["gate"], "shadow": {"min_n": 4}}
    body = {"gate": gate, "reason": "candidates are shadowed first"}
    refused = function_client("promote_model").put(
        "/v1/models/risk/gate", json=body, headers=stack.headers(("model:risk:promote",))
    )
    assert_error(refused, 403, "forbidden")
    unexplained = function_client("promote_model").put(
        "/v1/models/risk/gate", json={"gate": gate}, headers=stack.headers(("admin",))
    )
    assert_error(unexplained, 422, "invalid_values")
    changed = function_client("promote_model").put(
        "/v1/models/risk/gate", json=body, headers=stack.headers(("admin",), subject="cro")
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    record = changed.get_json()["change"]
    assert (record["actor"], record["reason"]) == ("cro", "candidates are shadowed first")
    assert record["from"] == {}  # the kind's defaults were in force
    assert changed.get_json()["model"]["gate"]["shadow"] == {
        "min_n": 4,
        "max_mean_abs_rel_diff": None,
        "min_agreement": None,
    }

    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    promote = function_client("promote_model").post(
        "/v1/models/risk/promote", json={"version": "1.1.0"}, headers=stack.headers(("admin",))
    )
    details = assert_error(promote, 422, "invalid_values")["error"]["details"]
    assert [d["criterion"] for d in details] == ["shadow.n"]
    assert start(stack).status_code == 201
    traffic(stack, 2)
    replay(stack)
    done = function_client("promote_model").post(
        "/v1/models/risk/promote", json={"version": "1.1.0"}, headers=stack.headers(("admin",))
    )
    assert done.status_code == 200, done.get_data(as_text=True)


def test_once_the_candidate_serves_it_is_not_compared_with_itself(stack: Stack) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    assert start(stack).status_code == 201
    traffic(stack, 3)
    stack.lifecycle.promote("risk", "1.1.0", actor="t")
    stack.services.snapshots.invalidate("risk")  # this instance sees it at once
    answers = traffic(stack, 3)
    assert {a["model_version"] for a in answers} == {"1.1.0"}
    (ran,) = replay(stack)["shadows"]
    assert (ran["replayed"], ran["other_production"]) == (3, 3)
    assert report(stack)["n"] == 6  # two instances a request, all served by 1.0.0


def test_erasure_and_retention_delete_the_pairs_of_a_subjects_requests(stack: Stack) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    assert start(stack).status_code == 201
    traffic(stack, 3)
    assert replay(stack)["shadows"][0]["replayed"] == 3
    documents = stack.services.backends.documents
    pairs = documents.query(PAIRS)
    assert {p.data["principal"] for p in pairs} == {"tester"}
    erased = function_client("purge_retention").post(
        "/v1/privacy/erasure", json={"subject": "tester"}, headers=stack.headers(("admin",))
    )
    assert erased.status_code == 200, erased.get_data(as_text=True)
    assert erased.get_json()["shadow_pairs_deleted"] == 3
    assert documents.query(PAIRS) == []
    assert report(stack)["n"] == 0

    traffic(stack, 2)
    replay(stack)
    for pair in documents.query(PAIRS):
        documents.update(PAIRS, pair.id, {"time": "2020-01-01T00:00:00.000000Z"})
    purged = function_client("purge_retention").post(
        "/v1/jobs/purge-retention", headers=stack.headers(("admin",))
    )
    assert purged.status_code == 200, purged.get_data(as_text=True)
    assert purged.get_json()["shadow_pairs_deleted"] == 2
    assert documents.query(PAIRS) == []


def test_a_pair_is_not_stored_for_a_prediction_erased_while_the_candidate_ran(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload_log(stack)
    staged(stack, "1.1.0", other_risk())
    assert start(stack).status_code == 201
    traffic(stack, 2)
    predict = replay_module.batch_rows.predict

    def erased_meanwhile(*args: Any, **kwargs: Any) -> Any:
        erase_subject(stack.services, ErasureRequest(subject="tester"))
        return predict(*args, **kwargs)

    monkeypatch.setattr(replay_module.batch_rows, "predict", erased_meanwhile)
    (ran,) = replay(stack)["shadows"]
    assert (ran["replayed"], ran["erased"]) == (0, 2)
    assert stack.services.backends.documents.query(PAIRS) == []
