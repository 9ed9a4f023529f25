"""What only the Cloud Storage store promises: explicit endpoint, clear errors."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from common.backends.gcs_artifacts import GCSArtifactStore
from common.core.config import Settings
from common.core.errors import UnavailableError
from tests.support.services import FakeGCS, closed_port, create_bucket, gcs_settings

pytestmark = pytest.mark.gcs


def test_endpoint_setting_wins_over_the_environment(fake_gcs: FakeGCS) -> None:
    """A decoy STORAGE_EMULATOR_HOST pointing nowhere is ignored: the setting decides."""
    bucket = create_bucket(fake_gcs.url)
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{closed_port()}"
    store = GCSArtifactStore(gcs_settings(fake_gcs.url, bucket))
    info = store.put("k", b"bytes")
    assert info.uri == f"gs://{bucket}/k"
    assert store.get("k") == b"bytes"


def test_missing_bucket_is_unavailable(fake_gcs: FakeGCS) -> None:
    store = GCSArtifactStore(gcs_settings(fake_gcs.url, "no-such-bucket"))
    with pytest.raises(UnavailableError, match="no-such-bucket"):
        store.put("k", b"x")
    assert not store.exists("k")


def test_unreachable_endpoint_fails_fast_as_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = GCSArtifactStore(gcs_settings(endpoint, "bucket", IPO_BACKEND_TIMEOUT_S="1"))
    for call in (lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: store.exists("k")):
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="Cloud Storage unavailable"):
            call()
        assert time.monotonic() - started < 5


def test_bucket_is_required() -> None:
    with pytest.raises(ValueError, match="IPO_ARTIFACT_BUCKET"):
        GCSArtifactStore(Settings.from_environ({}))


def test_sha256_is_read_from_the_object_metadata_put_wrote(fake_gcs: FakeGCS) -> None:
    """The hash comes from the metadata written with the bytes, without a download; an
    object stored without it (before the store wrote it) is downloaded and hashed."""
    store = GCSArtifactStore(gcs_settings(fake_gcs.url, create_bucket(fake_gcs.url)))
    store.put("models/m/a", b"stored by the store")
    blob = store._get_bucket().get_blob("models/m/a")
    assert blob is not None
    assert blob.metadata == {"sha256": hashlib.sha256(b"stored by the store").hexdigest()}
    blob.metadata = {"sha256": "recorded"}
    blob.patch()
    assert store.sha256("models/m/a") == "recorded"
    store._get_bucket().blob("models/m/b").upload_from_string(b"stored without metadata")
    assert store.sha256("models/m/b") == hashlib.sha256(b"stored without metadata").hexdigest()
