"""The payload log over HTTP: settings changed and recorded, predictions kept with their
audit entry, read back by who made them, sealed at rest, purged and erased."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common.audit.payload_log import PREDICTION_LOG, KeptPrediction, record_id
from common.audit.retention import ErasureRequest, RetentionRequest, erase_subject, purge_retention
from common.audit.trail import ENTRIES
from common.core.errors import UnavailableError
from common.security.crypto import ENVELOPE
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, embedded_stack, register_risk


def configure(stack: Stack, **body: Any) -> Any:
    return function_client("promote_model").put(
        "/v1/models/risk/payload-log",
        json=body,
        headers=stack.headers(("admin",), subject="ops-1"),
    )


def predict(stack: Stack, request_id: str, subject: str = "analyst-1") -> dict[str, Any]:
    example = stack.registry.get_version("risk", "1.0.0").example
    response = function_client("predict_risk").post(
        "/v1/predict/risk",
        json={"instances": [example, {**example, "revenue_growth": 0.5}]},
        headers={
            **stack.headers(("model:risk:predict",), subject=subject),
            "X-Request-Id": request_id,
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def read(
    stack: Stack, request_id: str, subject: str = "analyst-1", perms: tuple[str, ...] = ()
) -> Any:
    return function_client("list_models").get(
        f"/v1/predictions/{request_id}",
        headers=stack.headers(perms or ("model:read",), subject=subject),
    )


def test_nothing_is_kept_until_a_model_is_configured(stack: Stack) -> None:
    predict(stack, "req-off")
    assert stack.services.backends.documents.query(PREDICTION_LOG) == []
    shown = function_client("list_models").get(
        "/v1/models/risk/payload-log", headers=stack.headers(("model:read",))
    )
    assert shown.status_code == 200
    assert shown.get_json()["enabled"] is False
    assert assert_error(read(stack, "req-off"), 404, "not_found")


def test_a_kept_prediction_reads_back_as_it_was_answered(stack: Stack) -> None:
    changed = configure(
        stack, enabled=True, sampling_rate=1.0, redact_fields=["sector"], reason="validation"
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    answer = predict(stack, "req-kept-1")

    kept = read(stack, "req-kept-1")
    assert kept.status_code == 200, kept.get_data(as_text=True)
    body = kept.get_json()
    assert body["predictions"] == answer["predictions"]
    assert (body["model_id"], body["model_version"], body["variant"]) == (
        "risk",
        "1.0.0",
        "production",
    )
    assert body["principal"] == "analyst-1"
    assert body["redacted_fields"] == ["sector"]
    assert len(body["instances"]) == 2
    assert all("sector" not in i for i in body["instances"])
    assert body["instances"][1]["revenue_growth"] == 0.5
    assert body["latency_ms"] > 0
    assert body["cache_hit"] is False

    # stored beside its audit entry, under the entry's id, with inputs and outputs sealed
    documents = stack.services.backends.documents
    (stored,) = documents.query(PREDICTION_LOG)
    entry = documents.get(ENTRIES, stored.id)
    assert entry is not None
    assert entry.data["request_id"] == "req-kept-1"
    assert ENVELOPE in stored.data
    assert "revenue_growth" not in str(stored.data)
    assert stack.services.cipher.open(record_id(stored.id), stored.data)["financial_data"]

    # another caller learns nothing, an admin reads it
    assert_error(read(stack, "req-kept-1", subject="analyst-2"), 404, "not_found")
    assert read(stack, "req-kept-1", subject="auditor", perms=("admin",)).status_code == 200


def test_a_reused_request_id_hides_nobodys_prediction(stack: Stack) -> None:
    """Callers choose their request ids: a second caller who sends someone else's id
    keeps their own prediction under it and sees only that one."""
    configure(stack, enabled=True, sampling_rate=1.0)
    first = predict(stack, "shared-1", subject="analyst-7")
    documents = stack.services.backends.documents
    (kept,) = documents.query(PREDICTION_LOG)
    documents.update(PREDICTION_LOG, kept.id, {"time": "2020-01-01T00:00:00.000000Z"})
    example = stack.registry.get_version("risk", "1.0.0").example
    other = function_client("predict_risk").post(
        "/v1/predict/risk",
        json={"instances": [{**example, "revenue_growth": 0.9}]},
        headers={
            **stack.headers(("model:risk:predict",), subject="analyst-8"),
            "X-Request-Id": "shared-1",
        },
    )
    assert other.status_code == 200
    mine = read(stack, "shared-1", subject="analyst-7")
    assert mine.status_code == 200, mine.get_data(as_text=True)
    assert mine.get_json()["predictions"] == first["predictions"]
    theirs = read(stack, "shared-1", subject="analyst-8").get_json()
    assert theirs["predictions"] == other.get_json()["predictions"]
    latest = read(stack, "shared-1", subject="auditor", perms=("admin",)).get_json()
    assert latest["principal"] == "analyst-8"


def test_changes_are_recorded_and_unknown_fields_refused(stack: Stack) -> None:
    refused = configure(stack, enabled=True, sampling_rate=0.5, redact_fields=["ssn"])
    error = assert_error(refused, 422, "invalid_values")["error"]
    assert error["details"][0]["field"] == "redact_fields"
    assert configure(stack, enabled=True, sampling_rate=0.25, reason="pilot").status_code == 200
    assert configure(stack, enabled=False, sampling_rate=0.25).status_code == 200
    shown = (
        function_client("list_models")
        .get("/v1/models/risk/payload-log", headers=stack.headers(("model:read",)))
        .get_json()
    )
    assert (shown["enabled"], shown["generation"]) == (False, 2)
    assert [(c["actor"], c["to"]["enabled"], c["reason"]) for c in shown["changes"]] == [
        ("ops-1", False, ""),
        ("ops-1", True, "pilot"),
    ]
    forbidden = function_client("promote_model").put(
        "/v1/models/risk/payload-log",
        json={"enabled": True, "sampling_rate": 1.0},
        headers=stack.headers(("model:read",)),
    )
    assert_error(forbidden, 403, "forbidden")


def test_the_sample_follows_the_rate(stack: Stack) -> None:
    configure(stack, enabled=True, sampling_rate=0.3)
    for i in range(60):
        predict(stack, f"req-rate-{i}")
    kept = len(stack.services.backends.documents.query(PREDICTION_LOG))
    assert 6 <= kept <= 32  # 18 expected; keyed, so not a fixed count


def test_retention_and_erasure_delete_kept_predictions(stack: Stack) -> None:
    configure(stack, enabled=True, sampling_rate=1.0)
    predict(stack, "req-a", subject="analyst-1")
    predict(stack, "req-b", subject="analyst-2")
    erased = erase_subject(stack.services, ErasureRequest(subject="analyst-1"))
    assert erased["kept_predictions_deleted"] == 1
    assert read(stack, "req-a").status_code == 404
    assert read(stack, "req-b", subject="analyst-2").status_code == 200
    later = datetime.now(UTC) + timedelta(days=stack.settings.retention_days + 1)
    purged = purge_retention(stack.services, RetentionRequest(), now=later)
    assert purged["kept_predictions_deleted"] == 1
    assert stack.services.backends.documents.query(PREDICTION_LOG) == []


def test_a_kept_prediction_that_cannot_be_stored_withholds_the_answer_and_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One commit holds the entry and the kept prediction: neither lands without the other,
    and the caller gets the audit trail's 503, never an answer that was not recorded."""
    stack = embedded_stack(tmp_path, IPO_AUDIT_COMMIT_TIMEOUT_S="0.2")
    register_risk(stack.lifecycle)
    use_services(stack.services)
    try:
        configure(stack, enabled=True, sampling_rate=1.0)

        def broken(self: KeptPrediction, entry_id: str, cipher: Any) -> dict[str, Any]:
            raise UnavailableError("key service unreachable")

        monkeypatch.setattr(KeptPrediction, "document", broken)
        example = stack.registry.get_version("risk", "1.0.0").example
        response = function_client("predict_risk").post(
            "/v1/predict/risk",
            json={"instances": [example]},
            headers={**stack.headers(("model:risk:predict",)), "X-Request-Id": "req-lost"},
        )
        assert_error(response, 503, "unavailable")
        documents = stack.services.backends.documents
        assert documents.query(PREDICTION_LOG) == []
        assert [e for e in documents.query(ENTRIES) if e.data["request_id"] == "req-lost"] == []
    finally:
        reset_services()


