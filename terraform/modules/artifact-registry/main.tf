locals {
  repositories = {
    docker = {
      repository_id = var.docker_repository_id
      format        = "DOCKER"
      description   = "voltpipe component and serving images"
    }
    kfp = {
      repository_id = var.kfp_repository_id
      format        = "KFP"
      description   = "voltpipe compiled pipeline templates"
    }
  }
}

resource "google_artifact_registry_repository" "this" {
  for_each = local.repositories
  # checkov:skip=CKV_GCP_84:CMEK is optional (var.kms_key_name); without a key the repository uses Google-managed encryption.

  project       = var.project_id
  location      = var.location
  repository_id = each.value.repository_id
  format        = each.value.format
  description   = each.value.description
  labels        = var.labels
  kms_key_name  = var.kms_key_name

  cleanup_policy_dry_run = var.cleanup_policy_dry_run

  # Images and templates that a release tagged (v1.2.3, main, latest) are kept.
  dynamic "cleanup_policies" {
    for_each = length(var.keep_tag_prefixes) > 0 ? [1] : []
    content {
      id     = "keep-release-tags"
      action = "KEEP"
      condition {
        tag_state    = "TAGGED"
        tag_prefixes = var.keep_tag_prefixes
      }
    }
  }

  cleanup_policies {
    id     = "keep-most-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.keep_most_recent_versions
    }
  }

  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "${var.untagged_retention_days * 86400}s"
    }
  }

  cleanup_policies {
    id     = "delete-old-tagged"
    action = "DELETE"
    condition {
      tag_state  = "TAGGED"
      older_than = "${var.tagged_retention_days * 86400}s"
    }
  }
}
