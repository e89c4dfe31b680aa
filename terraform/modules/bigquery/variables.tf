variable "project_id" {
  type        = string
  description = "ID of the project that owns the datasets (voltpipe `bigquery_project`)."
}

variable "location" {
  type        = string
  description = "BigQuery location of all datasets, e.g. EU or europe-west1 (voltpipe `bigquery_location`)."
}

variable "datasets" {
  type = map(object({
    dataset_id            = optional(string)
    friendly_name         = optional(string)
    description           = optional(string, "Managed by voltpipe Terraform.")
    table_expiration_days = optional(number)
    labels                = optional(map(string), {})
    iam                   = optional(map(list(string)), {})
  }))
  description = "Datasets to create, keyed by a static name (also the dataset ID unless dataset_id is set). `iam` maps a role to members, e.g. {\"roles/bigquery.dataViewer\" = [\"group:analysts@example.com\"]}."
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key used as default CMEK for new tables; null uses Google-managed keys. The BigQuery service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to every dataset (merged with each dataset's own labels)."
  default     = {}
}

variable "delete_contents_on_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete datasets that still contain tables."
  default     = false
}
