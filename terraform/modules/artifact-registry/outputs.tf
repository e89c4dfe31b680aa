output "docker_repository_id" {
  description = "ID of the Docker repository."
  value       = google_artifact_registry_repository.this["docker"].repository_id
}

output "kfp_repository_id" {
  description = "ID of the KFP template repository."
  value       = google_artifact_registry_repository.this["kfp"].repository_id
}

output "image_repository" {
  description = "Docker registry path for images, e.g. europe-west1-docker.pkg.dev/PROJECT/voltpipe (voltpipe `image_repository`)."
  value       = "${var.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.this["docker"].repository_id}"
}

output "template_repository" {
  description = "KFP template registry URL, e.g. https://europe-west1-kfp.pkg.dev/PROJECT/voltpipe-templates (voltpipe `template_repository`)."
  value       = "https://${var.location}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.this["kfp"].repository_id}"
}

output "repositories" {
  description = "Map of docker/kfp => {location, repository_id}, ready for the service-accounts module."
  value = {
    for k, r in google_artifact_registry_repository.this : k => {
      location      = r.location
      repository_id = r.repository_id
    }
  }
}
