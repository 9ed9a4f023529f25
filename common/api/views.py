"""What the API shows of registry records.

Golden sets, drift baselines and storage locations stay in the registry for verification,
monitoring and loading; they are not part of an API answer.
"""

from __future__ import annotations

from typing import Any

from common.promotion.gate import spec_for
from common.registry.records import ModelRecord, ModelVersion

EVIDENCE = {"golden_set", "drift_baseline", "artifact_key", "artifact_uri"}
SUMMARY_OMITS = {
    "input_schema",
    "example",
    "explanation_baseline",
    "model_card",
    "reports",
    *EVIDENCE,
}


def model_view(model: ModelRecord) -> dict[str, Any]:
    """The gate shown is the one promotion applies: the model's own criteria, else the
    defaults for its kind (the record keeps ``{}`` for those)."""
    gate = spec_for(model.kind, model.gate).model_dump(mode="json")
    return {**model.model_dump(mode="json"), "gate": gate}


def version_view(record: ModelVersion, *, full: bool = True) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=EVIDENCE if full else SUMMARY_OMITS)
