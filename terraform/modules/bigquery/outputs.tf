output "dataset_ids" {
  description = "Map of dataset key => dataset ID."
  value       = { for k, d in google_bigquery_dataset.this : k => d.dataset_id }
}

output "datasets" {
  description = "Map of dataset key => fully qualified `project.dataset` name."
  value       = { for k, d in google_bigquery_dataset.this : k => "${d.project}.${d.dataset_id}" }
}

output "project_id" {
  description = "Project of the datasets (voltpipe `bigquery_project`)."
  value       = var.project_id
}

output "location" {
  description = "Location of the datasets (voltpipe `bigquery_location`)."
  value       = var.location
}
