"""A batch job on the ensemble: its components fixed at submission, and each line's
prediction what POST /v1/predict/ensemble answers for it."""

from __future__ import annotations

import json

from common.batch.jobs import BatchJobs
from common.batch.runner import Runner
from common.batch.spec import BatchJobRequest
from common.security.auth import Principal
from common.serving.pipeline import PredictRequest
from tests.support.fixtures import Stack

ADMIN = Principal("batch-tester", frozenset({"admin"}))


def test_an_ensemble_job_records_its_components_and_predicts_as_the_api(
    full_stack: Stack,
) -> None:
    services = full_stack.services
    ensemble = services.registry.get_model("ensemble")
    example = services.registry.get_version("ensemble", str(ensemble.production_version)).example
    services.backends.artifacts.put(
        "batch/ensemble-test/in.jsonl", (json.dumps(example) + "\n").encode() * 3
    )
    request = BatchJobRequest(
        model="ensemble",
        stage="production",
        input_uri="batch/ensemble-test/in.jsonl",
        output_prefix="batch/ensemble-test/out/",
    )
    job = BatchJobs(services).submit(request, ADMIN)
    assert set(job["components"]) == set(
        services.pool.get(
            services.registry.get_version("ensemble", job["version"])
        ).runtime.components()
    )
    for component in job["components"].values():
        production = services.registry.get_model(component["model_id"]).production_version
        assert component["version"] == production
    Runner(services).work(job["job_id"], budget_s=120)

    done = BatchJobs(services).get(job["job_id"], ADMIN)
    assert (done["state"], done["predicted"], done["errors"]) == ("succeeded", 3, 0)
    lines = services.backends.artifacts.get("batch/ensemble-test/out/predictions-00000.jsonl")
    answered = services.predictor.predict(
        "ensemble", PredictRequest(instances=[example]), request_id="batch-compare"
    )["predictions"][0]
    for line in lines.splitlines():
        assert json.loads(line)["prediction"] == json.loads(json.dumps(answered))
