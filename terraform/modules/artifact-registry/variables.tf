variable "project_id" {
  type        = string
  description = "ID of the project that owns the repositories."
}

variable "location" {
  type        = string
  description = "Region of the repositories, e.g. europe-west1 (same as Vertex AI)."
}

variable "docker_repository_id" {
  type        = string
  description = "ID of the Docker repository for the voltpipe image."
  default     = "voltpipe"
}

variable "kfp_repository_id" {
  type        = string
  description = "ID of the KFP repository for compiled pipeline templates."
  default     = "voltpipe-templates"
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key for CMEK; null uses Google-managed keys. The Artifact Registry service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it. Cannot be changed after creation."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to both repositories."
  default     = {}
}

variable "cleanup_policy_dry_run" {
  type        = bool
  description = "When true, cleanup policies are only evaluated and logged, nothing is deleted."
  default     = false
}

variable "keep_tag_prefixes" {
  type        = list(string)
  description = "Tag prefixes that are never cleaned up (releases and moving tags)."
  default     = ["v", "main", "latest"]
}

variable "keep_most_recent_versions" {
  type        = number
  description = "Number of most recent versions of each package always kept."
  default     = 10
}

variable "untagged_retention_days" {
  type        = number
  description = "Untagged versions older than this many days are deleted."
  default     = 14
}

variable "tagged_retention_days" {
  type        = number
  description = "Tagged versions (not protected by a keep rule) older than this many days are deleted."
  default     = 180
}
