"""The prediction cache in the serving path, the request counts, and the warm_cache job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from common.services import reset_services, use_services
from common.serving.hot_keys import COLLECTION
from tests.conftest import function_client
from tests.support.fixtures import Stack, embedded_stack, register_risk
from tests.support.services import RedisServer

URL = "/v1/predict/risk"


def rows(stack: Stack, n: int) -> list[dict[str, Any]]:
    example = dict(stack.registry.get_version("risk", "1.0.0").example)
    field = next(k for k, v in example.items() if isinstance(v, float) and v)
    return [{**example, field: example[field] * (1 + i / 1000)} for i in range(n)]


def predict(client: FlaskClient, stack: Stack, instances: list[dict[str, Any]]) -> Any:
    response = client.post(URL, json={"instances": instances}, headers=stack.headers())
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["predictions"]


def misses(stack: Stack) -> int:
    assert stack.services.cache is not None
    return int(stack.services.cache.stats()["misses"])


def test_a_repeated_row_is_served_from_the_cache(stack: Stack) -> None:
    client = function_client("predict_risk")
    first = predict(client, stack, rows(stack, 1))
    before = misses(stack)
    assert predict(client, stack, rows(stack, 1)) == first
    assert misses(stack) == before
    assert stack.services.cache is not None
    assert stack.services.cache.stats()["l1_hits"] >= 1


def test_a_batch_computes_only_its_new_rows(stack: Stack) -> None:
    client = function_client("predict_risk")
    batch = rows(stack, 5)
    predict(client, stack, batch[:3])
    before = misses(stack)
    together = predict(client, stack, batch)
    assert misses(stack) == before + 2
    uncached = embedded_stack(
        stack.settings.data_dir.parent / "uncached", IPO_CACHE_ENABLED="false"
    )
    register_risk(uncached.lifecycle)
    use_services(uncached.services, close_previous=False)
    try:
        assert predict(function_client("predict_risk"), uncached, batch) == together
    finally:
        use_services(stack.services, close_previous=False)
        uncached.services.close()


def test_a_new_version_is_not_served_old_entries(stack: Stack) -> None:
    client = function_client("predict_risk")
    predict(client, stack, rows(stack, 2))
    register_risk(stack.lifecycle, "1.0.1")
    stack.services.snapshots.invalidate("risk")
    before = misses(stack)
    predict(client, stack, rows(stack, 2))
    assert misses(stack) == before + 2


def test_rollback_purges_the_models_entries(stack: Stack) -> None:
    client = function_client("predict_risk")
    register_risk(stack.lifecycle, "1.0.1")
    stack.services.snapshots.invalidate("risk")
    predict(client, stack, rows(stack, 3))
    response = function_client("rollback_model").post(
        "/v1/models/risk/rollback", json={}, headers=stack.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert stack.services.cache is not None
    assert stack.services.cache.stats()["l1_entries"] == 0


def test_counts_are_saved_sealed_and_ranked(stack: Stack) -> None:
    client = function_client("predict_risk")
    batch = rows(stack, 3)
    for _ in range(3):
        predict(client, stack, batch[:1])
    predict(client, stack, batch)
    stack.services.hot_keys.flush()
    stored = stack.services.backends.documents.get(COLLECTION, "risk")
    assert stored is not None
    assert str(batch[0]["sector"]) not in json.dumps(stored.data["financial_data"])
    top = stack.services.hot_keys.top("risk", 10)
    assert [row.count for row in top] == [4, 1, 1]
    assert top[0].instance == batch[0]


def warm(stack: Stack, **body: Any) -> dict[str, Any]:
    response = function_client("warm_cache").post(
        "/v1/jobs/warm-cache", json=body, headers=stack.headers(("job:warm-cache:run",))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    return result


def test_warm_cache_warms_the_most_requested_rows(stack: Stack) -> None:
    client = function_client("predict_risk")
    batch = rows(stack, 4)
    for _ in range(2):
        predict(client, stack, batch[:2])
    predict(client, stack, batch)
    assert stack.services.cache is not None
    stack.services.cache.purge_model("risk")
    result = warm(stack, max_rows_per_model=2)
    assert result["status"] == "done"
    assert result["models"]["risk"] == {
        "rows": 2,
        "computed": 2,
        "cached": 0,
        "invalid": 0,
        "versions": ["1.0.0"],
    }
    before = misses(stack)
    predict(client, stack, batch[:2])
    assert misses(stack) == before
    again = warm(stack)["models"]["risk"]  # all four rows now: two warm, two not
    assert (again["rows"], again["cached"], again["computed"]) == (4, 2, 2)


def test_warm_cache_stops_at_its_time_budget(stack: Stack) -> None:
    predict(function_client("predict_risk"), stack, rows(stack, 1))
    result = warm(stack, time_budget_s=0.000001)
    assert result["status"] == "partial"
    assert result["models"]["risk"]["skipped"] == "time budget spent"


def test_warm_cache_needs_its_job_permission(stack: Stack) -> None:
    response = function_client("warm_cache").post(
        "/v1/jobs/warm-cache", json={}, headers=stack.headers(("model:*:predict",))
    )
    assert response.status_code == 403


@pytest.fixture
def shared(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Stack]]:
    """Three instances of one deployment: one store, one Redis, three L1s."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    stacks = [embedded_stack(tmp_path, IPO_REDIS_URL=redis_server.url) for _ in range(3)]
    register_risk(stacks[0].lifecycle)
    try:
        yield stacks
    finally:
        reset_services()
        for stack in stacks:
            stack.services.close()


