output "runner_email" {
  description = "Email of the pipeline runner service account (voltpipe `service_account`)."
  value       = google_service_account.runner.email
}

output "runner_name" {
  description = "Fully qualified resource name of the pipeline runner service account."
  value       = google_service_account.runner.name
}

output "serving_email" {
  description = "Email of the model serving service account."
  value       = google_service_account.serving.email
}

output "ci_email" {
  description = "Email of the CI service account impersonated by GitHub Actions."
  value       = google_service_account.ci.email
}

output "ci_name" {
  description = "Fully qualified resource name of the CI service account, for IAM bindings on it."
  value       = google_service_account.ci.name
}
