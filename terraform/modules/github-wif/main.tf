locals {
  # Only tokens minted for these repositories (and, optionally, refs) are
  # accepted by the provider at all.
  repository_condition = join(" || ", [for r in var.github_repositories : "assertion.repository == '${r}'"])

  ref_matchers = [
    for ref in var.allowed_refs :
    endswith(ref, "*") ? "assertion.ref.startsWith('${trimsuffix(ref, "*")}')" : "assertion.ref == '${ref}'"
  ]

  ref_condition       = length(local.ref_matchers) == 0 ? "" : " && (${join(" || ", local.ref_matchers)})"
  attribute_condition = "(${local.repository_condition})${local.ref_condition}"
}

resource "google_iam_workload_identity_pool" "github" {
  project                   = var.project_id
  workload_identity_pool_id = var.pool_id
  display_name              = "GitHub Actions"
  description               = "Federates GitHub Actions OIDC tokens; no service account keys are used."
}

resource "google_iam_workload_identity_pool_provider" "github" {
  # checkov:skip=CKV_GCP_125:The condition pins assertion.repository (and optionally assertion.ref), as Google documents for GitHub; this check only recognises an exact assertion.sub match, which breaks for jobs that use GitHub environments.
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = var.provider_id
  display_name                       = "GitHub OIDC"
  description                        = "GitHub Actions OIDC provider restricted to ${join(", ", var.github_repositories)}."

  attribute_mapping = {
    "google.subject"             = "assertion.sub"
    "attribute.actor"            = "assertion.actor"
    "attribute.repository"       = "assertion.repository"
    "attribute.repository_owner" = "assertion.repository_owner"
    "attribute.ref"              = "assertion.ref"
    "attribute.workflow_ref"     = "assertion.job_workflow_ref"
  }

  attribute_condition = local.attribute_condition

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

# Lets workflows of the allowed repositories impersonate the CI account.
resource "google_service_account_iam_member" "ci_workload_identity_user" {
  for_each = toset(var.github_repositories)

  service_account_id = var.ci_service_account_name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/attribute.repository/${each.value}"
}
