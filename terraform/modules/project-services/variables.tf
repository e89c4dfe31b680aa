variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project in which to enable the APIs."
}

variable "services" {
  type        = list(string)
  description = "APIs that voltpipe needs. Override only to remove one you manage elsewhere."
  default = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
  ]
}

variable "additional_services" {
  type        = list(string)
  description = "Extra APIs to enable on top of var.services (for example notebooks.googleapis.com)."
  default     = []
}
