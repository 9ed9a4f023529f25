"""Settings: one prefix, documented defaults, typos refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.core.config import Settings


def test_defaults_are_the_embedded_default() -> None:
    settings = Settings.from_environ({})
    assert settings.document_store == "sqlite"
    assert settings.artifact_store == "local"
    assert settings.secret_source == "env"
    assert settings.resolved_sqlite_path == Path(".data/ipo.sqlite3")
    assert settings.resolved_artifact_dir == Path(".data/artifacts")
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.snapshot_ttl_s == 10.0


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_values_come_from_prefixed_variables_only() -> None:
    settings = Settings.from_environ(
        {"IPO_SNAPSHOT_TTL_S": "2.5", "IPO_DATA_DIR": "/tmp/x", "SNAPSHOT_TTL_S": "99"}
    )
    assert settings.snapshot_ttl_s == 2.5
    assert settings.resolved_sqlite_path == Path("/tmp/x/ipo.sqlite3")


def test_secret_variables_are_not_settings() -> None:
    Settings.from_environ({"IPO_SECRET_JWT_SIGNING_KEY": "x"})


def test_secret_source_is_a_setting_despite_its_prefix() -> None:
    settings = Settings.from_environ(
        {"IPO_SECRET_SOURCE": "secret-manager", "IPO_GCP_PROJECT": "p"}
    )
    assert settings.secret_source == "secret-manager"


def test_a_misspelt_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="IPO_SNAPSHOT_TTL"):
        Settings.from_environ({"IPO_SNAPSHOT_TTL": "3"})


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="IPO_DOCUMENT_STORE"):
        Settings.from_environ({"IPO_DOCUMENT_STORE": "mongo"})
    with pytest.raises(ValueError, match="IPO_JWT_LEEWAY_S"):
        Settings.from_environ({"IPO_JWT_LEEWAY_S": "600"})


def test_cloud_backends_need_their_project_and_bucket() -> None:
    with pytest.raises(ValueError, match="IPO_GCP_PROJECT"):
        Settings.from_environ({"IPO_DOCUMENT_STORE": "firestore"})
    with pytest.raises(ValueError, match="IPO_ARTIFACT_BUCKET"):
        Settings.from_environ({"IPO_ARTIFACT_STORE": "gcs"})


def test_secret_versions_are_pinned_numbers() -> None:
    settings = Settings.from_environ({"IPO_PINNED_SECRETS": "jwt-signing-key=3, audit-key=12"})
    assert settings.pinned_secret_versions == {"jwt-signing-key": "3", "audit-key": "12"}
    with pytest.raises(ValueError, match="latest"):
        Settings.from_environ({"IPO_PINNED_SECRETS": "jwt-signing-key=latest"})


SCHEDULER = "ipo-scheduler@p.iam.gserviceaccount.com"


def test_service_accounts_are_a_json_object_of_permissions() -> None:
    defaults = Settings.from_environ({})
    assert (defaults.service_accounts, defaults.service_token_audience) == ({}, None)
    assert defaults.google_jwks_url == "https://www.googleapis.com/oauth2/v3/certs"
    settings = Settings.from_environ(
        {
            "IPO_SERVICE_ACCOUNTS": json.dumps(
                {"IPO-Scheduler@p.iam.gserviceaccount.com": ["job:*:run", "job:*:run"]}
            ),
            "IPO_SERVICE_TOKEN_AUDIENCE": "https://gateway.example.com",
        }
    )
    assert settings.service_accounts == {SCHEDULER: ["job:*:run"]}  # as Google writes it
    assert settings.service_token_audience == "https://gateway.example.com"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"ipo-scheduler@p.iam.gserviceaccount.com": ["job:*:run"]', "JSON object"),
        ("job:*:run", "JSON object"),
        (f'["{SCHEDULER}"]', "dictionary"),
        ('{"ipo-scheduler": ["job:*:run"]}', "not an e-mail"),
        ('{"a b@p.iam.gserviceaccount.com": ["job:*:run"]}', "not an e-mail"),
        (f'{{"{SCHEDULER}": ["Job run"]}}', "not a permission"),
        (f'{{"{SCHEDULER}": ["admin\\n"]}}', "not a permission"),
        (f'{{"{SCHEDULER}": ["job::run"]}}', "not a permission"),
        (f'{{"{SCHEDULER}": "job:*:run"}}', "list"),
        ('{"a@x.com": [], "A@x.com": []}', "twice"),
    ],
)
def test_malformed_service_accounts_fail_at_start_up(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match="IPO_SERVICE_ACCOUNTS") as refused:
        Settings.from_environ(
            {"IPO_SERVICE_ACCOUNTS": value, "IPO_SERVICE_TOKEN_AUDIENCE": "https://gw"}
        )
    assert problem in str(refused.value)


def test_service_accounts_need_their_token_audience() -> None:
    accounts = json.dumps({SCHEDULER: ["job:*:run"]})
    with pytest.raises(ValueError, match="IPO_SERVICE_TOKEN_AUDIENCE is required"):
        Settings.from_environ({"IPO_SERVICE_ACCOUNTS": accounts})
    with pytest.raises(ValueError, match="IPO_SERVICE_TOKEN_AUDIENCE"):
        Settings.from_environ({"IPO_SERVICE_ACCOUNTS": accounts, "IPO_SERVICE_TOKEN_AUDIENCE": ""})
    assert Settings.from_environ({"IPO_SERVICE_ACCOUNTS": ""}).service_accounts == {}


def test_google_jwks_url_is_http() -> None:
    with pytest.raises(ValueError, match="IPO_GOOGLE_JWKS_URL"):
        Settings.from_environ({"IPO_GOOGLE_JWKS_URL": "file:///etc/jwks.json"})


def test_configuration_doc_lists_every_setting() -> None:
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    for name in Settings.model_fields:
        assert f"`IPO_{name.upper()}`" in doc, (
            f"docs/CONFIGURATION.md does not list IPO_{name.upper()}"
        )


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
def test_google_cannot_be_the_platform_issuer(issuer: str) -> None:
    with pytest.raises(ValueError, match="IPO_JWT_ISSUER must be the platform's own issuer"):
        Settings.from_environ({"IPO_JWT_ISSUER": issuer})


def test_data_key_bounds_default_to_the_ciphers_and_are_validated() -> None:
    from common.security.crypto import DATA_KEY_MAX_AGE_S, DATA_KEY_MAX_RECORDS

    settings = Settings.from_environ({})
    assert (settings.data_key_max_records, settings.data_key_max_age_s) == (10_000, 300.0)
    assert (DATA_KEY_MAX_RECORDS, DATA_KEY_MAX_AGE_S) == (10_000, 300.0)
    one = Settings.from_environ({"IPO_DATA_KEY_MAX_RECORDS": "1", "IPO_DATA_KEY_MAX_AGE_S": "0.5"})
    assert (one.data_key_max_records, one.data_key_max_age_s) == (1, 0.5)
    for name, value in [
        ("IPO_DATA_KEY_MAX_RECORDS", "0"),
        ("IPO_DATA_KEY_MAX_RECORDS", "1.5"),
        ("IPO_DATA_KEY_MAX_RECORDS", "1000001"),
        ("IPO_DATA_KEY_MAX_AGE_S", "0"),
        ("IPO_DATA_KEY_MAX_AGE_S", "-1"),
        ("IPO_DATA_KEY_MAX_AGE_S", "86401"),
        ("IPO_DATA_KEY_MAX_AGE_S", "nan"),
    ]:
        with pytest.raises(ValueError, match=name):
            Settings.from_environ({name: value})
