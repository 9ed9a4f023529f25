provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

locals {
  prefix = var.name_prefix
  labels = merge({ app = "ipo-valuation", managed-by = "terraform" }, var.labels)

  # The folder the reproducible archives of scripts/package.py land in.
  dist_dir = abspath("${path.module}/../dist")

  services = toset(concat(
    [
      "apigateway.googleapis.com",
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "cloudkms.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "cloudscheduler.googleapis.com",
      "firestore.googleapis.com",
      "iam.googleapis.com",
      "iamcredentials.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
      "servicecontrol.googleapis.com",
      "servicemanagement.googleapis.com",
      "storage.googleapis.com",
    ],
    var.redis.enabled ? [
      "compute.googleapis.com",
      "redis.googleapis.com",
      "servicenetworking.googleapis.com",
      "vpcaccess.googleapis.com",
    ] : [],
  ))
}

resource "google_project_service" "this" {
  for_each = local.services

  project = var.project_id
  service = each.value
  # Other workloads of the project may use these APIs too.
  disable_on_destroy = false
}
