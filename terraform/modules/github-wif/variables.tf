variable "project_id" {
  type        = string
  description = "ID of the project that hosts the workload identity pool."
}

variable "pool_id" {
  type        = string
  description = "ID of the workload identity pool (4-32 characters). A deleted pool ID cannot be reused for 30 days."
  default     = "github-actions"
}

variable "provider_id" {
  type        = string
  description = "ID of the OIDC provider in the pool."
  default     = "github"
}

variable "github_repositories" {
  type        = list(string)
  description = "GitHub repositories, as OWNER/REPO, whose workflows may impersonate the CI service account."

  validation {
    condition     = length(var.github_repositories) > 0 && alltrue([for r in var.github_repositories : can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", r))])
    error_message = "github_repositories must list at least one repository written as OWNER/REPO."
  }
}

variable "allowed_refs" {
  type        = list(string)
  description = "If not empty, only tokens for these git refs are accepted; a trailing * matches a prefix, e.g. [\"refs/heads/main\", \"refs/tags/v*\"]. Empty accepts every ref of the repositories."
  default     = []
}

variable "ci_service_account_name" {
  type        = string
  description = "Fully qualified name (projects/PROJECT/serviceAccounts/EMAIL) of the CI service account to impersonate."
}
