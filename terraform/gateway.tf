module "gateway_spec" {
  source = "./modules/gateway_spec"

  openapi_yaml           = file("${path.module}/../common/api/openapi.yaml")
  jwt                    = var.jwt
  service_token_audience = var.service_token_audience
  backends = {
    for name, fn in google_cloudfunctions2_function.this : name => {
      address          = fn.service_config[0].uri
      deadline_seconds = local.functions[name].timeout
    }
  }
}

resource "google_api_gateway_api" "this" {
  provider = google-beta

  api_id       = "${local.prefix}-api"
  display_name = "IPO valuation"

  depends_on = [google_project_service.this]
}

resource "google_api_gateway_api_config" "this" {
  provider = google-beta

  api = google_api_gateway_api.this.api_id
  # A config is immutable: a changed spec is a new config, created before the old one
  # is destroyed so the gateway always has one to serve.
  api_config_id = "${local.prefix}-${substr(module.gateway_spec.spec_sha256, 0, 12)}"

  openapi_documents {
    document {
      path     = "openapi.json"
      contents = base64encode(module.gateway_spec.spec)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "this" {
  provider = google-beta

  region       = var.region
  gateway_id   = "${local.prefix}-gateway"
  api_config   = google_api_gateway_api_config.this.id
  display_name = "IPO valuation"
}