def explain_kept(stack: Stack, request_id: str, query: str = "", **kw: Any) -> Any:
    perms = kw.pop("perms", ("model:read", "model:risk:explain"))
    return function_client("list_models").get(
        f"/v1/predictions/{request_id}/explanation{query}",
        headers=stack.headers(perms, subject=kw.pop("subject", "analyst-1")),
    )


def test_a_kept_prediction_is_explained_again_with_the_same_numbers(stack: Stack) -> None:
    configure(stack, enabled=True, sampling_rate=1.0)
    answer = predict(stack, "req-explain")
    first = explain_kept(stack, "req-explain")
    assert first.status_code == 200, first.get_data(as_text=True)
    body = first.get_json()
    assert (body["model_id"], body["model_version"]) == ("risk", "1.0.0")
    assert body["predictions"] == answer["predictions"]
    assert len(body["explanations"]) == 2
    assert body["explanation_metadata"]["baseline"] == "version"
    again = explain_kept(stack, "req-explain").get_json()
    assert again["explanations"] == body["explanations"]

    # the same as explaining the same instances live, against the same version
    example = stack.registry.get_version("risk", "1.0.0").example
    live = (
        function_client("predict_risk")
        .post(
            "/v1/explain/risk",
            json={"instances": [example, {**example, "revenue_growth": 0.5}]},
            headers=stack.headers(("model:risk:explain",)),
        )
        .get_json()
    )
    assert live["explanations"] == body["explanations"]

    # each attribution set adds up to its output, as every explanation does
    for explanation in body["explanations"]:
        for item in explanation["attributions"]:
            total = item["baseline_output_value"] + sum(item["feature_attributions"].values())
            assert abs(total - item["instance_output_value"]) <= item["approximation_error"] + 1e-6


