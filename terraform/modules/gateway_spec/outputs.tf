output "functions_referenced" {
  description = "Every function some route of the spec names (x-ipo-function)."
  value       = local.functions_referenced
}

output "spec" {
  description = "The API Gateway configuration document (OpenAPI 2.0, JSON)."
  value       = jsonencode(local.spec)

  precondition {
    condition     = length(local.unknown_functions) == 0
    error_message = "common/api/openapi.yaml routes to functions that are not deployed (no entry in backends): ${join(", ", sort(local.unknown_functions))}."
  }
}

output "spec_sha256" {
  description = "SHA-256 of the rendered document; part of the API config's id."
  value       = sha256(jsonencode(local.spec))

  precondition {
    condition     = length(local.unknown_functions) == 0
    error_message = "common/api/openapi.yaml routes to functions that are not deployed (no entry in backends): ${join(", ", sort(local.unknown_functions))}."
  }
}
