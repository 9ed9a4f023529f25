locals {
  dashboard_charts = [
    { title = "Requests per second by function", metric = google_logging_metric.requests.name, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = "metric.label.function" },
    { title = "5xx per second by function", metric = google_logging_metric.errors.name, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = "metric.label.function" },
    { title = "Latency p95 (ms) by function", metric = google_logging_metric.latency.name, aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group = "metric.label.function" },
    { title = "Cache lookups per second by level", metric = google_logging_metric.cache.name, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = "metric.label.level" },
    { title = "Prediction drift score by model", metric = google_logging_metric.drift.name, aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_99", group = "metric.label.model_id" },
  ]
}

resource "google_monitoring_dashboard" "this" {
  dashboard_json = jsonencode({
    displayName = "IPO valuation (${local.prefix})"
    mosaicLayout = {
      columns = 12
      tiles = concat(
        [
          for i, chart in local.dashboard_charts : {
            xPos   = (i % 2) * 6
            yPos   = floor(i / 2) * 4
            width  = 6
            height = 4
            widget = {
              title = chart.title
              xyChart = {
                dataSets = [{
                  plotType = "LINE"
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = "metric.type=\"${local.metric_prefix}/${chart.metric}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = {
                        alignmentPeriod    = "60s"
                        perSeriesAligner   = chart.aligner
                        crossSeriesReducer = chart.reducer
                        groupByFields      = [chart.group]
                      }
                    }
                  }
                }]
              }
            }
          }
        ],
        [{
          xPos   = 6
          yPos   = 8
          width  = 6
          height = 4
          widget = {
            title = "Memory utilisation p99 by function"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=starts_with(\"${local.prefix}-\")"
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = "ALIGN_PERCENTILE_99"
                      crossSeriesReducer = "REDUCE_MAX"
                      groupByFields      = ["resource.label.service_name"]
                    }
                  }
                }
              }]
            }
          }
        }],
      )
    }
  })

  depends_on = [time_sleep.log_metrics]
}
