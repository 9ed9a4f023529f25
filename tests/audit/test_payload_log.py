"""The payload log's parts: the sampling decision, field names, redaction, settings."""

from __future__ import annotations

import pytest

from common.audit.payload_log import (
    MODELS_KEPT,
    PayloadLog,
    PayloadLogChange,
    input_fields,
    model_input_fields,
    redacted,
    sampled,
)
from common.core.errors import InvalidValuesError, PreconditionFailedError
from common.models import runtime_class
from tests.support.fixtures import Stack


def test_sampling_is_per_request_id_keyed_and_near_its_rate() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    kept = [i for i in ids if sampled(b"k" * 32, i, 0.1)]
    assert 1800 < len(kept) < 2200
    assert kept == [i for i in ids if sampled(b"k" * 32, i, 0.1)]  # same id, same answer
    other_key = [i for i in ids if sampled(b"q" * 32, i, 0.1)]
    assert len(set(kept) & set(other_key)) < 400  # another key picks other requests
    # a request kept at a rate is kept at every higher rate: raising it only adds requests
    assert set(kept) <= {i for i in ids if sampled(b"k" * 32, i, 0.3)}
    assert not any(sampled(b"k" * 32, i, 0.0) for i in ids[:100])
    assert all(sampled(b"k" * 32, i, 1.0) for i in ids[:100])


def test_input_fields_are_dotted_and_reach_nested_components() -> None:
    risk = input_fields(runtime_class("risk").input_schema())
    assert {"sector", "debt_to_equity"} <= risk
    ensemble = model_input_fields("ensemble")
    assert {"dcf", "risk"} <= ensemble
    assert any(name.startswith("dcf.") for name in ensemble)


def test_redaction_drops_top_level_and_nested_fields_and_keeps_the_rest() -> None:
    instance = {"a": 1, "b": {"c": 2, "d": 3}, "e": 4}
    assert redacted(instance, ["a", "b.c", "missing", "e.x"]) == {"b": {"d": 3}, "e": 4}
    assert instance == {"a": 1, "b": {"c": 2, "d": 3}, "e": 4}  # the request is untouched


def test_a_change_names_only_input_fields_and_respects_its_generation(stack: Stack) -> None:
    log = stack.services.payload_log
    known = input_fields(runtime_class("risk").input_schema())
    with pytest.raises(InvalidValuesError) as caught:
        log.change(
            "risk",
            PayloadLogChange(enabled=True, sampling_rate=0.5, redact_fields=["sector", "ssn"]),
            actor="a",
            known_fields=known,
        )
    assert [d["path"] for d in caught.value.details] == [["redact_fields", 1]]
    first = log.change(
        "risk",
        PayloadLogChange(enabled=True, sampling_rate=0.5, reason="audit sample"),
        actor="ops-1",
        known_fields=known,
    )
    assert first["settings"]["generation"] == 1
    assert first["change"]["from"]["enabled"] is False
    assert first["change"]["to"]["sampling_rate"] == 0.5
    with pytest.raises(PreconditionFailedError):
        log.change(
            "risk",
            PayloadLogChange(enabled=False, sampling_rate=0.0, expected_generation=0),
            actor="a",
            known_fields=known,
        )
    assert [c["actor"] for c in log.history("risk")] == ["ops-1"]
    assert log.settings_for("risk").sampling_rate == 0.5


def test_settings_kept_in_memory_are_bounded_and_expire(stack: Stack) -> None:
    services = stack.services
    now = [0.0]
    log = PayloadLog(
        services.backends.documents,
        services.cipher,
        lambda: b"k" * 32,
        ttl_s=10.0,
        clock=lambda: now[0],
    )
    for i in range(MODELS_KEPT + 50):
        assert log.settings_for(f"model-{i}").enabled is False
        assert len(log._cached) <= MODELS_KEPT
    now[0] += 10.0
    log.settings_for("model-0")
    assert len(log._cached) == 1  # the others expired with the TTL
