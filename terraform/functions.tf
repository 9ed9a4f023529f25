locals {
  # One entry per folder under functions/; the folder name is the entry point. Sizes
  # follow the reference design (DCF: 2 CPU, 4 GiB, 30 s, 1 to 100 instances) and every
  # field can be overridden through var.functions. Cloud Run accepts 1, 2, 4, 6 or 8
  # whole CPUs above one, so the ensemble's 3-CPU ceiling becomes 2 CPUs with 6 GiB.
  # Scheduled jobs take a whole instance each (concurrency 1) and run up to 540 s.
  function_defaults = {
    list_models        = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 20, concurrency = 40 }
    predict_dcf        = { cpu = "2", memory = "4Gi", timeout = 30, min = 1, max = 100, concurrency = 16 }
    predict_cca        = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 16 }
    predict_risk       = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 16 }
    predict_sentiment  = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 16 }
    predict_ensemble   = { cpu = "2", memory = "6Gi", timeout = 60, min = 1, max = 50, concurrency = 8 }
    register_model     = { cpu = "1", memory = "2Gi", timeout = 120, min = 0, max = 5, concurrency = 4 }
    promote_model      = { cpu = "1", memory = "2Gi", timeout = 300, min = 0, max = 5, concurrency = 4 }
    rollback_model     = { cpu = "1", memory = "1Gi", timeout = 60, min = 0, max = 5, concurrency = 4 }
    create_experiment  = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 10, concurrency = 16 }
    assign_variant     = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 50, concurrency = 40 }
    record_outcome     = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 50, concurrency = 40 }
    experiment_results = { cpu = "1", memory = "1Gi", timeout = 60, min = 0, max = 10, concurrency = 8 }
    warm_cache         = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    drift_scan         = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    compliance_scan    = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    purge_retention    = { cpu = "1", memory = "1Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
  }

  functions = {
    for name, d in local.function_defaults : name => {
      cpu         = coalesce(try(var.functions[name].cpu, null), d.cpu)
      memory      = coalesce(try(var.functions[name].memory, null), d.memory)
      timeout     = coalesce(try(var.functions[name].timeout_seconds, null), d.timeout)
      min         = coalesce(try(var.functions[name].min_instances, null), d.min)
      max         = coalesce(try(var.functions[name].max_instances, null), d.max)
      concurrency = coalesce(try(var.functions[name].concurrency, null), d.concurrency)
    }
  }

  # Cloud Run's memory range for each CPU size, in MiB.
  memory_range_mib = {
    "1" = [128, 4096]
    "2" = [128, 8192]
    "4" = [2048, 16384]
    "6" = [4096, 24576]
    "8" = [4096, 32768]
  }
  memory_mib = {
    for name, f in local.functions : name => tonumber(regex("^[0-9]+", f.memory)) * (endswith(f.memory, "Gi") ? 1024 : 1)
  }

  unknown_function_overrides = setsubtract(keys(var.functions), keys(local.function_defaults))
  missing_packages           = [for name in keys(local.functions) : name if !fileexists("${local.dist_dir}/${name}.zip")]

  # Content hash of each archive: an unchanged function keeps its object name and is not
  # redeployed.
  package_sha256 = {
    for name in keys(local.functions) : name => (
      fileexists("${local.dist_dir}/${name}.zip") ? filesha256("${local.dist_dir}/${name}.zip") : "missing"
    )
  }

  # Settings every function reads (common/config.py); names and meanings are in
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
    IPO_KMS_KEY_NAME           = google_kms_crypto_key.data_keys.id
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
    default_kms_key_name = google_kms_crypto_key.storage.id
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
    environment_variables          = local.function_environment
    vpc_connector                  = var.redis.enabled ? google_vpc_access_connector.this[0].id : null
    vpc_connector_egress_settings  = var.redis.enabled ? "PRIVATE_RANGES_ONLY" : null

    dynamic "secret_environment_variables" {
      for_each = var.redis.enabled ? [1] : []
      content {
        key        = "IPO_REDIS_URL"
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis_url[0].secret_id
        version    = google_secret_manager_secret_version.redis_url[0].version
      }
    }

    dynamic "secret_volumes" {
      for_each = var.redis.enabled ? [1] : []
      content {
        mount_path = local.redis_ca_dir
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis_ca[0].secret_id
        versions {
          path    = local.redis_ca_file
          version = google_secret_manager_secret_version.redis_ca[0].version
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition = (
        local.memory_mib[each.key] >= local.memory_range_mib[each.value.cpu][0] &&
        local.memory_mib[each.key] <= local.memory_range_mib[each.value.cpu][1]
      )
      error_message = "Function ${each.key}: ${each.value.memory} is outside the memory Cloud Run allows with ${each.value.cpu} CPU (${local.memory_range_mib[each.value.cpu][0]}Mi to ${local.memory_range_mib[each.value.cpu][1]}Mi)."
    }
    precondition {
      condition     = length(local.unknown_function_overrides) == 0
      error_message = "var.functions names functions that do not exist: ${join(", ", local.unknown_function_overrides)}. Known: ${join(", ", sort(keys(local.function_defaults)))}."
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_sources,
    google_project_iam_member.build_function_sources,
    google_secret_manager_secret_iam_member.audit_hmac_key,
    google_secret_manager_secret_iam_member.redis_url,
    google_secret_manager_secret_iam_member.redis_ca,
    google_kms_crypto_key_iam_member.data_keys,
  ]
}
