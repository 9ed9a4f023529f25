# Two sinks copy log lines into the locked-retention bucket of storage.tf:
#
# - Cloud Audit Logs (who deployed, changed IAM, read a secret, used a key);
# - the audit chain's anchors. The platform's own audit trail is the HMAC-chained
#   audit_entries collection in Firestore; each committed batch of it also logs one
#   `audit anchor` line (logger ipo.audit.anchor: chain id, last sequence number, last
#   MAC, entry count). Kept where nobody can delete them, the anchors let
#   scripts/verify_audit.py --anchors find what the store alone cannot show: newest
#   entries removed with the chain's head rewound, or a whole chain deleted.
#   They hold no personal data, so keeping them where nobody can delete them does not
#   get in the way of erasure.
#
# Request lines are not copied: they name callers, and a bucket nobody can delete from
# would defeat erasure (POST /v1/privacy/erasure, docs/COMPLIANCE.md).
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

# Exactly the anchor lines: the structured line a function writes to stdout arrives as
# jsonPayload of a cloud_run_revision entry (gen2 functions run as Cloud Run services
# named after the function). Nothing else carries this logger.
resource "google_logging_project_sink" "audit_anchors" {
  #checkov:skip=CKV2_GCP_4:The destination's retention policy is locked by default (var.audit_log_retention.locked, storage.tf); checkov cannot read a default inside an object type.
  name        = "${local.prefix}-audit-anchors"
  description = "Audit chain anchors (logger ipo.audit.anchor) of the ${local.prefix} functions, kept under the audit-log bucket's retention policy."
  destination = "storage.googleapis.com/${google_storage_bucket.audit_logs.name}"
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=~\"^${local.prefix}-\"",
    "jsonPayload.logger=\"ipo.audit.anchor\"",
  ])
  unique_writer_identity = true
}

resource "google_storage_bucket_iam_member" "audit_anchors_writer" {
  bucket = google_storage_bucket.audit_logs.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.audit_anchors.writer_identity
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
