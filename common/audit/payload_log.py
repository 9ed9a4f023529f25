"""The payload log: a sample of predictions kept with their inputs and outputs.

Per model, ``{enabled, sampling_rate, redact_fields}`` says what is kept; a change is
recorded like a deployment (who, when, from what to what, why) and takes effect on each
instance within ``snapshot_ttl_s``. Whether a request is kept is decided by a keyed hash
of its request id, so every record made under one request id (its prediction here, and
what later joins it by that id) is kept or dropped together, and a caller who does not
hold the key cannot pick ids that escape or flood the sample.

A kept prediction is written by the audit trail in the transaction that stores the
request's audit entry, before the answer (``common.audit.trail``): no extra round trip
and nothing written after the response. Its document id is the audit entry's id. The
inputs and outputs are sealed (envelope-encrypted, bound to the record) as the audit
trail seals a prediction's bodies, with the model's ``redact_fields`` dropped first;
the rest (who, when, which version, variant, latency, cache) is plain, for queries.
Retention and erasure delete kept predictions (``common.audit.retention``).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from cachetools import TTLCache
from pydantic import Field

from common.backends.base import DocumentStore, Filter, Order, Transaction
from common.core.errors import InvalidValuesError, NotFoundError, PreconditionFailedError
from common.core.validation import StrictModel
from common.models import kinds, runtime_class
from common.registry.records import utcnow
from common.security.crypto import EnvelopeCipher

PREDICTION_LOG = "prediction_log"
SETTINGS = "payload_log_settings"
CHANGES = "payload_log_changes"
MAX_REDACT_FIELDS = 100
HISTORY_LIMIT = 50
MODELS_KEPT = 1024
"""Models whose settings one instance keeps in memory (each for the snapshot TTL)."""


FieldName = Annotated[str, Field(min_length=1, max_length=200)]


class PayloadLogSettings(StrictModel):
    enabled: bool = False
    sampling_rate: float = Field(0.0, ge=0.0, le=1.0)
    redact_fields: list[FieldName] = Field(
        default_factory=list,
        max_length=MAX_REDACT_FIELDS,
        description="Input fields never kept, by dotted name (``dcf.wacc`` in an ensemble).",
    )


class PayloadLogChange(StrictModel):
    """The body of ``PUT /v1/models/{model_id}/payload-log``."""

    enabled: bool
    sampling_rate: float = Field(ge=0.0, le=1.0)
    redact_fields: list[FieldName] = Field(default_factory=list, max_length=MAX_REDACT_FIELDS)
    reason: str = Field("", max_length=500)
    expected_generation: int | None = Field(None, ge=0)


def sampled(key: bytes, request_id: str, rate: float) -> bool:
    """True for a share ``rate`` of request ids, the same answer for the same id."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hmac.new(key, request_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def input_fields(schema: Mapping[str, Any]) -> set[str]:
    """Every input field of a JSON schema by dotted name, nested objects included."""
    defs = schema.get("$defs", {})
    found: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node = defs.get(ref.rsplit("/", 1)[1], {})
        for branch in node.get("anyOf", []):
            walk(branch, prefix, depth)
        for name, child in node.get("properties", {}).items():
            dotted = f"{prefix}{name}"
            found.add(dotted)
            if depth < 4 and isinstance(child, Mapping):
                walk(child, dotted + ".", depth + 1)

    walk(schema, "", 0)
    return found


def model_input_fields(kind: str) -> set[str]:
    """A model kind's input fields by dotted name; a composite's component inputs (an
    ensemble's ``dcf``) are named through to their own fields (``dcf.wacc``)."""
    fields = input_fields(runtime_class(kind).input_schema())
    for name in list(fields):
        if "." not in name and name in kinds() and name != kind:
            fields |= {
                f"{name}.{inner}" for inner in input_fields(runtime_class(name).input_schema())
            }
    return fields


def output_echoes(kind: str, fields: list[str]) -> list[str]:
    """The prediction fields of ``kind`` that repeat one of the redacted input ``fields``."""
    echoes = runtime_class(kind).input_echoes
    return sorted({path for name in fields for path in echoes.get(name, ())})


