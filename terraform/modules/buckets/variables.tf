variable "project_id" {
  type        = string
  description = "ID of the project that owns the buckets."
}

variable "location" {
  type        = string
  description = "Bucket location; use the Vertex AI region (e.g. europe-west1) so pipeline I/O stays in-region."
}

variable "name_prefix" {
  type        = string
  description = "Middle part of the default bucket names: <project_id>-<name_prefix>-pipeline-root and -staging."
  default     = "voltpipe"
}

variable "pipeline_root_bucket_name" {
  type        = string
  description = "Explicit name of the pipeline root bucket; null derives it from project_id and name_prefix."
  default     = null
}

variable "staging_bucket_name" {
  type        = string
  description = "Explicit name of the staging bucket; null derives it from project_id and name_prefix."
  default     = null
}

variable "pipeline_root_retention_days" {
  type        = number
  description = "Days after which pipeline outputs in the pipeline root bucket are deleted; 0 keeps them forever."
  default     = 90

  validation {
    condition     = var.pipeline_root_retention_days >= 0
    error_message = "pipeline_root_retention_days must be 0 (keep) or a positive number of days."
  }
}

variable "staging_retention_days" {
  type        = number
  description = "Days after which objects in the staging bucket are deleted; 0 keeps them forever."
  default     = 14

  validation {
    condition     = var.staging_retention_days >= 0
    error_message = "staging_retention_days must be 0 (keep) or a positive number of days."
  }
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days a noncurrent (overwritten or deleted) object version is kept before deletion."
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "max_noncurrent_versions" {
  type        = number
  description = "Noncurrent versions of one object beyond this count are deleted early."
  default     = 3
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key (projects/.../cryptoKeys/...) for CMEK default encryption; null uses Google-managed keys. The Cloud Storage service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  default     = null
}

variable "log_bucket" {
  type        = string
  description = "Bucket that receives usage and storage logs; null disables usage logging (Cloud Audit Logs still apply)."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to both buckets."
  default     = {}
}

variable "force_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete non-empty buckets. Keep false outside throw-away environments."
  default     = false
}
