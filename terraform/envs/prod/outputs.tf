# Names match voltpipe configuration keys: `voltpipe ... --terraform-output FILE`
# reads `terraform output -json > FILE`.

output "vertex_project" {
  description = "Project in which Vertex AI pipelines run."
  value       = module.project_services.project_id
}

output "vertex_location" {
  description = "Vertex AI region."
  value       = var.region
}

output "pipeline_root" {
  description = "gs:// pipeline root for pipeline runs."
  value       = module.buckets.pipeline_root
}

output "staging_bucket" {
  description = "gs:// staging bucket (Vertex AI SDK staging, temporary files)."
  value       = module.buckets.staging_uri
}

output "service_account" {
  description = "Email of the pipeline runner service account."
  value       = module.service_accounts.runner_email
}

output "bigquery_project" {
  description = "Project of the BigQuery datasets."
  value       = module.bigquery.project_id
}

output "bigquery_location" {
  description = "Location of the BigQuery datasets."
  value       = module.bigquery.location
}

output "bigquery_datasets" {
  description = "Map of dataset key => project.dataset."
  value       = module.bigquery.datasets
}

output "image_repository" {
  description = "Artifact Registry Docker path for the voltpipe image (REGION-docker.pkg.dev/PROJECT/REPO)."
  value       = module.artifact_registry.image_repository
}

output "template_repository" {
  description = "Artifact Registry KFP URL for pipeline templates (https://REGION-kfp.pkg.dev/PROJECT/REPO)."
  value       = module.artifact_registry.template_repository
}

output "serving_service_account" {
  description = "Email of the service account used by Vertex AI endpoints."
  value       = module.service_accounts.serving_email
}

output "workload_identity_provider" {
  description = "Workload identity provider for GitHub Actions (repository variable WIF_PROVIDER)."
  value       = module.github_wif.workload_identity_provider
}

output "ci_service_account" {
  description = "Email of the CI service account (repository variable CI_SERVICE_ACCOUNT)."
  value       = module.service_accounts.ci_email
}

output "tensorboard" {
  description = "Vertex AI TensorBoard resource name, or null when disabled."
  value       = module.tensorboard.tensorboard_id
}

output "schedules" {
  description = "Map of schedule key => Cloud Scheduler job ID."
  value       = { for k, s in module.schedules : k => s.scheduler_job_id }
}
