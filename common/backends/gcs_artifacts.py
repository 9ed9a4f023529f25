"""Artifacts in a Cloud Storage bucket (or fake-gcs-server, for tests and laptops).

A put without ``overwrite`` is conditional on ``if_generation_match=0`` (the object must
not exist), so two racing writers cannot both win. The endpoint override is passed to the
client explicitly; nothing depends on ``STORAGE_EMULATOR_HOST`` in the environment.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud.storage import Bucket, Client
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from common.backends.base import (
    ArtifactInfo,
    ArtifactStore,
    check_artifact_key,
    check_artifact_prefix,
)
from common.core.config import Settings
from common.core.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)

SHA256_METADATA = "sha256"
"""Custom metadata key holding the SHA-256 of the object's bytes, written with them."""


class GCSArtifactStore(ArtifactStore):
    """The client is built on first use: authenticating costs start-up time."""

    def __init__(self, settings: Settings) -> None:
        if not settings.artifact_bucket:
            raise ValueError("IPO_ARTIFACT_BUCKET is required for the GCS artifact store")
        self._bucket_name = settings.artifact_bucket
        self._project = settings.gcp_project
        self._endpoint = settings.gcs_endpoint
        self._timeout_s = settings.backend_timeout_s
        # Storage's own predicate (5xx, 429, connection errors), bounded by our deadline.
        self._retry = DEFAULT_RETRY.with_timeout(settings.backend_timeout_s)
        self._bucket: Bucket | None = None
        self._lock = threading.Lock()

    def _get_bucket(self) -> Bucket:
        with self._lock:
            if self._bucket is None:
                try:
                    client = self._build_client()
                except GoogleAuthError as exc:
                    raise UnavailableError(f"Cloud Storage credentials: {exc}") from None
                self._bucket = client.bucket(self._bucket_name)
            return self._bucket

    def _build_client(self) -> Client:
        if not self._endpoint:
            return Client(project=self._project)
        return Client(
            project=self._project or "local",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]  # untyped upstream
            client_options={"api_endpoint": self._endpoint},
        )

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """Translate the client's exceptions; only ServiceError leaves this module."""
        try:
            yield
        except ServiceError:
            raise
        except DataCorruption:
            raise IntegrityError(f"{what}: checksum mismatch in transfer") from None
        except (
            gexc.GoogleAPICallError,
            gexc.RetryError,
            GoogleAuthError,
            requests.RequestException,
            ConnectionError,
        ) as exc:
            raise UnavailableError(
                f"Cloud Storage unavailable ({what}): {type(exc).__name__}: {exc}"
            ) from None

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactInfo:
        check_artifact_key(key)
        data = bytes(data)
        blob = self._get_bucket().blob(key)
        digest = hashlib.sha256(data).hexdigest()
        blob.metadata = {SHA256_METADATA: digest}  # so sha256() answers without a download
        condition: dict[str, Any] = {} if overwrite else {"if_generation_match": 0}
        with self._mapped(f"put gs://{self._bucket_name}/{key}"):
            try:
                blob.upload_from_string(
                    data,
                    content_type="application/octet-stream",
                    timeout=self._timeout_s,
                    retry=self._retry,
                    **condition,
                )
            except gexc.PreconditionFailed:
                raise ConflictError(f"artifact {key!r} already exists") from None
            except gexc.NotFound:
                raise UnavailableError(f"bucket {self._bucket_name!r} does not exist") from None
        return ArtifactInfo(key=key, uri=self.uri(key), sha256=digest, size=len(data))

    def get(self, key: str) -> bytes:
        check_artifact_key(key)
        blob = self._get_bucket().blob(key)
        with self._mapped(f"get gs://{self._bucket_name}/{key}"):
            try:
                data: bytes = blob.download_as_bytes(timeout=self._timeout_s, retry=self._retry)
            except gexc.NotFound:
                raise NotFoundError(f"artifact {key!r} does not exist") from None
        return data

    def sha256(self, key: str) -> str:
        """The hash recorded in the object's metadata when it was stored (one metadata
        read); an object stored without it is downloaded and hashed."""
        check_artifact_key(key)
        with self._mapped(f"stat gs://{self._bucket_name}/{key}"):
            blob = self._get_bucket().get_blob(key, timeout=self._timeout_s, retry=self._retry)
        if blob is None:
            raise NotFoundError(f"artifact {key!r} does not exist")
        recorded = (blob.metadata or {}).get(SHA256_METADATA)
        return str(recorded) if recorded else super().sha256(key)

    def exists(self, key: str) -> bool:
        check_artifact_key(key)
        blob = self._get_bucket().blob(key)
        with self._mapped(f"stat gs://{self._bucket_name}/{key}"):
            found: bool = blob.exists(timeout=self._timeout_s, retry=self._retry)
        return found

    def read_range(self, key: str, start: int, end: int) -> bytes:
        check_artifact_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range {start}..{end}")
        if end == start:
            if not self.exists(key):
                raise NotFoundError(f"artifact {key!r} does not exist")
            return b""
        blob = self._get_bucket().blob(key)
        with self._mapped(f"get gs://{self._bucket_name}/{key} bytes {start}..{end}"):
            try:
                data: bytes = blob.download_as_bytes(
                    start=start, end=end - 1, timeout=self._timeout_s, retry=self._retry
                )
            except gexc.NotFound:
                raise NotFoundError(f"artifact {key!r} does not exist") from None
            except gexc.RequestRangeNotSatisfiable:
                return b""  # the range starts past the object's end
        return data

    def list(self, prefix: str) -> list[ArtifactInfo]:
        check_artifact_prefix(prefix)
        bucket = self._get_bucket()
        with self._mapped(f"list gs://{self._bucket_name}/{prefix}"):
            blobs = list(
                bucket.client.list_blobs(
                    bucket, prefix=prefix or None, timeout=self._timeout_s, retry=self._retry
                )
            )
        found = [
            ArtifactInfo(key=b.name, uri=self.uri(b.name), sha256="", size=int(b.size or 0))
            for b in blobs
        ]
        return sorted(found, key=lambda a: a.key)

    def uri(self, key: str) -> str:
        return f"gs://{self._bucket_name}/{check_artifact_key(key)}"
