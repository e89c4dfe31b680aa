locals {
  # Vertex AI PipelineJob resource, see
  # https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.pipelineJobs
  pipeline_job = merge(
    {
      displayName    = coalesce(var.display_name, var.name)
      templateUri    = var.template_uri
      serviceAccount = var.service_account_email
      labels = merge(var.labels, {
        voltpipe-schedule = var.name
      })
      runtimeConfig = {
        gcsOutputDirectory = var.pipeline_root
        parameterValues    = var.parameter_values
      }
    },
    var.network == null ? {} : { network = var.network },
    var.kms_key_name == null ? {} : { encryptionSpec = { kmsKeyName = var.kms_key_name } },
  )

  pipeline_jobs_url = "https://${var.region}-aiplatform.googleapis.com/v1/projects/${var.project_id}/locations/${var.region}/pipelineJobs"
}

resource "google_cloud_scheduler_job" "this" {
  project          = var.project_id
  region           = coalesce(var.scheduler_region, var.region)
  name             = var.name
  description      = coalesce(var.description, "Submits the ${var.name} Vertex AI pipeline (${var.template_uri}).")
  schedule         = var.cron
  time_zone        = var.time_zone
  paused           = var.paused
  attempt_deadline = "60s"

  retry_config {
    retry_count          = var.retry_count
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = local.pipeline_jobs_url
    body        = base64encode(jsonencode(local.pipeline_job))
    headers = {
      "Content-Type" = "application/json"
    }

    # Cloud Scheduler mints an OAuth access token for the runner account; the
    # job itself therefore runs with the same identity as an interactive run.
    oauth_token {
      service_account_email = var.service_account_email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
}
