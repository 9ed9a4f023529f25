locals {
  missing_packages = [for name in keys(local.functions) : name if !fileexists("${local.dist_dir}/${name}.zip")]

  # Content hash of each archive: an unchanged function keeps its object name and is not
  # redeployed.
  package_sha256 = {
    for name in keys(local.functions) : name => (
      fileexists("${local.dist_dir}/${name}.zip") ? filesha256("${local.dist_dir}/${name}.zip") : "missing"
    )
  }

  # Settings every function reads (common/core/config.py); names and meanings are in
  # docs/CONFIGURATION.md.
  function_environment = {
    IPO_DOCUMENT_STORE         = "firestore"
    IPO_GCP_PROJECT            = var.project_id
    IPO_FIRESTORE_DATABASE     = google_firestore_database.this.name
    IPO_ARTIFACT_STORE         = "gcs"
    IPO_ARTIFACT_BUCKET        = google_storage_bucket.artifacts.name
    IPO_SECRET_SOURCE          = "secret-manager"
    IPO_AUDIT_SECRET_NAME      = google_secret_manager_secret.audit_hmac_key.secret_id
    IPO_PINNED_SECRETS         = "${google_secret_manager_secret.audit_hmac_key.secret_id}=${local.audit_hmac_key_version}"
    IPO_KEY_WRAPPER            = "kms"
    IPO_KMS_KEY_NAME           = google_kms_crypto_key.this["data-keys"].id
    IPO_JWT_AUDIENCE           = var.jwt.audience
    IPO_JWT_ISSUER             = var.jwt.issuer
    IPO_JWT_JWKS_URL           = var.jwt.jwks_url
    IPO_JWT_HS256_ENABLED      = "false"
    IPO_SERVICE_ACCOUNTS       = jsonencode(local.service_account_permissions)
    IPO_SERVICE_TOKEN_AUDIENCE = var.service_token_audience
    IPO_RETENTION_DAYS         = tostring(var.retention_days)
    IPO_DATA_DIR               = "/tmp/ipo"
    IPO_LOG_LEVEL              = var.log_level
    # Set by Cloud Functions itself on every deploy; declared so plans show no change.
    LOG_EXECUTION_ID = "true"
  }
}

resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-${local.prefix}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.this["storage"].id
  }

  # Old archives are kept a while for rollbacks of the code itself, then removed.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}

resource "google_storage_bucket_object" "package" {
  for_each = local.functions

  name   = "functions/${each.key}/${local.package_sha256[each.key]}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${local.dist_dir}/${each.key}.zip"

  lifecycle {
    precondition {
      condition     = length(local.missing_packages) == 0
      error_message = "Missing archives in dist/ for: ${join(", ", local.missing_packages)}. Run `python scripts/package.py` from the repository root first."
    }
  }
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Ingress must admit API Gateway, which Cloud Run does not count as internal; only the gateway's service account holds run.invoker (iam.tf).
  for_each = local.functions

  name        = "${local.prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = "IPO valuation platform: ${each.key} (common/ library, functions/${each.key}/main.py)."

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.package[each.key].name
      }
    }
  }

  service_config {
    available_cpu                    = each.value.cpu
    available_memory                 = each.value.memory
    timeout_seconds                  = each.value.timeout
    min_instance_count               = each.value.min
    max_instance_count               = each.value.max
    max_instance_request_concurrency = each.value.concurrency
    service_account_email            = google_service_account.function[each.key].email
    # API Gateway reaches functions from outside the VPC, so ingress cannot be
    # internal-only; IAM admits only the gateway's service account (iam.tf).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    environment_variables          = merge(local.function_environment, local.function_server_environment[each.key])
    vpc_connector                  = var.redis.enabled ? google_vpc_access_connector.this[0].id : null
    vpc_connector_egress_settings  = var.redis.enabled ? "PRIVATE_RANGES_ONLY" : null

    dynamic "secret_environment_variables" {
      for_each = var.redis.enabled ? [1] : []
      content {
        key        = "IPO_REDIS_URL"
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis["url"].secret_id
        version    = google_secret_manager_secret_version.redis["url"].version
      }
    }

    dynamic "secret_volumes" {
      for_each = var.redis.enabled ? [1] : []
      content {
        mount_path = local.redis_ca_dir
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis["ca"].secret_id
        versions {
          path    = local.redis_ca_file
          version = google_secret_manager_secret_version.redis["ca"].version
        }
      }
    }
  }

  depends_on = [
    terraform_data.function_sizes,
    google_project_service.this,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_sources,
    google_project_iam_member.build_function_sources,
    google_secret_manager_secret_iam_member.audit_hmac_key,
    google_secret_manager_secret_iam_member.redis,
    google_kms_crypto_key_iam_member.data_keys,
  ]
}
