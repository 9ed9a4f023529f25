resource "google_kms_key_ring" "this" {
  name     = "${local.prefix}-keys"
  location = var.region

  depends_on = [google_project_service.this]
}

locals {
  kms_keys = {
    # Wraps the data keys of envelope encryption (IPO_KMS_KEY_NAME): one per instance per
    # 10,000 records or 5 minutes.
    data-keys = "envelope encryption of sealed records"
    # Customer-managed key of the buckets.
    storage = "Cloud Storage buckets"
  }
}

resource "google_kms_crypto_key" "this" {
  for_each = local.kms_keys

  name            = each.key
  key_ring        = google_kms_key_ring.this.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_key_rotation_period
  labels          = { use = replace(lower(each.value), "/[^a-z0-9]+/", "-") }

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  # Destroying a key makes everything it protects unreadable.
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  crypto_key_id = google_kms_crypto_key.this["storage"].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"
}
