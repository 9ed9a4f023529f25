"""A redacted input is kept nowhere: not in the instances, and not in a prediction field
that repeats it (``common/models/input_echoes.py``), for every served model's example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.api.routes import served_models
from common.audit.payload_log import PayloadLog, PayloadLogChange, model_input_fields
from common.backends.sqlite_store import SQLiteDocumentStore
from common.registry.records import utcnow
from common.serving.pipeline import PREDICT_REQUEST
from tests.support.fixtures import Stack


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    elif not isinstance(value, bool) and value is not None:
        yield path, value


def kept_predictions(
    stack: Stack, model_id: str, tmp_path: Path, redact: bool | list[str]
) -> tuple[dict[str, Any], list[Any]]:
    """The production version's example, and the predictions the payload log keeps for
    it with every input field redacted (True), none (False) or those listed."""
    record = stack.registry.get_version(
        model_id, stack.registry.get_model(model_id).production_version or ""
    )
    request = PREDICT_REQUEST.validate_python({"instances": [record.example]})
    served = stack.services.predictor.serve(model_id, request)
    store = SQLiteDocumentStore(tmp_path / f"{model_id}.sqlite3", timeout_s=5)
    log = PayloadLog(store, stack.services.cipher, lambda: b"k" * 32, ttl_s=0)
    if isinstance(redact, list):
        fields = redact
    else:
        fields = sorted(model_input_fields(record.kind)) if redact else []
    change = PayloadLogChange(enabled=True, sampling_rate=1.0, redact_fields=fields)
    log.change(model_id, change, actor="ops-1", known_fields=set(fields))
    kept = log.keep(
        model_id=model_id,
        request_id="req-1",
        operation="predict",
        principal="analyst-1",
        instances=[record.example],
        parameters={},
        answer=served.body("req-1"),
        kind=record.kind,
        latency_ms=1.0,
        cache=None,
        time_now=utcnow(),
    )
    store.close()
    assert kept is not None
    if not isinstance(redact, list):
        assert kept.payload["financial_data"]["instances"] == ([{}] if redact else [record.example])
    predictions: list[Any] = kept.payload["proprietary_metrics"]["predictions"]
    return record.example, predictions


@pytest.mark.parametrize("model_id", served_models())
def test_no_kept_prediction_field_repeats_a_redacted_input(
    installed: Stack, model_id: str, tmp_path: Path
) -> None:
    example, kept = kept_predictions(installed, model_id, tmp_path, redact=True)
    inputs = {value for _, value in leaves(example)}
    assert kept, "the predictions themselves are kept"
    repeated = [(path, value) for path, value in leaves(kept) if value in inputs]
    assert repeated == [], f"{model_id} keeps redacted inputs in {repeated}"
    if model_id in ("dcf", "cca"):  # these answers do repeat inputs when nothing is redacted
        _, whole = kept_predictions(installed, model_id, tmp_path / "whole", redact=False)
        assert [path for path, value in leaves(whole) if value in inputs]


@pytest.mark.parametrize(
    ("field", "gone"),
    [
        ("wacc", {"discount_rate", "sensitivity", "projection.discount_factor"}),
        ("terminal_growth", {"terminal_growth", "sensitivity", "projection.growth"}),
        ("revenue_musd", {"projection"}),
    ],
)
def test_a_dcf_input_takes_the_paths_worked_out_from_it(
    installed: Stack, tmp_path: Path, field: str, gone: set[str]
) -> None:
    """A value follows by plain arithmetic from these (the rate from two discount factors,
    the terminal growth from the growth path and its fade), so they go with it; the
    valuation itself stays."""
    _, (kept,) = kept_predictions(installed, "dcf", tmp_path, [field])
    shown = {path for path, _ in leaves(kept)}
    for path in gone:
        assert not any(p == path or p.startswith((f"{path}.", f"{path}[")) for p in shown), path
    assert {"value_per_share", "enterprise_value_musd"} <= shown