def test_explaining_a_kept_prediction_needs_the_models_explain_permission(stack: Stack) -> None:
    configure(stack, enabled=True, sampling_rate=1.0)
    predict(stack, "req-explain-2")
    assert_error(explain_kept(stack, "req-explain-2", perms=("model:read",)), 403, "forbidden")
    assert_error(explain_kept(stack, "req-explain-2", subject="analyst-2"), 404, "not_found")
    bad = explain_kept(stack, "req-explain-2", "?paths=1")
    assert assert_error(bad, 422, "invalid_values")["error"]["details"][0]["field"] == "paths"


def test_a_prediction_kept_without_some_fields_is_not_explained_on_a_guess(stack: Stack) -> None:
    configure(stack, enabled=True, sampling_rate=1.0, redact_fields=["sector"])
    predict(stack, "req-explain-3")
    refused = explain_kept(stack, "req-explain-3")
    assert "sector" in assert_error(refused, 422, "invalid_values")["error"]["message"]


def test_a_v2_inference_is_kept_as_v1_would_keep_it(stack: Stack) -> None:
    """The payload log keeps the instances the tensors decoded to and the predictions."""
    from tests.functions.test_oip import _risk_request

    configure(stack, enabled=True, sampling_rate=1.0)
    response = function_client("predict_risk").post(
        "/v2/models/risk/infer",
        json=_risk_request(stack, 2),
        headers={**stack.headers(("model:risk:predict",)), "X-Request-Id": "req-v2"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    kept = read(stack, "req-v2", subject="tester", perms=("admin",)).get_json()
    assert kept["operation"] == "predictRiskV2"
    assert (kept["model_version"], kept["variant"]) == ("1.0.0", "production")
    example = stack.registry.get_version("risk", "1.0.0").example
    assert kept["instances"] == [example, example]
    v1 = (
        function_client("predict_risk")
        .post(
            "/v1/predict/risk",
            json={"instances": [example, example]},
            headers=stack.headers(("model:risk:predict",)),
        )
        .get_json()
    )
    assert kept["predictions"] == v1["predictions"]
