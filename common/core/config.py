"""Settings, read once from ``IPO_``-prefixed environment variables.

``Settings.from_environ(mapping)`` is the one constructor; tests pass their own mapping.
An ``IPO_`` variable that names no setting is an error, so a typo never silently falls
back to a default. Every default below is the embedded (laptop) default.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.core.permissions import parse as parse_permission

PREFIX = "IPO_"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
"""Both spellings Google writes in ``iss`` of the ID tokens it signs."""
EMAIL = re.compile(r"[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- where state lives -------------------------------------------------------------
    document_store: Literal["sqlite", "firestore"] = Field(
        "sqlite", description="Document store backend: embedded SQLite or Cloud Firestore."
    )
    artifact_store: Literal["local", "gcs"] = Field(
        "local", description="Artifact store backend: a local folder or Cloud Storage."
    )
    secret_source: Literal["env", "secret-manager"] = Field(
        "env", description="Secret source: environment / .env file, or Secret Manager."
    )
    data_dir: Path = Field(
        Path(".data"), description="Root of embedded state (SQLite file, artifact folder)."
    )
    sqlite_path: Path | None = Field(
        None, description="SQLite database file; default <data_dir>/ipo.sqlite3."
    )
    sqlite_checkpoints: Literal["background", "commit"] = Field(
        "background",
        description="Who copies SQLite's write-ahead log into the database: a thread of "
        "each process (background), or the commit that fills 1,000 pages, whose callers "
        "then wait for the copy (commit, SQLite's default).",
    )
    artifact_dir: Path | None = Field(
        None, description="Local artifact folder; default <data_dir>/artifacts."
    )
    env_file: Path | None = Field(
        Path(".env"), description="File of KEY=VALUE secrets read by the env secret source."
    )

    # --- Google Cloud ------------------------------------------------------------------
    gcp_project: str | None = Field(None, description="Google Cloud project id.")
    firestore_database: str = Field("(default)", description="Firestore database id.")
    firestore_emulator_host: str | None = Field(
        None, description="host:port of a Firestore emulator; unset in the cloud."
    )
    artifact_bucket: str | None = Field(None, description="Cloud Storage bucket for artifacts.")
    gcs_endpoint: str | None = Field(
        None, description="Cloud Storage endpoint override (fake-gcs-server); unset in the cloud."
    )
    pinned_secrets: str = Field(
        "",
        description=(
            "Pinned Secret Manager versions, 'name=version,...'. Secret Manager is never "
            "asked for 'latest'; a secret without a pinned version is refused."
        ),
    )

    key_wrapper: Literal["local", "kms"] = Field(
        "local",
        description="Wraps the data keys of envelope encryption: a local key file, or Cloud KMS.",
    )
    key_file: Path | None = Field(
        None,
        description="Local key-wrapping key (32 random bytes, created 0600 on first use); "
        "default <data_dir>/keys/wrapping.key.",
    )
    kms_key_name: str | None = Field(
        None,
        pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$",
        description="Cloud KMS key that wraps data keys (projects/.../cryptoKeys/...).",
    )
    data_key_max_records: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Records sealed under one data key before the instance makes a new one "
        "(one wrap, i.e. one Cloud KMS call, per data key); 1 to 1,000,000; 1: a data key "
        "per record.",
    )
    data_key_max_age_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Seconds one data key seals records before the instance makes a new "
        "one (above 0, at most 86,400); also how long an unwrapped data key is kept for "
        "opening.",
    )
    redis_url: str | None = Field(
        None,
        pattern=r"^(redis|rediss|unix)://",
        description="Redis (Memorystore) URL for the shared cache and rate limits; unset: "
        "per-instance only.",
    )
    redis_timeout_s: float = Field(
        0.05, gt=0, le=5, description="Timeout of one Redis call; a slower Redis is skipped."
    )

    # --- network behaviour -------------------------------------------------------------
    backend_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Timeout of one call to a store, bucket or secret service."
    )
    backend_attempts: int = Field(
        3, ge=1, le=10, description="Attempts (with jittered backoff) for retryable calls."
    )

    # --- HTTP --------------------------------------------------------------------------
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )
    max_error_details: int = Field(
        100, ge=1, description="Most validation problems listed in one 422 response."
    )

    # --- authentication ----------------------------------------------------------------
    jwt_audience: str = Field("ipo-valuation", description="Required 'aud' claim.")
    jwt_issuer: str = Field("ipo-valuation-local", description="Required 'iss' claim (exact).")
    jwt_secret_name: str = Field(
        "jwt-signing-key", description="Name of the HS256 signing secret in the secret source."
    )
    jwt_leeway_s: int = Field(30, ge=0, le=60, description="Clock skew allowed on exp/nbf/iat.")
    jwt_max_ttl_s: int = Field(
        86400, ge=60, le=7 * 86400, description="Longest token lifetime (exp - iat) accepted."
    )

    jwt_hs256_enabled: bool | None = Field(
        None,
        description="Accept HS256 tokens (no 'kid') signed with the secret above; unset: "
        "accepted only when IPO_JWT_JWKS_URL is unset (see hs256_accepted).",
    )
    jwt_jwks_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="JWKS of the identity provider: RS256/ES256 tokens are verified by 'kid'.",
    )
    jwt_jwks_ttl_s: int = Field(
        300, ge=10, le=86400, description="How long a fetched JWKS is trusted."
    )
    service_accounts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Service accounts whose Google-signed ID tokens are trusted, as a JSON "
        "object of e-mail -> permissions (Cloud Scheduler's jobs: job:*:run).",
    )
    service_token_audience: str | None = Field(
        None,
        min_length=1,
        description="Exact 'aud' of the service accounts' ID tokens; required with "
        "IPO_SERVICE_ACCOUNTS.",
    )
    google_jwks_url: str = Field(
        "https://www.googleapis.com/oauth2/v3/certs",
        pattern=r"^https?://",
        description="JWKS of Google's ID-token signing keys, for the service accounts above.",
    )
    trust_gateway_identity: bool = Field(
        False,
        description="Take the caller's claims from API Gateway's X-Apigateway-Api-Userinfo "
        "header without re-verifying the token; safe only when nothing but the gateway can "
        "invoke the functions (docs/SECURITY.md).",
    )

    # --- limits and audit --------------------------------------------------------------
    rate_limit_per_minute: int = Field(
        1000,
        ge=0,
        description="Requests per principal per minute (token bucket of that size); 0: off.",
    )
    audit_secret_name: str = Field(
        "audit-hmac-key", description="Name of the audit chain's HMAC secret in the source."
    )
    audit_commit_timeout_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="How long a request waits for its audit entry to be stored; past it the "
        "request is answered 503 with Retry-After and its result is withheld.",
    )

    # --- serving -----------------------------------------------------------------------
    snapshot_ttl_s: float = Field(
        10.0, ge=0, le=300, description="How long a serving snapshot is trusted in memory."
    )
    explain_budget: int = Field(
        500,
        ge=2,
        le=100_000,
        description="Most instances x paths one explanation request may cost (422 above).",
    )
    model_pool_size: int = Field(
        8, ge=1, le=256, description="Loaded models kept per instance (LRU)."
    )
    cache_enabled: bool = Field(
        True, description="Cache predictions per instance (L1 in process, L2 in Redis when set)."
    )
    cache_l1_entries: int = Field(
        50_000, ge=0, le=10_000_000, description="Most predictions kept in one instance's L1."
    )
    cache_l1_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Most bytes one instance's L1 holds, counting each entry's key, its encoded "
        "value and 320 bytes of overhead.",
    )
    cache_l1_ttl_s: float = Field(
        300.0, gt=0, le=86400, description="How long an L1 entry lives; L2 keeps its own TTL."
    )
    drift_sample_rate: float = Field(
        0.1, ge=0, le=1, description="Share of served rows whose features feed drift windows."
    )
    drift_window_hours: int = Field(
        24, ge=1, le=24 * 31, description="How far back a drift scan compares live rows."
    )
    drift_min_samples: int = Field(
        100, ge=10, le=1_000_000, description="Fewer live rows than this: 'insufficient data'."
    )
    batch_shard_rows: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Rows a batch job's shard holds (fewer at a file's end).",
    )
    batch_lease_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="How long a batch worker holds a shard before another may take it over.",
    )
    batch_submit_budget_s: float = Field(
        20.0,
        ge=0,
        le=300,
        description="Time the submitting call spends predicting shards before it answers.",
    )
    retention_days: int = Field(
        365, ge=1, le=3650, description="Days records holding personal data are kept."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest severity written to the structured log."
    )

    @field_validator("service_accounts", mode="before")
    @classmethod
    def _service_accounts_from_json(cls, value: Any) -> Any:
        """The environment holds the mapping as one JSON object string."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(
                "must be a JSON object of e-mail -> permissions, e.g. "
                f'{{"sa@p.iam.gserviceaccount.com": ["job:*:run"]}}: {exc}'
            ) from None

    @field_validator("service_accounts")
    @classmethod
    def _service_accounts_valid(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """E-mails are compared lower-case, as Google writes them; grants use auth's grammar."""
        accounts: dict[str, list[str]] = {}
        for email, permissions in value.items():
            if not EMAIL.fullmatch(email):
                raise ValueError(f"{email!r} is not an e-mail address")
            for permission in permissions:
                try:
                    parse_permission(permission)  # the grammar tokens are held to
                except ValueError as exc:
                    raise ValueError(f"{exc} (granted to {email})") from None
            if email.lower() in accounts:
                raise ValueError(f"{email!r} is listed twice")
            accounts[email.lower()] = sorted(set(permissions))
        return accounts

    @model_validator(mode="after")
    def _service_accounts_have_an_audience(self) -> Settings:
        if self.service_accounts and self.service_token_audience is None:
            raise ValueError(
                "IPO_SERVICE_TOKEN_AUDIENCE is required when IPO_SERVICE_ACCOUNTS names accounts"
            )
        # Google's issuer always means a service-account token (IPO_SERVICE_ACCOUNTS), whose
        # permissions come from this mapping, never from a 'perms' claim.
        if self.jwt_issuer in GOOGLE_ISSUERS:
            raise ValueError(
                "IPO_JWT_ISSUER must be the platform's own issuer; Google-signed service "
                "account tokens are configured with IPO_SERVICE_ACCOUNTS"
            )
        return self

    @model_validator(mode="after")
    def _cloud_settings_complete(self) -> Settings:
        if self.document_store == "firestore" and not self.gcp_project:
            raise ValueError("IPO_GCP_PROJECT is required when IPO_DOCUMENT_STORE=firestore")
        if self.artifact_store == "gcs" and not self.artifact_bucket:
            raise ValueError("IPO_ARTIFACT_BUCKET is required when IPO_ARTIFACT_STORE=gcs")
        if self.secret_source == "secret-manager" and not self.gcp_project:  # noqa: S105
            raise ValueError("IPO_GCP_PROJECT is required when IPO_SECRET_SOURCE=secret-manager")
        if self.key_wrapper == "kms" and not self.kms_key_name:
            raise ValueError("IPO_KMS_KEY_NAME is required when IPO_KEY_WRAPPER=kms")
        _ = self.pinned_secret_versions  # parse early: a malformed value fails at start-up
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key, value in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            # IPO_SECRET_<NAME> variables hold secrets for the env secret source, unless
            # they name a setting (IPO_SECRET_SOURCE).
            if name.startswith("secret_") and name not in cls.model_fields:
                continue
            values[name] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"invalid settings: {problems}") from None

    @property
    def hs256_accepted(self) -> bool:
        """HS256 tokens are for a deployment without an identity provider: with a JWKS, a
        leaked shared secret would otherwise mint tokens beside the provider's, so they
        are off unless IPO_JWT_HS256_ENABLED says otherwise."""
        if self.jwt_hs256_enabled is not None:
            return self.jwt_hs256_enabled
        return self.jwt_jwks_url is None

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or self.data_dir / "ipo.sqlite3"

    @property
    def resolved_artifact_dir(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "wrapping.key"

    @cached_property
    def pinned_secret_versions(self) -> dict[str, str]:
        pins: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.pinned_secrets.split(","))):
            name, sep, version = item.partition("=")
            if not sep or not name.strip() or not version.strip().isdigit():
                raise ValueError(f"IPO_PINNED_SECRETS entry {item!r} must be name=<version number>")
            pins[name.strip()] = version.strip()
        return pins
