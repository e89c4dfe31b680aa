variable "project_id" {
  type        = string
  description = "ID of the project that owns the service accounts."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the service account IDs, e.g. \"vp-dev\" gives vp-dev-pipelines, vp-dev-serving and vp-dev-ci. At most 19 characters."
  default     = "voltpipe"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}$", var.name_prefix))
    error_message = "name_prefix must match ^[a-z][a-z0-9-]{1,18}$ so that the account IDs stay within 30 characters."
  }
}

variable "bigquery_dataset_ids" {
  type        = map(string)
  description = "BigQuery datasets (in var.project_id) on which the runner gets roles/bigquery.dataEditor, as static key => dataset ID (static keys keep for_each plannable)."
  default     = {}
}

variable "runner_bucket_names" {
  type        = map(string)
  description = "Buckets (pipeline root, staging) on which the runner gets roles/storage.objectAdmin, as static key => bucket name."
  default     = {}
}

variable "model_bucket_names" {
  type        = map(string)
  description = "Buckets holding model artifacts on which the serving account gets roles/storage.objectViewer, as static key => bucket name."
  default     = {}
}

variable "artifact_repositories" {
  type = map(object({
    location      = string
    repository_id = string
  }))
  description = "Artifact Registry repositories (Docker images, KFP templates) the runner reads and CI writes, as static key => repository."
  default     = {}
}

variable "runner_extra_project_roles" {
  type        = list(string)
  description = "Additional project-level roles for the runner, for data sources outside this stack. Keep empty if you can."
  default     = []
}

variable "ci_can_act_as_runner" {
  type        = bool
  description = "Let the CI service account act as the pipeline runner (to submit smoke runs on Vertex AI). Off by default: CI then only builds and pushes images."
  default     = false
}
