"""The local gateway's /metrics page: requests, latency and cache levels, in Prometheus text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.fixtures import Stack
from tools.gateway import create_app


def samples(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_requests_and_cache_levels(stack: Stack) -> None:
    client = create_app().test_client()
    example = stack.registry.get_version("risk", "1.0.0").example
    body = {"instances": [example]}
    before = samples(client.get("/metrics").get_data(as_text=True))
    for _ in range(3):
        assert (
            client.post("/v1/predict/risk", json=body, headers=stack.headers()).status_code == 200
        )
    assert client.get("/v1/models", headers={}).status_code == 401
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.content_type.startswith("text/plain")
    after = samples(page.get_data(as_text=True))

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ok = {"function": "predict_risk", "operation": "predictRisk", "status": "200"}
    assert grew("ipo_requests_total", **ok) == 3
    assert (
        grew("ipo_requests_total", function="list_models", operation="listModels", status="401")
        == 1
    )
    assert grew("ipo_cache_rows_total", model_id="risk", level="miss") == 1
    assert grew("ipo_cache_rows_total", model_id="risk", level="l1") == 2
    latency = (
        "ipo_request_latency_seconds_count",
        (("function", "predict_risk"), ("operation", "predictRisk")),
    )
    assert after[latency] - before.get(latency, 0.0) == 3
    assert after[("ipo_cache_l1_entries", ())] >= 1
