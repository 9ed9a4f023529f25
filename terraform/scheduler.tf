locals {
  # One Cloud Scheduler job per scheduled function; each calls its route on the gateway
  # with a Google-signed ID token of the scheduler's service account. The body bounds
  # the job's own time budget well inside the function's timeout.
  scheduled_jobs = {
    compliance_scan = { path = "/v1/jobs/compliance-scan", schedule = var.schedules.compliance_scan, body = { time_budget_s = 240 } }
    drift_scan      = { path = "/v1/jobs/drift-scan", schedule = var.schedules.drift_scan, body = { time_budget_s = 240 } }
    purge_retention = { path = "/v1/jobs/purge-retention", schedule = var.schedules.purge_retention, body = { time_budget_s = 240 } }
    warm_cache      = { path = "/v1/jobs/warm-cache", schedule = var.schedules.warm_cache, body = { time_budget_s = 120 } }
    # Each call works for 240 s, so about four workers overlap (docs/BATCH.md).
    run_batch_jobs = { path = "/v1/jobs/batch-jobs", schedule = var.schedules.run_batch_jobs, body = { time_budget_s = 240 } }
    shadow_replay  = { path = "/v1/jobs/shadow-replay", schedule = var.schedules.shadow_replay, body = { time_budget_s = 240 } }
  }
}

resource "google_cloud_scheduler_job" "this" {
  for_each = local.scheduled_jobs

  name        = "${local.prefix}-${replace(each.key, "_", "-")}"
  region      = var.region
  description = "POST ${each.value.path} (function ${each.key})"
  schedule    = each.value.schedule
  time_zone   = var.schedules.time_zone
  paused      = var.schedules.paused
  # Cloud Scheduler allows at most 30 minutes for an HTTP attempt.
  attempt_deadline = "${min(local.functions[each.key].timeout + 30, 1800)}s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://${google_api_gateway_gateway.this.default_hostname}${each.value.path}"
    body        = base64encode(jsonencode(each.value.body))
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = var.service_token_audience
    }
  }

  depends_on = [google_project_service.this]
}
