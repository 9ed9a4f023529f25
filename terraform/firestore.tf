resource "google_firestore_database" "this" {
  name                              = var.firestore.database_id
  location_id                       = var.firestore.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.firestore.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.firestore.delete_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.this]
}

locals {
  # Composite indexes for the queries that need one: a range or order on one field with
  # an equality on another. Equality-only queries are served by Firestore's automatic
  # single-field indexes.
  firestore_indexes = {
    # Lifecycle.history: model_id == X, ordered by created_at descending.
    deployments_history = {
      collection = "deployments"
      fields     = [["model_id", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    # PayloadLog.history: model_id == X, ordered by created_at descending.
    payload_log_changes_history = {
      collection = "payload_log_changes"
      fields     = [["model_id", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    # Shadow replay: a model's kept predictions after the shadow's checkpoint.
    prediction_log_since = {
      collection = "prediction_log"
      fields     = [["model_id", "ASCENDING"], ["time", "ASCENDING"]]
    }
    # Retention purge: entries older than the cutoff still holding personal data.
    audit_entries_personal = {
      collection = "audit_entries"
      fields     = [["holds_personal", "ASCENDING"], ["time", "ASCENDING"]]
    }
  }

  # Firestore deletes these documents itself once `expire_at` has passed (the embedded
  # store relies on the purge_retention job alone).
  firestore_ttl_collections = ["drift_windows", "experiment_assignments"]
}

resource "google_firestore_index" "this" {
  for_each = local.firestore_indexes

  database    = google_firestore_database.this.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}

resource "google_firestore_field" "ttl" {
  for_each = toset(local.firestore_ttl_collections)

  database   = google_firestore_database.this.name
  collection = each.value
  field      = "expire_at"

  ttl_config {}

  # The TTL field needs no index of its own.
  index_config {}
}

# A batch job's plan (a string of up to a few hundred KB), its file list and its first
# errors are read with the job, never queried: no index entries for them, so a job's
# record stays one cheap write (docs/BATCH.md).
resource "google_firestore_field" "batch_unindexed" {
  for_each = toset(["plan", "files", "first_errors", "components"])

  database   = google_firestore_database.this.name
  collection = "batch_jobs"
  field      = each.value

  index_config {}
}
