output "scheduler_job_id" {
  description = "ID of the Cloud Scheduler job (projects/PROJECT/locations/REGION/jobs/NAME)."
  value       = google_cloud_scheduler_job.this.id
}

output "pipeline_jobs_url" {
  description = "Vertex AI pipelineJobs endpoint the scheduler calls."
  value       = local.pipeline_jobs_url
}

output "request_body" {
  description = "PipelineJob body (decoded JSON) sent on each trigger, for review."
  value       = local.pipeline_job
}
