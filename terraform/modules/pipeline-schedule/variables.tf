variable "project_id" {
  type        = string
  description = "ID of the project in which the pipeline runs and the scheduler job lives."
}

variable "region" {
  type        = string
  description = "Vertex AI region of the pipeline job, e.g. europe-west1."
}

variable "scheduler_region" {
  type        = string
  description = "Cloud Scheduler region when it differs from var.region (Cloud Scheduler is not in every Vertex AI region); null uses var.region."
  default     = null
}

variable "name" {
  type        = string
  description = "Scheduler job name, also added to the pipeline job's labels as voltpipe-schedule."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lower-case letters, digits and hyphens, start with a letter and be at most 63 characters (it is also a label value)."
  }
}

variable "display_name" {
  type        = string
  description = "Display name of each submitted pipeline job; null uses var.name."
  default     = null
}

variable "description" {
  type        = string
  description = "Description of the scheduler job; null generates one."
  default     = null
}

variable "cron" {
  type        = string
  description = "unix-cron schedule, e.g. \"0 4 * * 1\" for Mondays at 04:00."
}

variable "time_zone" {
  type        = string
  description = "tz database time zone in which var.cron is read, e.g. Europe/Brussels."
  default     = "Etc/UTC"
}

variable "template_uri" {
  type        = string
  description = "Pipeline template in Artifact Registry, e.g. https://europe-west1-kfp.pkg.dev/PROJECT/voltpipe-templates/training/v1.2.0 (a tag or sha256:... version)."

  validation {
    condition     = can(regex("^(https://[a-z0-9-]+-kfp\\.pkg\\.dev/|gs://)", var.template_uri))
    error_message = "template_uri must be an Artifact Registry KFP URL (https://REGION-kfp.pkg.dev/...) or a gs:// path to a compiled pipeline."
  }
}

variable "pipeline_root" {
  type        = string
  description = "gs:// pipeline root for the runs (runtimeConfig.gcsOutputDirectory)."

  validation {
    condition     = startswith(var.pipeline_root, "gs://")
    error_message = "pipeline_root must start with gs://."
  }
}

variable "parameter_values" {
  # `any` rather than map(any): map(any) would convert { days = 30, name = "x" }
  # to all strings, and Vertex AI rejects "30" for an integer parameter.
  type        = any
  description = "Pipeline parameter values (runtimeConfig.parameterValues), e.g. { cutoff_days = 30, model_name = \"load-forecast\" }; values keep their JSON types."
  default     = {}

  validation {
    condition     = can(keys(var.parameter_values))
    error_message = "parameter_values must be a map or object of parameter name => value."
  }
}

variable "service_account_email" {
  type        = string
  description = "Runner service account: the pipeline job runs as it and Cloud Scheduler authenticates with its OAuth token."
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every submitted pipeline job."
  default     = {}
}

variable "network" {
  type        = string
  description = "Full name of a peered VPC network (projects/NUMBER/global/networks/NAME) for the pipeline job; null for none."
  default     = null
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key used as the pipeline job's encryptionSpec; null uses Google-managed keys."
  default     = null
}

variable "paused" {
  type        = bool
  description = "Create the schedule paused."
  default     = false
}

variable "retry_count" {
  type        = number
  description = "Retries when the submission call fails. Keep low: a retried request whose first attempt did reach Vertex AI starts a second run."
  default     = 1
}
