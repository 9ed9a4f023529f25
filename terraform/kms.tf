resource "google_kms_key_ring" "this" {
  name     = "${local.prefix}-keys"
  location = var.region

  depends_on = [google_project_service.this]
}

# Wraps the per-record data keys of envelope encryption (IPO_KMS_KEY_NAME).
resource "google_kms_crypto_key" "data_keys" {
  name            = "data-keys"
  key_ring        = google_kms_key_ring.this.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_key_rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  # Destroying the key makes every sealed record unreadable.
  lifecycle {
    prevent_destroy = true
  }
}

# Customer-managed key of the buckets.
resource "google_kms_crypto_key" "storage" {
  name            = "storage"
  key_ring        = google_kms_key_ring.this.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_key_rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  crypto_key_id = google_kms_crypto_key.storage.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"
}
