locals {
  runner_member  = "serviceAccount:${google_service_account.runner.email}"
  serving_member = "serviceAccount:${google_service_account.serving.email}"
  ci_member      = "serviceAccount:${google_service_account.ci.email}"

  # Roles that only exist at project level (there is no resource to bind them on).
  runner_project_roles = toset(concat([
    "roles/aiplatform.user",
    "roles/bigquery.jobUser",
    "roles/bigquery.readSessionUser",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ], var.runner_extra_project_roles))

  serving_project_roles = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
  ])

  ci_project_roles = toset([
    "roles/aiplatform.user",
  ])

}

# --- Service accounts ---------------------------------------------------------

resource "google_service_account" "runner" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pipelines"
  display_name = "voltpipe pipeline runner (${var.name_prefix})"
  description  = "Runs Vertex AI pipeline jobs and their components."
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-serving"
  display_name = "voltpipe model serving (${var.name_prefix})"
  description  = "Identity of Vertex AI endpoints serving voltpipe models."
}

resource "google_service_account" "ci" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-ci"
  display_name = "voltpipe CI/CD (${var.name_prefix})"
  description  = "Used by GitHub Actions through Workload Identity Federation to push images and templates."
}

# --- Pipeline runner ----------------------------------------------------------

resource "google_project_iam_member" "runner" {
  for_each = local.runner_project_roles

  project = var.project_id
  role    = each.value
  member  = local.runner_member
}

resource "google_bigquery_dataset_iam_member" "runner_data_editor" {
  for_each = var.bigquery_dataset_ids

  project    = var.project_id
  dataset_id = each.value
  role       = "roles/bigquery.dataEditor"
  member     = local.runner_member
}

resource "google_storage_bucket_iam_member" "runner_pipeline_root" {
  for_each = var.runner_bucket_names

  bucket = each.value
  role   = "roles/storage.objectAdmin"
  member = local.runner_member
}

resource "google_artifact_registry_repository_iam_member" "runner_reader" {
  for_each = var.artifact_repositories

  project    = var.project_id
  location   = each.value.location
  repository = each.value.repository_id
  role       = "roles/artifactregistry.reader"
  member     = local.runner_member
}

# A pipeline job (and a scheduled one) runs "as" the runner: the runner must be
# allowed to act as itself, on itself only.
resource "google_service_account_iam_member" "runner_act_as_self" {
  service_account_id = google_service_account.runner.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.runner_member
}

# --- Serving ------------------------------------------------------------------

resource "google_project_iam_member" "serving" {
  for_each = local.serving_project_roles

  project = var.project_id
  role    = each.value
  member  = local.serving_member
}

resource "google_storage_bucket_iam_member" "serving_model_viewer" {
  for_each = var.model_bucket_names

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = local.serving_member
}

# --- CI -----------------------------------------------------------------------

resource "google_project_iam_member" "ci" {
  for_each = local.ci_project_roles

  project = var.project_id
  role    = each.value
  member  = local.ci_member
}

resource "google_artifact_registry_repository_iam_member" "ci_writer" {
  for_each = var.artifact_repositories

  project    = var.project_id
  location   = each.value.location
  repository = each.value.repository_id
  role       = "roles/artifactregistry.writer"
  member     = local.ci_member
}

# Only when asked (var.ci_can_act_as_runner): CI submitting smoke runs that execute as the
# runner could otherwise use the runner's rights (BigQuery data, the model registry).
resource "google_service_account_iam_member" "ci_act_as_runner" {
  count              = var.ci_can_act_as_runner ? 1 : 0
  service_account_id = google_service_account.runner.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.ci_member
}