def test_warming_in_one_instance_serves_another_from_redis(shared: list[Stack]) -> None:
    serving, job, fresh = shared
    use_services(serving.services, close_previous=False)
    predict(function_client("predict_risk"), serving, rows(serving, 3))
    serving.services.hot_keys.flush()
    assert serving.services.cache is not None
    serving.services.cache.purge_model("risk")  # L1 here and L2: only the counts remain
    use_services(job.services, close_previous=False)
    assert warm(job)["models"]["risk"]["computed"] == 3
    use_services(fresh.services, close_previous=False)
    predict(function_client("predict_risk"), fresh, rows(fresh, 3))
    assert fresh.services.cache is not None
    stats = fresh.services.cache.stats()
    assert (stats["l2_hits"], stats["misses"]) == (3, 0)


def test_a_failed_save_keeps_every_models_counts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.core.errors import UnavailableError

    hot = stack.services.hot_keys
    hot.record("risk", ["ipo:c1:risk:1.0.0:aa"], [{"x": 1}], {})
    hot.record("dcf", ["ipo:c1:dcf:1.0.0:bb"], [{"x": 2}], {})
    documents = stack.services.backends.documents
    real = documents.transaction

    def down(fn: Any, **kw: Any) -> Any:
        raise UnavailableError("store down")

    monkeypatch.setattr(documents, "transaction", down)
    with pytest.raises(UnavailableError):
        hot.flush()
    hot.record("risk", ["ipo:c1:risk:1.0.0:aa"], [{"x": 1}], {})  # counted meanwhile
    monkeypatch.setattr(documents, "transaction", real)
    hot.flush()
    assert [(r.row_id, r.count) for r in hot.top("risk", 5)] == [("aa", 2)]
    assert [(r.row_id, r.count) for r in hot.top("dcf", 5)] == [("bb", 1)]


def test_the_request_that_finds_the_minute_up_merges_counts_and_drift_before_answering(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.monitoring.windows import COLLECTION as WINDOWS

    client = function_client("predict_risk")
    batch = rows(stack, 2)
    predict(client, stack, batch)
    documents = stack.services.backends.documents
    assert documents.get(COLLECTION, "risk") is None  # within the minute: memory only
    assert stack.services.hot_keys.unsaved() == 2
    assert stack.services.drift_sampler.unsaved() == 2
    monkeypatch.setattr(stack.services.hot_keys._interval, "every_s", 0.0)
    monkeypatch.setattr(stack.services.drift_sampler._interval, "every_s", 0.0)
    predict(client, stack, batch[:1])
    # stored by the time the answer arrived: no thread is left to write after it
    assert stack.services.hot_keys.top("risk", 1)[0].count == 2
    assert sum(d.data["served"] for d in documents.query(WINDOWS)) == 3
    assert stack.services.hot_keys.unsaved() == 0
    assert stack.services.drift_sampler.unsaved() == 0


def test_shutdown_writes_what_memory_holds_and_says_what_it_could_not(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from common.core.errors import UnavailableError

    client = function_client("predict_risk")
    predict(client, stack, rows(stack, 3))
    documents = stack.services.backends.documents
    real = documents.transaction

    def down(fn: Any, **kw: Any) -> Any:
        raise UnavailableError("store down")

    monkeypatch.setattr(documents, "transaction", down)
    with caplog.at_level("INFO", logger="ipo.services"):
        account = stack.services.shutdown(budget_s=5.0)
    assert account["request_counts_not_written"] == 3
    assert account["drift_rows_not_written"] == 3
    assert account["audit_entries_committed"] == 1
    assert account["audit_requests_refused"] == 0
    line = next(r for r in caplog.records if r.getMessage().startswith("instance stopping"))
    assert line.levelname == "WARNING"
    assert "3 request counts and 3 drift rows not written" in line.getMessage()
    monkeypatch.setattr(documents, "transaction", real)
    account = stack.services.shutdown(budget_s=5.0)
    assert (account["request_counts_not_written"], account["drift_rows_not_written"]) == (0, 0)
