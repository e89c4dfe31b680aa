output "workload_identity_provider" {
  description = "Provider resource name for google-github-actions/auth `workload_identity_provider` (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER)."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "pool_name" {
  description = "Resource name of the workload identity pool."
  value       = google_iam_workload_identity_pool.github.name
}

output "attribute_condition" {
  description = "CEL condition the provider enforces on GitHub tokens."
  value       = local.attribute_condition
}