def redacted(instance: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    """A copy of ``instance`` without the dotted ``fields``."""
    out = dict(instance)
    for dotted in fields:
        head, _, rest = dotted.partition(".")
        if head not in out:
            continue
        if not rest:
            del out[head]
        elif isinstance(out[head], Mapping):
            out[head] = redacted(out[head], [rest])
    return out


@dataclass(frozen=True)
class KeptPrediction:
    """What the audit trail stores beside a request's entry: plain metadata, and the
    inputs and outputs to seal."""

    metadata: dict[str, Any]
    payload: dict[str, Any]

    def document(self, entry_id: str, cipher: EnvelopeCipher) -> dict[str, Any]:
        sealed = cipher.seal(record_id(entry_id), self.payload)
        return {**self.metadata, "audit_entry": entry_id, **sealed}


def record_id(entry_id: str) -> str:
    """What a kept prediction's sealed fields are bound to: not the audit entry's own
    record, so neither can be passed off as the other."""
    return f"prediction-log:{entry_id}"


class PayloadLog:
    """Settings per model (cached for ``ttl_s``), the sampling decision, and reads."""

    def __init__(
        self,
        documents: DocumentStore,
        cipher: EnvelopeCipher,
        sampling_key: Callable[[], bytes],
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._documents = documents
        self._cipher = cipher
        self._sampling_key = sampling_key
        self._ttl_s = ttl_s
        self._clock = clock
        # per model, and at most MODELS_KEPT: entries of deleted models expire, not stay
        self._cached: TTLCache[str, PayloadLogSettings] = TTLCache(
            MODELS_KEPT, ttl=ttl_s if ttl_s > 0 else 1.0, timer=clock
        )
        self._lock = threading.Lock()

    # --- settings ----------------------------------------------------------------------
    def settings_for(self, model_id: str) -> PayloadLogSettings:
        with self._lock:
            cached = self._cached.get(model_id)
        if cached is not None:
            return cached
        doc = self._documents.get(SETTINGS, model_id)
        settings = PayloadLogSettings.model_validate(
            {
                k: v
                for k, v in (doc.data if doc else {}).items()
                if k in PayloadLogSettings.model_fields
            }
        )
        if self._ttl_s > 0:
            with self._lock:
                self._cached[model_id] = settings
        return settings

    def state(self, model_id: str) -> dict[str, Any]:
        """The settings as stored (defaults when never set), with their generation."""
        doc = self._documents.get(SETTINGS, model_id)
        data = doc.data if doc else {}
        settings = PayloadLogSettings.model_validate(
            {k: v for k, v in data.items() if k in PayloadLogSettings.model_fields}
        )
        return {
            "model_id": model_id,
            **settings.model_dump(),
            "generation": data.get("generation", 0),
            "updated_at": data.get("updated_at"),
            "updated_by": data.get("updated_by"),
        }

    def change(
        self,
        model_id: str,
        change: PayloadLogChange,
        *,
        actor: str,
        known_fields: set[str],
    ) -> dict[str, Any]:
        """Store new settings and the record of the change, in one transaction."""
        unknown = [f for f in change.redact_fields if f not in known_fields]
        if unknown:
            raise InvalidValuesError(
                f"redact_fields names no input field of {model_id}: {', '.join(unknown)}",
                details=[
                    {
                        "field": "redact_fields",
                        "path": ["redact_fields", change.redact_fields.index(name)],
                        "rule": "input_field",
                        "message": f"{name!r} is not an input field of {model_id}",
                    }
                    for name in unknown
                ],
            )
        new = PayloadLogSettings(
            enabled=change.enabled,
            sampling_rate=change.sampling_rate,
            redact_fields=sorted(set(change.redact_fields)),
        )
        now = utcnow()

        def write(tx: Transaction) -> dict[str, Any]:
            doc = tx.get(SETTINGS, model_id)
            before = doc.data if doc else {}
            generation = int(before.get("generation", 0))
            if change.expected_generation is not None and change.expected_generation != generation:
                raise PreconditionFailedError(
                    f"the payload log settings of {model_id} are at generation {generation}, "
                    f"not {change.expected_generation}"
                )
            old = PayloadLogSettings.model_validate(
                {k: v for k, v in before.items() if k in PayloadLogSettings.model_fields}
            )
            stored = {
                "model_id": model_id,
                **new.model_dump(),
                "generation": generation + 1,
                "updated_at": now,
                "updated_by": actor,
            }
            tx.set(SETTINGS, model_id, stored)
            change_id = uuid.uuid4().hex
            record = {
                "change_id": change_id,
                "model_id": model_id,
                "actor": actor,
                "created_at": now,
                "from": old.model_dump(),
                "to": new.model_dump(),
                "generation": generation + 1,
                "reason": change.reason,
            }
            tx.create(CHANGES, change_id, record)
            return {"settings": stored, "change": record}

        result: dict[str, Any] = self._documents.transaction(write)
        with self._lock:
            self._cached.pop(model_id, None)
        return result

    def history(self, model_id: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        docs = self._documents.query(
            CHANGES,
            [Filter("model_id", "==", model_id)],
            [Order("created_at", descending=True)],
            limit,
        )
        return [d.data for d in docs]

    # --- keeping -----------------------------------------------------------------------
    def keep(
        self,
        *,
        model_id: str,
        request_id: str,
        operation: str,
        principal: str | None,
        instances: list[dict[str, Any]],
        parameters: Mapping[str, Any],
        answer: Mapping[str, Any],
        kind: str,
        latency_ms: float,
        cache: str | None,
        time_now: str,
    ) -> KeptPrediction | None:
        """The record to keep for one answered prediction, or None when the model's
        settings do not sample it. A redacted input goes from the instances and from the
        predictions that repeat it (``kind``'s ``input_echoes``)."""
        settings = self.settings_for(model_id)
        if not settings.enabled or not sampled(
            self._sampling_key(), request_id, settings.sampling_rate
        ):
            return None
        kept = [redacted(i, settings.redact_fields) for i in instances]
        echoes = output_echoes(kind, settings.redact_fields)
        predictions = answer.get("predictions")
        if echoes and isinstance(predictions, list):
            predictions = [redacted(p, echoes) if isinstance(p, dict) else p for p in predictions]
        return KeptPrediction(
            metadata={
                "request_id": request_id,
                "time": time_now,
                "operation": operation,
                "model_id": model_id,
                "model_version": answer.get("model_version"),
                "variant": answer.get("variant"),
                "experiment_id": answer.get("experiment_id"),
                "principal": principal,
                "latency_ms": round(latency_ms, 3),
                "cache": cache,
                "cache_hit": cache in ("l1", "l2"),
                "instances": len(kept),
                "redacted_fields": settings.redact_fields,
                "redacted_outputs": echoes,
            },
            payload={
                "financial_data": {"instances": kept, "parameters": dict(parameters)},
                "proprietary_metrics": {"predictions": predictions},
            },
        )

    # --- reading -----------------------------------------------------------------------
    def get(self, request_id: str, principal: str | None = None) -> dict[str, Any]:
        """The kept prediction of a request id, opened; the latest if the id was reused.
        With ``principal``, only what that principal asked: another caller who reuses
        someone's request id must not hide their prediction from them."""
        docs = self._documents.query(PREDICTION_LOG, [Filter("request_id", "==", request_id)])
        if principal is not None:
            docs = [d for d in docs if d.data.get("principal") == principal]
        if not docs:
            raise NotFoundError(f"no prediction with request id {request_id!r} is kept")
        doc = max(docs, key=lambda d: (str(d.data.get("time", "")), d.id))
        inputs, predictions = self.open(doc.id, doc.data)
        plain = {k: v for k, v in doc.data.items() if not isinstance(v, dict)}
        return {
            **plain,
            "instances": inputs.get("instances", []),
            "parameters": inputs.get("parameters", {}),
            "predictions": predictions,
        }

    # --- replaying ---------------------------------------------------------------------
    def sampled(self, request_id: str, rate: float) -> bool:
        """The same keyed decision as keeping: a shadow's share of the kept predictions."""
        return sampled(self._sampling_key(), request_id, rate)

    def since(
        self, model_id: str, after: tuple[str, str], limit: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """A model's kept predictions after ``(time, id)``, oldest first, still sealed."""
        docs = self._documents.query(
            PREDICTION_LOG,
            [Filter("model_id", "==", model_id), Filter("time", ">=", after[0])],
            [Order("time")],
            limit + 50,  # records at the checkpoint's own time come back again
        )
        later = [(d.id, d.data) for d in docs if (str(d.data.get("time")), d.id) > after]
        later.sort(key=lambda item: (str(item[1].get("time")), item[0]))
        return later[:limit]

    def open(self, doc_id: str, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        """A kept prediction's inputs (instances, parameters) and its predictions."""
        opened = self._cipher.open(record_id(doc_id), data)
        inputs = opened.get("financial_data") or {}
        outputs = opened.get("proprietary_metrics") or {}
        return dict(inputs), list(outputs.get("predictions") or [])
