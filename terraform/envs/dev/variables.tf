variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project for this environment."
}

variable "region" {
  type        = string
  description = "Region of Vertex AI, buckets, Artifact Registry and Cloud Scheduler."
  default     = "europe-west1"
}

variable "bigquery_location" {
  type        = string
  description = "BigQuery location of the datasets; null uses var.region (keeps one CMEK key usable everywhere)."
  default     = null
}

variable "github_repository" {
  type        = string
  description = "GitHub repository (OWNER/REPO) whose Actions workflows may deploy to this environment."
}

variable "github_allowed_refs" {
  type        = list(string)
  description = "Git refs allowed to authenticate (a trailing * matches a prefix, e.g. [\"refs/heads/main\", \"refs/tags/v*\"]); empty allows every ref of var.github_repository (any branch or pull request), so the default is main only."
  default     = ["refs/heads/main"]
}

variable "bigquery_datasets" {
  type = map(object({
    dataset_id            = optional(string)
    friendly_name         = optional(string)
    description           = optional(string, "Managed by voltpipe Terraform.")
    table_expiration_days = optional(number)
    labels                = optional(map(string), {})
    iam                   = optional(map(list(string)), {})
  }))
  description = "BigQuery datasets to create (see modules/bigquery); the runner gets roles/bigquery.dataEditor on each."
  default = {
    voltpipe_dev = {
      description           = "voltpipe dev: extracted training data, features and batch predictions."
      table_expiration_days = 30
    }
  }
}

variable "pipeline_root_retention_days" {
  type        = number
  description = "Days after which pipeline outputs under the pipeline root are deleted; 0 keeps them."
  default     = 30
}

variable "kms_key_name" {
  type        = string
  description = "Optional Cloud KMS key (in var.region) for CMEK on buckets, repositories, datasets, TensorBoard and pipeline jobs; null uses Google-managed keys."
  default     = null
}

variable "log_bucket" {
  type        = string
  description = "Optional bucket receiving usage logs of the pipeline root and staging buckets."
  default     = null
}

variable "enable_tensorboard" {
  type        = bool
  description = "Create a Vertex AI TensorBoard instance."
  default     = false
}

variable "time_zone" {
  type        = string
  description = "Default time zone of the schedules."
  default     = "Europe/Brussels"
}

variable "schedules" {
  type        = any
  description = "Recurring pipeline runs keyed by a short name: {pipeline, cron, tag = \"latest\", time_zone, parameter_values = {}, paused = false}. Typed any so that parameter values of mixed types reach Vertex AI unconverted."
  default     = {}
}

variable "labels" {
  type        = map(string)
  description = "Extra labels merged into every labelled resource."
  default     = {}
}
