variable "backends" {
  description = "Per function name (x-ipo-function), the HTTPS address API Gateway forwards to and its deadline in seconds."
  type = map(object({
    address          = string
    deadline_seconds = number
  }))
}

variable "jwt" {
  description = "The platform's token issuer: exact issuer, JWKS address and accepted audience."
  type = object({
    audience = string
    issuer   = string
    jwks_url = string
  })
}

variable "openapi_yaml" {
  description = "Text of common/api/openapi.yaml, the route table the local gateway also reads."
  type        = string
}

variable "service_token_audience" {
  description = "Audience of the Google-signed ID tokens that service accounts (Cloud Scheduler, the smoke test) present."
  type        = string
}
