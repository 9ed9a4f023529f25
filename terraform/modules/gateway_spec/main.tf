# Renders the API Gateway (OpenAPI 2.0) configuration from the one route table,
# common/api/openapi.yaml: the x-ipo-* extensions are removed, each operation gets the
# x-google-backend of the function named by its x-ipo-function, and every operation
# accepts either a platform token or a Google-signed service-account ID token. The
# functions check both again, including the operation's permission.
locals {
  source = yamldecode(var.openapi_yaml)

  functions_referenced = toset(flatten([
    for path, operations in local.source.paths : [
      for method, operation in operations : operation["x-ipo-function"]
    ]
  ]))
  unknown_functions = setsubtract(local.functions_referenced, keys(var.backends))
  # An unknown function renders as an empty address here and fails the outputs'
  # preconditions with its name, rather than as an index error.
  backend = {
    for name in local.functions_referenced : name => lookup(var.backends, name, { address = "", deadline_seconds = 0 })
  }

  paths = {
    for path, operations in local.source.paths : path => {
      for method, operation in operations : method => merge(
        { for key, value in operation : key => value if !startswith(key, "x-ipo-") },
        {
          "x-google-backend" = {
            address          = local.backend[operation["x-ipo-function"]].address
            path_translation = "APPEND_PATH_TO_ADDRESS"
            jwt_audience     = local.backend[operation["x-ipo-function"]].address
            deadline         = local.backend[operation["x-ipo-function"]].deadline_seconds
          }
        },
      )
    }
  }

  spec = merge(
    { for key, value in local.source : key => value if key != "paths" && !startswith(key, "x-ipo-") },
    {
      paths = local.paths
      securityDefinitions = {
        platform_jwt = {
          type               = "oauth2"
          flow               = "implicit"
          authorizationUrl   = ""
          x-google-issuer    = var.jwt.issuer
          x-google-jwks_uri  = var.jwt.jwks_url
          x-google-audiences = var.jwt.audience
        }
        service_account = {
          type               = "oauth2"
          flow               = "implicit"
          authorizationUrl   = ""
          x-google-issuer    = "https://accounts.google.com"
          x-google-jwks_uri  = "https://www.googleapis.com/oauth2/v3/certs"
          x-google-audiences = var.service_token_audience
        }
      }
      security = [{ platform_jwt = [] }, { service_account = [] }]
    },
  )
}
