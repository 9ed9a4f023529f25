# Cloud Audit Logs (who deployed, changed IAM, read a secret, used a key) are copied
# into the locked-retention bucket of storage.tf. The platform's own audit trail is the
# HMAC-chained audit_entries collection in Firestore. Request lines are not copied: they
# name callers, and a bucket nobody can delete from would defeat erasure
# (POST /v1/privacy/erasure, docs/COMPLIANCE.md).
resource "google_logging_project_sink" "audit" {
  #checkov:skip=CKV2_GCP_4:The destination's retention policy is locked by default (var.audit_log_retention.locked, storage.tf); checkov cannot read a default inside an object type.
  name                   = "${local.prefix}-audit-logs"
  destination            = "storage.googleapis.com/${google_storage_bucket.audit_logs.name}"
  filter                 = "logName:\"cloudaudit.googleapis.com\""
  unique_writer_identity = true
}

resource "google_storage_bucket_iam_member" "audit_sink_writer" {
  bucket = google_storage_bucket.audit_logs.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.audit.writer_identity
}

# Reads of the platform's secrets are Data Access logs, off unless asked for.
resource "google_project_iam_audit_config" "secret_manager" {
  project = var.project_id
  service = "secretmanager.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "ADMIN_READ"
  }
}
