locals {
  # A version number, never "latest": a rotation is a deliberate change of this value.
  audit_hmac_key_version = coalesce(var.audit_hmac_key_version, try(google_secret_manager_secret_version.audit_hmac_key[0].version, null))
}

resource "google_secret_manager_secret" "audit_hmac_key" {
  secret_id = "${local.prefix}-audit-hmac-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# Generated here unless var.audit_hmac_key_version pins a version added by hand
# (`gcloud secrets versions add`). A generated key is also in the Terraform state,
# which must therefore be kept as carefully as the secret.
resource "random_password" "audit_hmac_key" {
  count = var.audit_hmac_key_version == null ? 1 : 0

  length  = 64
  special = false
}

resource "google_secret_manager_secret_version" "audit_hmac_key" {
  count = var.audit_hmac_key_version == null ? 1 : 0

  secret      = google_secret_manager_secret.audit_hmac_key.id
  secret_data = random_password.audit_hmac_key[0].result
  # Entries written under this key verify only with it: a switch to another version
  # must leave it in Secret Manager.
  deletion_policy = "ABANDON"
}
