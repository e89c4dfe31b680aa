output "project_id" {
  description = "Project ID, returned after every API is enabled so that dependants can wait on it."
  value       = var.project_id
  depends_on  = [google_project_service.this]
}

output "enabled_services" {
  description = "Sorted list of the APIs this module enables."
  value       = sort([for s in google_project_service.this : s.service])
}
