"""What the API shows of registry records.

Golden sets, drift baselines and storage locations stay in the registry for verification,
monitoring and loading; they are not part of an API answer.
"""

from __future__ import annotations

from typing import Any

from common.registry.records import ModelRecord, ModelVersion

EVIDENCE = {"golden_set", "drift_baseline", "artifact_key", "artifact_uri"}
SUMMARY_OMITS = {"input_schema", "example", "model_card", "reports", *EVIDENCE}


def model_view(model: ModelRecord) -> dict[str, Any]:
    return model.model_dump(mode="json")


def version_view(record: ModelVersion, *, full: bool = True) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=EVIDENCE if full else SUMMARY_OMITS)
