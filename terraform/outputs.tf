output "artifact_bucket" {
  description = "Cloud Storage bucket holding model artifacts and report HTML (IPO_ARTIFACT_BUCKET)."
  value       = google_storage_bucket.artifacts.name
}

output "audit_log_bucket" {
  description = "Bucket receiving Cloud Audit Logs and the audit chain's anchors under the retention policy of var.audit_log_retention."
  value       = google_storage_bucket.audit_logs.name
}

output "curl_example" {
  description = "A first call through the gateway: list the models (needs a token from the identity provider of var.jwt with the model:read permission)."
  value       = "curl -sS -H \"Authorization: Bearer $TOKEN\" https://${google_api_gateway_gateway.this.default_hostname}/v1/models"
}

output "function_service_accounts" {
  description = "The identity each function runs as, by function."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "function_urls" {
  description = "Each function's own address; only the gateway's service account may invoke them."
  value       = { for name, fn in google_cloudfunctions2_function.this : name => fn.service_config[0].uri }
}

output "gateway_config_id" {
  description = "The API config the gateway serves; its suffix is the rendered spec's SHA-256 prefix."
  value       = google_api_gateway_api_config.this.api_config_id
}

output "gateway_url" {
  description = "Base URL of the API (API Gateway); every route of common/api/openapi.yaml is under it."
  value       = "https://${google_api_gateway_gateway.this.default_hostname}"
}

output "kms_data_key" {
  description = "Cloud KMS key that wraps the data keys of envelope encryption (IPO_KMS_KEY_NAME)."
  value       = google_kms_crypto_key.this["data-keys"].id
}

output "scheduler_service_account" {
  description = "Service account whose ID tokens the Cloud Scheduler jobs present."
  value       = google_service_account.scheduler.email
}

output "seed_environment" {
  description = "Settings that point scripts/train_models.py (run with your own credentials) at this deployment's stores, to register and promote the first versions: env $(terraform output -raw seed_environment) .venv/bin/python scripts/train_models.py --if-absent"
  value = join(" ", [
    for key in sort([
      "IPO_DOCUMENT_STORE", "IPO_GCP_PROJECT", "IPO_FIRESTORE_DATABASE", "IPO_ARTIFACT_STORE",
      "IPO_ARTIFACT_BUCKET", "IPO_SECRET_SOURCE", "IPO_AUDIT_SECRET_NAME", "IPO_PINNED_SECRETS",
      "IPO_KEY_WRAPPER", "IPO_KMS_KEY_NAME", "IPO_JWT_HS256_ENABLED",
    ]) : "${key}=${local.function_environment[key]}"
  ])
}

output "smoke_test_command" {
  description = "The post-deploy smoke test, run as the smoke-test service account (the caller needs roles/iam.serviceAccountTokenCreator on it, granted to var.smoke_test.caller; a new grant can take a few minutes to apply)."
  value = var.smoke_test.enabled ? join(" ", [
    "SMOKE_TOKEN=\"$(gcloud auth print-identity-token --impersonate-service-account=${google_service_account.smoke[0].email} --audiences=${var.service_token_audience} --include-email)\"",
    ".venv/bin/python scripts/smoke.py --url https://${google_api_gateway_gateway.this.default_hostname}",
  ]) : null
}

output "smoke_test_service_account" {
  description = "Service account of the post-deploy smoke test (read and predict only); null when disabled."
  value       = var.smoke_test.enabled ? google_service_account.smoke[0].email : null
}
