output "pipeline_root_bucket_name" {
  description = "Name of the pipeline root bucket."
  value       = google_storage_bucket.this["pipeline_root"].name
}

output "pipeline_root" {
  description = "Pipeline root URI (gs://...) for voltpipe `pipeline_root`."
  value       = "gs://${google_storage_bucket.this["pipeline_root"].name}"
}

output "staging_bucket_name" {
  description = "Name of the staging bucket."
  value       = google_storage_bucket.this["staging"].name
}

output "staging_uri" {
  description = "Staging bucket URI (gs://...)."
  value       = "gs://${google_storage_bucket.this["staging"].name}"
}
