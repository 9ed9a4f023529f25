variable "alert_notification_channels" {
  description = "Notification channels (projects/<p>/notificationChannels/<id>) every alert policy notifies; empty: alerts show in the console only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must be a full name: projects/<project>/notificationChannels/<id>."
  }
}

variable "audit_hmac_key_version" {
  description = "Version number of the audit chain's HMAC key, added by hand to the <name_prefix>-audit-hmac-key secret; null: Terraform generates the key and pins the version it creates. Never 'latest'."
  type        = string
  default     = null

  validation {
    condition     = var.audit_hmac_key_version == null || can(regex("^[1-9][0-9]*$", var.audit_hmac_key_version))
    error_message = "audit_hmac_key_version must be a version number such as \"3\"; aliases like \"latest\" are refused so a rotation is always a reviewed change."
  }
}

variable "audit_log_retention" {
  description = "Retention of the bucket that receives Cloud Audit Logs and the audit chain's anchors: days kept, and whether the retention policy is locked (irreversible: the bucket cannot be deleted before its objects age out)."
  type = object({
    days   = optional(number, 400)
    locked = optional(bool, true)
  })
  default = {}

  validation {
    condition     = var.audit_log_retention.days >= 1 && var.audit_log_retention.days <= 3650 && floor(var.audit_log_retention.days) == var.audit_log_retention.days
    error_message = "audit_log_retention.days must be a whole number of days between 1 and 3650."
  }
}

variable "firestore" {
  description = "The Firestore database: id, location (a multi-region such as nam5 or eur3, or a region) and delete protection."
  type = object({
    database_id       = optional(string, "(default)")
    location          = optional(string, "nam5")
    delete_protection = optional(bool, true)
  })
  default = {}

  validation {
    condition     = var.firestore.database_id == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore.database_id))
    error_message = "firestore.database_id must be \"(default)\" or 4-63 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "functions" {
  description = "Per-function overrides of the sizes in functions.tf (keys are function folder names): cpu (\"1\", \"2\", \"4\", \"6\" or \"8\"), memory (e.g. \"2Gi\"), timeout_seconds, min_instances, max_instances, concurrency (requests an instance serves at once; its server gets as many threads)."
  type = map(object({
    cpu             = optional(string)
    memory          = optional(string)
    timeout_seconds = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    concurrency     = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for f in values(var.functions) : f.cpu == null || contains(["1", "2", "4", "6", "8"], coalesce(f.cpu, "1"))])
    error_message = "functions[*].cpu must be \"1\", \"2\", \"4\", \"6\" or \"8\" (Cloud Run's whole-CPU sizes; concurrency above 1 needs at least one CPU)."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.memory == null || can(regex("^[1-9][0-9]*(Mi|Gi)$", coalesce(f.memory, "1Gi")))])
    error_message = "functions[*].memory must look like \"512Mi\" or \"4Gi\"."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout_seconds == null || (coalesce(f.timeout_seconds, 1) >= 1 && coalesce(f.timeout_seconds, 1) <= 3600)])
    error_message = "functions[*].timeout_seconds must be between 1 and 3600."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.concurrency == null || (coalesce(f.concurrency, 1) >= 1 && coalesce(f.concurrency, 1) <= 1000)])
    error_message = "functions[*].concurrency must be between 1 and 1000."
  }

  validation {
    condition = alltrue([for f in values(var.functions) : (
      (f.min_instances == null || coalesce(f.min_instances, 0) >= 0) &&
      (f.max_instances == null || coalesce(f.max_instances, 1) >= 1) &&
      (f.min_instances == null || f.max_instances == null || coalesce(f.min_instances, 0) <= coalesce(f.max_instances, 1))
    )])
    error_message = "functions[*]: min_instances must be at least 0, max_instances at least 1, and min_instances at most max_instances."
  }
}

variable "jwt" {
  description = "The identity provider whose tokens callers present: exact issuer, JWKS address (RS256/ES256; API Gateway verifies against it) and the audience tokens must carry."
  type = object({
    audience = string
    issuer   = string
    jwks_url = string
  })

  validation {
    condition     = startswith(var.jwt.jwks_url, "https://")
    error_message = "jwt.jwks_url must be an https:// address."
  }

  validation {
    condition     = length(trimspace(var.jwt.issuer)) > 0 && length(trimspace(var.jwt.audience)) > 0
    error_message = "jwt.issuer and jwt.audience must not be empty."
  }

  validation {
    condition     = !contains(["https://accounts.google.com", "accounts.google.com"], var.jwt.issuer)
    error_message = "jwt.issuer must be your identity provider's issuer; Google-signed service-account tokens are accepted separately (service_token_audience)."
  }
}

