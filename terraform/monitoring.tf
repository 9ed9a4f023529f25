# Log-based metrics read the functions' structured request lines (common/core/logs.py:
# logger "ipo.request", httpRequest, jsonPayload.function, latency_ms, labels) and the
# drift scan's result lines; the alert policies are the reference design's four.

locals {
  # Lines of this deployment's functions (Cloud Functions 2nd gen log as Cloud Run).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${local.prefix}-\""
  request_lines = "${local.function_logs} AND jsonPayload.logger=\"ipo.request\""

  metric_prefix = "logging.googleapis.com/user"
  metric_names = {
    requests = "${local.prefix}_requests"
    errors   = "${local.prefix}_request_errors"
    latency  = "${local.prefix}_request_latency"
    cache    = "${local.prefix}_cache_lookups"
    drift    = "${local.prefix}_prediction_drift_score"
  }

  # The latency alert watches the functions callers wait on; scheduled jobs, promotion
  # (which runs a verification) and registration take seconds to minutes by design.
  latency_alert_functions = sort([
    for name in keys(local.functions) : name
    if !contains(keys(local.scheduled_jobs), name) && !contains(["promote_model", "register_model"], name)
  ])

  # Thresholds of the alert policies, as the reference design sets them.
  alert_thresholds = {
    latency_mean_ms  = 1000
    error_ratio      = 0.05
    memory_ratio     = 0.9
    drift_score      = 0.1
    latency_window_s = 300
    latency_for_s    = 120
    error_for_s      = 60
    memory_for_s     = 300
    drift_for_s      = 600
  }
}

resource "google_logging_metric" "requests" {
  name        = local.metric_names.requests
  description = "Requests answered by the platform's functions, by function and status."
  filter      = local.request_lines

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function that answered."
    }
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "HTTP status."
    }
  }

  label_extractors = {
    function = "EXTRACT(jsonPayload.function)"
    status   = "EXTRACT(httpRequest.status)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "errors" {
  name        = local.metric_names.errors
  description = "Requests answered with a 5xx status, by function."
  filter      = "${local.request_lines} AND httpRequest.status>=500"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function that answered."
    }
  }

  label_extractors = {
    function = "EXTRACT(jsonPayload.function)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "latency" {
  name            = local.metric_names.latency
  description     = "Time from request to response inside the function, in milliseconds."
  filter          = local.request_lines
  value_extractor = "EXTRACT(jsonPayload.latency_ms)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function that answered."
    }
  }

  label_extractors = {
    function = "EXTRACT(jsonPayload.function)"
  }

  # 1 ms to about 2 minutes in 1.5x steps.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 30
      growth_factor      = 1.5
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "cache" {
  name        = local.metric_names.cache
  description = "Prediction requests by where their rows came from: l1, l2, computed or mixed."
  filter      = "${local.request_lines} AND jsonPayload.labels.cache:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function that answered."
    }
    labels {
      key         = "level"
      value_type  = "STRING"
      description = "Cache level that served the rows."
    }
  }

  label_extractors = {
    function = "EXTRACT(jsonPayload.function)"
    level    = "EXTRACT(jsonPayload.labels.cache)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "drift" {
  name            = local.metric_names.drift
  description     = "Prediction drift score (PSI of the prediction) per model, from each drift scan."
  filter          = "${local.function_logs} AND jsonPayload.job=\"drift_scan\" AND jsonPayload.prediction_drift_score>=0"
  value_extractor = "EXTRACT(jsonPayload.prediction_drift_score)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key         = "model_id"
      value_type  = "STRING"
      description = "The model scanned."
    }
  }

  label_extractors = {
    model_id = "EXTRACT(jsonPayload.model_id)"
  }

  # Steps of 0.01 from 0 to 1, so the 0.1 threshold falls on a bucket boundary.
  bucket_options {
    linear_buckets {
      num_finite_buckets = 100
      width              = 0.01
      offset             = 0
    }
  }

  depends_on = [google_project_service.this]
}

