locals {
  # What each function does with the artifact bucket: every function reads it (loads or
  # lists models) unless it is named below, so a new prediction function needs no entry;
  # "write" also creates objects (register_model's content-addressed artifacts, never
  # overwritten) and "reports" also creates and replaces objects under reports/ (a scan
  # run again in the same hour replaces its report); "batch" also creates objects under
  # batch/ only (a batch job's outputs, create-only: never replaced).
  artifact_writers = {
    register_model  = "write"
    drift_scan      = "reports"
    compliance_scan = "reports"
    shadow_replay   = "reports"
    batch_jobs      = "batch"
    run_batch_jobs  = "batch"
  }
  artifact_access = {
    for name in keys(local.function_defaults) : name => lookup(local.artifact_writers, name, "read")
  }

  # Permissions the platform grants to Google-signed ID tokens of these accounts
  # (IPO_SERVICE_ACCOUNTS): the scheduler runs the jobs, the smoke test reads and predicts.
  service_account_permissions = merge(
    { (google_service_account.scheduler.email) = ["job:*:run"] },
    var.smoke_test.enabled ? {
      (google_service_account.smoke[0].email) = ["model:read", "model:*:predict"]
    } : {},
  )
}

# --- one identity per function ----------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = substr("${local.prefix}-fn-${replace(each.key, "_", "-")}", 0, 30)
  display_name = "IPO valuation function ${each.key}"

  depends_on = [google_project_service.this]
}

# Firestore grants are project-wide: there is no narrower resource to bind them to.
resource "google_project_iam_member" "function_firestore" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "function_artifacts_read" {
  for_each = local.functions

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "function_reports" {
  for_each = { for name, access in local.artifact_access : name => access if access == "reports" }

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "reports only"
    description = "Create and replace report pages under reports/."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.artifacts.name}/objects/reports/\")"
  }
}

resource "google_storage_bucket_iam_member" "function_batch_outputs" {
  for_each = { for name, access in local.artifact_access : name => access if access == "batch" }

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "batch outputs only"
    description = "Create batch job outputs under batch/ (docs/BATCH.md)."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.artifacts.name}/objects/batch/\")"
  }
}

resource "google_storage_bucket_iam_member" "function_artifacts_create" {
  for_each = { for name, access in local.artifact_access : name => access if access == "write" }

  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Every request appends an HMAC-chained audit entry whose personal part is sealed.
resource "google_secret_manager_secret_iam_member" "audit_hmac_key" {
  for_each = local.functions

  secret_id = google_secret_manager_secret.audit_hmac_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_kms_crypto_key_iam_member" "data_keys" {
  for_each = local.functions

  crypto_key_id = google_kms_crypto_key.this["data-keys"].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "redis" {
  for_each = {
    for pair in setproduct(keys(local.functions), keys(local.redis_secrets)) : join("/", pair) => pair
  }

  secret_id = google_secret_manager_secret.redis[each.value[1]].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value[0]].email}"
}

# --- building the functions -----------------------------------------------------------

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "IPO valuation function builds"

  depends_on = [google_project_service.this]
}

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# Cloud Functions copies each archive into its own gcf-v2-sources-<number>-<region>
# bucket and builds from there; the grant is limited to those buckets.
resource "google_project_iam_member" "build_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "gcf-v2-sources buckets only"
    description = "The buckets Cloud Functions stages function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}

resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# --- who may invoke the functions: only the gateway --------------------------------------

resource "google_service_account" "gateway" {
  account_id   = "${local.prefix}-gateway"
  display_name = "IPO valuation API Gateway backend identity"

  depends_on = [google_project_service.this]
}

resource "google_cloud_run_service_iam_member" "gateway_invoker" {
  for_each = local.functions

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

# --- callers that are service accounts ----------------------------------------------------

# Cloud Scheduler signs its calls to the gateway as this account (scheduler.tf); it needs
# no role: the gateway and the functions check its token and IPO_SERVICE_ACCOUNTS.
resource "google_service_account" "scheduler" {
  account_id   = "${local.prefix}-scheduler"
  display_name = "IPO valuation scheduled jobs"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "smoke" {
  count = var.smoke_test.enabled ? 1 : 0

  account_id   = "${local.prefix}-smoke"
  display_name = "IPO valuation post-deploy smoke test"

  depends_on = [google_project_service.this]
}

# Cloud Build mints the smoke test's ID token by impersonating the smoke account.
resource "google_service_account_iam_member" "smoke_token_creator" {
  count = var.smoke_test.enabled && var.smoke_test.caller != null ? 1 : 0

  service_account_id = google_service_account.smoke[0].name
  # gcloud's --impersonate-service-account needs the full token creator role.
  role   = "roles/iam.serviceAccountTokenCreator"
  member = var.smoke_test.caller
}
