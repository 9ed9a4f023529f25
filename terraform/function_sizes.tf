# The size of every function: the defaults below, with var.functions' overrides. This
# file and variables.tf need no provider, so the tests evaluate them with Terraform itself
# (tests/infra/test_terraform_variables.py).

locals {
  # One entry per folder under functions/; the folder name is the entry point. Sizes
  # follow the reference design (DCF: 2 CPU, 4 GiB, 30 s, 1 to 100 instances) and every
  # field can be overridden through var.functions. Cloud Run accepts 1, 2, 4, 6 or 8
  # whole CPUs above one, so the ensemble's 3-CPU ceiling becomes 2 CPUs with 6 GiB.
  # predict_risk takes 8 at once: 16 threads in one process cost about 20% more CPU per
  # request than 8, and a p99 two to three times higher (docs/PERFORMANCE.md, "The worker model").
  # Scheduled jobs take a whole instance each (concurrency 1) and run up to 540 s; the
  # batch workers (run_batch_jobs, started every minute) overlap, up to max at once.
  function_defaults = {
    list_models        = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 20, concurrency = 40 }
    predict_dcf        = { cpu = "2", memory = "4Gi", timeout = 30, min = 1, max = 100, concurrency = 16 }
    predict_cca        = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 16 }
    predict_risk       = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 8 }
    predict_sentiment  = { cpu = "1", memory = "2Gi", timeout = 30, min = 1, max = 50, concurrency = 16 }
    predict_ensemble   = { cpu = "2", memory = "6Gi", timeout = 60, min = 1, max = 50, concurrency = 8 }
    register_model     = { cpu = "1", memory = "2Gi", timeout = 120, min = 0, max = 5, concurrency = 4 }
    promote_model      = { cpu = "1", memory = "2Gi", timeout = 300, min = 0, max = 5, concurrency = 4 }
    rollback_model     = { cpu = "1", memory = "1Gi", timeout = 60, min = 0, max = 5, concurrency = 4 }
    create_experiment  = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 10, concurrency = 16 }
    assign_variant     = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 50, concurrency = 40 }
    record_outcome     = { cpu = "1", memory = "1Gi", timeout = 30, min = 0, max = 50, concurrency = 40 }
    experiment_results = { cpu = "1", memory = "1Gi", timeout = 60, min = 0, max = 10, concurrency = 8 }
    warm_cache         = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    drift_scan         = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    compliance_scan    = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    purge_retention    = { cpu = "1", memory = "1Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
    batch_jobs         = { cpu = "2", memory = "4Gi", timeout = 60, min = 0, max = 10, concurrency = 4 }
    run_batch_jobs     = { cpu = "2", memory = "4Gi", timeout = 540, min = 0, max = 10, concurrency = 1 }
    shadow_replay      = { cpu = "1", memory = "2Gi", timeout = 540, min = 0, max = 1, concurrency = 1 }
  }

  function_sizes = {
    for name, d in local.function_defaults : name => {
      cpu         = coalesce(try(var.functions[name].cpu, null), d.cpu)
      memory      = coalesce(try(var.functions[name].memory, null), d.memory)
      timeout     = coalesce(try(var.functions[name].timeout_seconds, null), d.timeout)
      min         = coalesce(try(var.functions[name].min_instances, null), d.min)
      max         = coalesce(try(var.functions[name].max_instances, null), d.max)
      concurrency = coalesce(try(var.functions[name].concurrency, null), d.concurrency)
    }
  }

  # functions-framework serves each instance with gunicorn: WORKERS processes of THREADS
  # threads each (4 threads per CPU unless THREADS is set). Cloud Run sends an instance up
  # to `concurrency` requests at once, so it gets exactly that many threads: with fewer,
  # the rest would wait in gunicorn's queue while Cloud Run counts them as being served.
  # One worker process per instance, so its threads share one model pool, one cache, one
  # serving snapshot and one audit group commit (docs/DEPLOYMENT.md). Neither is an
  # override of its own: change `concurrency` and THREADS follows.
  functions = {
    for name, f in local.function_sizes : name => merge(f, { threads = f.concurrency, workers = 1 })
  }

  # The server's environment of each function (functions.tf adds it to the settings).
  function_server_environment = {
    for name, f in local.functions : name => {
      THREADS = tostring(f.threads)
      WORKERS = tostring(f.workers)
    }
  }

  # Cloud Run's memory range for each CPU size, in MiB.
  memory_range_mib = {
    "1" = [128, 4096]
    "2" = [128, 8192]
    "4" = [2048, 16384]
    "6" = [4096, 24576]
    "8" = [4096, 32768]
  }
  memory_mib = {
    for name, f in local.functions : name => tonumber(regex("^[0-9]+", f.memory)) * (endswith(f.memory, "Gi") ? 1024 : 1)
  }

  unknown_function_overrides = setsubtract(keys(var.functions), keys(local.function_defaults))

  memory_outside_range = [
    for name, f in local.functions : "${name}: ${f.memory} with ${f.cpu} CPU (allowed ${local.memory_range_mib[f.cpu][0]}Mi to ${local.memory_range_mib[f.cpu][1]}Mi)"
    if local.memory_mib[name] < local.memory_range_mib[f.cpu][0] || local.memory_mib[name] > local.memory_range_mib[f.cpu][1]
  ]
}

# Checks of the resolved sizes, failing the plan before anything is deployed.
resource "terraform_data" "function_sizes" {
  input = local.functions

  lifecycle {
    precondition {
      condition     = length(local.unknown_function_overrides) == 0
      error_message = "var.functions names functions that do not exist: ${join(", ", sort(local.unknown_function_overrides))}. Known: ${join(", ", sort(keys(local.function_defaults)))}."
    }
    precondition {
      condition     = length(local.memory_outside_range) == 0
      error_message = "Memory outside what Cloud Run allows for the CPU count: ${join("; ", local.memory_outside_range)}."
    }
  }
}
