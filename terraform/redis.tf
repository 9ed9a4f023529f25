# Memorystore Redis: the shared L2 prediction cache and rate-limit buckets. Off by
# default; without it each instance caches and limits on its own (docs/ARCHITECTURE.md).

locals {
  redis_ca_dir  = "/etc/ipo/redis-ca"
  redis_ca_file = "ca.pem"
}

data "google_compute_network" "redis" {
  count = var.redis.enabled ? 1 : 0

  name = var.redis.network
}

# Memorystore is reached over private services access: a reserved range peered with
# Google's service network.
resource "google_compute_global_address" "redis" {
  count = var.redis.enabled ? 1 : 0

  name          = "${local.prefix}-redis-range"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 16
  network       = data.google_compute_network.redis[0].id

  depends_on = [google_project_service.this]
}

resource "google_service_networking_connection" "redis" {
  count = var.redis.enabled ? 1 : 0

  network                 = data.google_compute_network.redis[0].id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.redis[0].name]

  depends_on = [google_project_service.this]
}

resource "google_redis_instance" "this" {
  count = var.redis.enabled ? 1 : 0

  name               = "${local.prefix}-cache"
  region             = var.region
  tier               = var.redis.tier
  memory_size_gb     = var.redis.memory_size_gb
  redis_version      = var.redis.version
  authorized_network = data.google_compute_network.redis[0].id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  # The cache holds only recomputable predictions; evict the least recently used.
  redis_configs = {
    maxmemory-policy = "allkeys-lru"
  }

  depends_on = [google_project_service.this, google_service_networking_connection.redis]
}

resource "google_vpc_access_connector" "this" {
  count = var.redis.enabled ? 1 : 0

  name          = "${local.prefix}-connector"
  region        = var.region
  network       = var.redis.network
  ip_cidr_range = var.redis.connector_cidr
  min_instances = 2
  max_instances = 3

  depends_on = [google_project_service.this]
}

locals {
  # The functions' Redis secrets, by version: the URL carries the AUTH string, and the
  # instance's own CA is mounted as a file so TLS verifies the server against it (the
  # certificate names an address, not a host name, hence ssl_check_hostname=false).
  redis_secrets = var.redis.enabled ? {
    url = format(
      "rediss://:%s@%s:%d/0?ssl_cert_reqs=required&ssl_check_hostname=false&ssl_ca_certs=%s",
      google_redis_instance.this[0].auth_string,
      google_redis_instance.this[0].host,
      google_redis_instance.this[0].port,
      "${local.redis_ca_dir}/${local.redis_ca_file}",
    )
    ca = join("\n", [for cert in google_redis_instance.this[0].server_ca_certs : cert.cert])
  } : {}
}

resource "google_secret_manager_secret" "redis" {
  for_each = local.redis_secrets

  secret_id = "${local.prefix}-redis-${each.key}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_version" "redis" {
  for_each = local.redis_secrets

  secret      = google_secret_manager_secret.redis[each.key].id
  secret_data = each.value
}
