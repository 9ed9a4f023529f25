# Model artifacts (content-addressed: models/<id>/sha256/<hex>) and report HTML.
resource "google_storage_bucket" "artifacts" {
  name                        = "${var.project_id}-${local.prefix}-artifacts"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.this["storage"].id
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}

# Usage logs of the other buckets.
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:This is the access-log bucket itself; logging it into itself would loop.
  name                        = "${var.project_id}-${local.prefix}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.this["storage"].id
  }

  lifecycle_rule {
    condition {
      age = var.audit_log_retention.days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}

# Cloud Storage writes usage logs as this group.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

# Cloud Audit Logs and the audit chain's anchors (logging.tf's sinks), kept under a
# retention policy that, once locked, nobody can shorten or remove.
resource "google_storage_bucket" "audit_logs" {
  name                        = "${var.project_id}-${local.prefix}-audit-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Versioning cannot be combined with a retention policy: the policy already keeps
  # every object unmodified for its whole period.
  #checkov:skip=CKV_GCP_78:A bucket retention policy (locked) excludes versioning and protects objects more strongly.
  retention_policy {
    retention_period = var.audit_log_retention.days * 86400
    is_locked        = var.audit_log_retention.locked
  }

  encryption {
    default_kms_key_name = google_kms_crypto_key.this["storage"].id
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}

data "google_storage_project_service_account" "this" {
  project = var.project_id
}
