"""The batch engine on the cloud backends: Firestore (emulator) and Cloud Storage
(fake-gcs-server), with a killed worker and two racing ones."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from common.batch.jobs import BatchJobs
from common.batch.leases import Leases
from common.batch.runner import Runner
from tests.batch.conftest import SUBMITTER, companies, put_input, read_outputs, submit
from tests.support.fixtures import embedded_stack, register_risk
from tests.support.services import FakeGCS, FirestoreEmulator, create_bucket

pytestmark = [pytest.mark.firestore, pytest.mark.gcs]


def test_workers_share_a_job_exactly_once_on_firestore_and_cloud_storage(
    tmp_path: Path, firestore_emulator: FirestoreEmulator, fake_gcs: FakeGCS
) -> None:
    stack = embedded_stack(
        tmp_path,
        IPO_DOCUMENT_STORE="firestore",
        IPO_GCP_PROJECT=f"test-{uuid.uuid4().hex[:12]}",
        IPO_FIRESTORE_EMULATOR_HOST=firestore_emulator.host,
        IPO_ARTIFACT_STORE="gcs",
        IPO_ARTIFACT_BUCKET=create_bucket(fake_gcs.url),
        IPO_GCS_ENDPOINT=fake_gcs.url,
        IPO_BATCH_SHARD_ROWS="4",
        IPO_BATCH_SUBMIT_BUDGET_S="0",
    )
    try:
        register_risk(stack.lifecycle)
        artifacts = stack.services.backends.artifacts
        put_input(artifacts, "batch/cloud/in/a.jsonl", companies(14))
        put_input(artifacts, "batch/cloud/in/b.jsonl", companies(10, start=14))
        job = submit(
            stack,
            input_uri=f"{artifacts.uri('batch/cloud/in')}/",
            output_prefix="batch/cloud/out/",
            key_field="ticker",
        )
        assert (job["shards_total"], job["input_uri"]) == (7, "batch/cloud/in/")
        dead = Runner(stack.services, owner="dead")
        lease = dead.leases.claim(job["job_id"], "dead")
        assert lease is not None
        assert dead.process(lease) is not None  # outputs stored, then killed before commit

        lease_s = stack.settings.batch_lease_s
        later = Leases(
            stack.services.backends.documents,
            lease_s=lease_s,
            clock=lambda: time.time() + lease_s + 1,
        )
        got: list[tuple[int, int]] = []

        def work(name: str) -> None:
            got.append(Runner(stack.services, owner=name, leases=later).work(job["job_id"], 60))

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sum(shards for shards, _ in got) == 7

        done = BatchJobs(stack.services).get(job["job_id"], SUBMITTER)
        assert (done["state"], done["rows_done"], done["predicted"]) == ("succeeded", 24, 24)
        lines = read_outputs(artifacts, "batch/cloud/out/", "predictions")
        assert Counter(line["key"] for line in lines) == Counter(f"T{i:05d}" for i in range(24))
        assert done["output_uri"].startswith("gs://")
    finally:
        stack.services.close()