variable "kms_key_rotation_period" {
  description = "How often Cloud KMS rotates the keys, in seconds with an 's' suffix (at most 90 days: 7776000s)."
  type        = string
  default     = "7776000s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.kms_key_rotation_period)) && try(tonumber(trimsuffix(var.kms_key_rotation_period, "s")), 0) >= 86400 && try(tonumber(trimsuffix(var.kms_key_rotation_period, "s")), 0) <= 7776000
    error_message = "kms_key_rotation_period must be between 86400s (1 day) and 7776000s (90 days), written like \"7776000s\"."
  }
}

variable "kms_protection_level" {
  description = "Where the KMS keys live: SOFTWARE or HSM."
  type        = string
  default     = "SOFTWARE"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.kms_protection_level)
    error_message = "kms_protection_level must be SOFTWARE or HSM."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "log_level" {
  description = "Lowest severity the functions log (IPO_LOG_LEVEL). Successful requests log at INFO: above it the request-count metric and the error-rate alert's denominator miss them."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name. One project holds one deployment: the Firestore database, the audit-log sink and the audit configuration are project-wide."
  type        = string
  default     = "ipo"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lower-case letters, digits or hyphens, starting with a letter (service account ids are limited to 30 characters)."
  }
}

variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lower-case letters, digits and hyphens), not a project name or number."
  }
}

variable "redis" {
  description = "Memorystore Redis for the shared cache and rate limits, reached through a Serverless VPC Access connector; off: each instance caches and limits on its own."
  type = object({
    enabled        = optional(bool, false)
    connector_cidr = optional(string, "10.8.0.0/28")
    memory_size_gb = optional(number, 1)
    network        = optional(string, "default")
    tier           = optional(string, "STANDARD_HA")
    version        = optional(string, "REDIS_7_2")
  })
  default = {}

  validation {
    condition     = can(cidrhost(var.redis.connector_cidr, 0)) && endswith(var.redis.connector_cidr, "/28")
    error_message = "redis.connector_cidr must be an unused /28 range, e.g. 10.8.0.0/28."
  }

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis.tier) && var.redis.memory_size_gb >= 1 && var.redis.memory_size_gb <= 300
    error_message = "redis.tier must be BASIC or STANDARD_HA and redis.memory_size_gb between 1 and 300."
  }
}

variable "region" {
  description = "Region of the functions, buckets, keys, gateway and scheduler jobs."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a region such as us-central1 or europe-west1, not a zone."
  }
}

variable "retention_days" {
  description = "Days records holding personal data are kept (IPO_RETENTION_DAYS); experiment assignments also expire through Firestore TTL after this."
  type        = number
  default     = 365

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number between 1 and 3650."
  }
}

variable "schedules" {
  description = "Cron schedules of the scheduled jobs, their time zone, and whether the jobs start paused."
  type = object({
    compliance_scan = optional(string, "0 3 * * *")
    drift_scan      = optional(string, "5 * * * *")
    paused          = optional(bool, false)
    purge_retention = optional(string, "30 3 * * *")
    run_batch_jobs  = optional(string, "* * * * *")
    shadow_replay   = optional(string, "*/15 * * * *")
    time_zone       = optional(string, "Etc/UTC")
    warm_cache      = optional(string, "*/15 * * * *")
  })
  default = {}

  validation {
    condition = alltrue([
      for s in [var.schedules.compliance_scan, var.schedules.drift_scan, var.schedules.purge_retention, var.schedules.run_batch_jobs, var.schedules.shadow_replay, var.schedules.warm_cache] :
      length(split(" ", trimspace(s))) == 5
    ])
    error_message = "Each schedule must be a five-field cron expression, e.g. \"0 3 * * *\"."
  }
}

variable "service_token_audience" {
  description = "Audience of the Google-signed ID tokens that service accounts (Cloud Scheduler, the smoke test) present to the gateway and the functions."
  type        = string
  default     = "ipo-valuation-services"

  validation {
    condition     = length(trimspace(var.service_token_audience)) > 0
    error_message = "service_token_audience must not be empty."
  }
}

variable "smoke_test" {
  description = "A service account for the post-deploy smoke test (read and predict only), and who may mint its ID tokens (a member such as serviceAccount:<n>@cloudbuild.gserviceaccount.com)."
  type = object({
    enabled = optional(bool, true)
    caller  = optional(string)
  })
  default = {}

  validation {
    condition     = var.smoke_test.caller == null || can(regex("^(serviceAccount|user|group):[^@]+@[^@]+$", coalesce(var.smoke_test.caller, "x:y@z")))
    error_message = "smoke_test.caller must be an IAM member such as serviceAccount:123@cloudbuild.gserviceaccount.com."
  }
}