# A new log-based metric takes minutes before alert policies can name it.
resource "time_sleep" "log_metrics" {
  create_duration = "180s"

  triggers = {
    metrics = join(",", [
      google_logging_metric.requests.id,
      google_logging_metric.errors.id,
      google_logging_metric.latency.id,
      google_logging_metric.cache.id,
      google_logging_metric.drift.id,
    ])
  }
}

resource "google_monitoring_alert_policy" "latency" {
  display_name          = "${local.prefix}: mean latency above ${local.alert_thresholds.latency_mean_ms} ms"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Mean request latency over ${local.alert_thresholds.latency_window_s / 60} min above ${local.alert_thresholds.latency_mean_ms} ms"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}/${google_logging_metric.latency.name}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.function = one_of(${join(", ", [for f in local.latency_alert_functions : "\"${f}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = local.alert_thresholds.latency_mean_ms
      duration        = "${local.alert_thresholds.latency_for_s}s"
      aggregations {
        alignment_period     = "${local.alert_thresholds.latency_window_s}s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MEAN"
        group_by_fields      = ["metric.label.function"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function's mean latency has been above ${local.alert_thresholds.latency_mean_ms} ms for ${local.alert_thresholds.latency_for_s / 60} minutes. See docs/MONITORING.md (Alerts) for what to check first."
  }

  depends_on = [time_sleep.log_metrics, google_project_service.this]
}

resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "${local.prefix}: error rate above ${local.alert_thresholds.error_ratio * 100}%"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Share of 5xx responses above ${local.alert_thresholds.error_ratio * 100}% for ${local.alert_thresholds.error_for_s / 60} min"
    condition_threshold {
      filter             = "metric.type=\"${local.metric_prefix}/${google_logging_metric.errors.name}\" AND resource.type=\"cloud_run_revision\""
      denominator_filter = "metric.type=\"${local.metric_prefix}/${google_logging_metric.requests.name}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = local.alert_thresholds.error_ratio
      duration           = "${local.alert_thresholds.error_for_s}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.function"]
      }
      denominator_aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.function"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${local.alert_thresholds.error_ratio * 100}% of a function's requests answered 5xx for a minute. The request lines carry error_code and request_id; see docs/MONITORING.md (Alerts)."
  }

  depends_on = [time_sleep.log_metrics, google_project_service.this]
}

resource "google_monitoring_alert_policy" "memory" {
  display_name          = "${local.prefix}: memory above ${local.alert_thresholds.memory_ratio * 100}% of the limit"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Container memory above ${local.alert_thresholds.memory_ratio * 100}% of its limit for ${local.alert_thresholds.memory_for_s / 60} min"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=starts_with(\"${local.prefix}-\")"
      comparison      = "COMPARISON_GT"
      threshold_value = local.alert_thresholds.memory_ratio
      duration        = "${local.alert_thresholds.memory_for_s}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.service_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function's instances have used more than ${local.alert_thresholds.memory_ratio * 100}% of their memory limit for ${local.alert_thresholds.memory_for_s / 60} minutes: raise its memory in var.functions or lower IPO_MODEL_POOL_SIZE / IPO_CACHE_L1_BYTES."
  }

  depends_on = [time_sleep.log_metrics, google_project_service.this]
}

resource "google_monitoring_alert_policy" "drift" {
  display_name          = "${local.prefix}: prediction drift score above ${local.alert_thresholds.drift_score}"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Prediction drift score above ${local.alert_thresholds.drift_score} for ${local.alert_thresholds.drift_for_s / 60} min"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}/${google_logging_metric.drift.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.alert_thresholds.drift_score
      duration        = "${local.alert_thresholds.drift_for_s}s"
      # The scan runs hourly: an hour's window keeps its latest score in view between
      # scans, so a drifting model stays in alert until a scan finds it back in range.
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["metric.label.model_id"]
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A model's predictions have drifted from its baseline (score above ${local.alert_thresholds.drift_score}). Open the drift report linked from the scan (report_html) and see docs/MONITORING.md (Drift)."
  }

  depends_on = [time_sleep.log_metrics, google_project_service.this]
}
