locals {
  buckets = {
    pipeline_root = {
      name     = coalesce(var.pipeline_root_bucket_name, "${var.project_id}-${var.name_prefix}-pipeline-root")
      ttl_days = var.pipeline_root_retention_days
    }
    staging = {
      name     = coalesce(var.staging_bucket_name, "${var.project_id}-${var.name_prefix}-staging")
      ttl_days = var.staging_retention_days
    }
  }
}

resource "google_storage_bucket" "this" {
  for_each = local.buckets
  # checkov:skip=CKV_GCP_62:Usage logs are optional (var.log_bucket); Cloud Audit Logs are the recommended access trail for these buckets.

  project       = var.project_id
  name          = each.value.name
  location      = var.location
  storage_class = "STANDARD"
  labels        = merge(var.labels, { purpose = replace(each.key, "_", "-") })
  force_destroy = var.force_destroy

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # Old pipeline outputs (live objects) are deleted after ttl_days; 0 keeps them.
  dynamic "lifecycle_rule" {
    for_each = each.value.ttl_days > 0 ? [each.value.ttl_days] : []
    content {
      condition {
        age        = lifecycle_rule.value
        with_state = "LIVE"
      }
      action {
        type = "Delete"
      }
    }
  }

  # Overwritten or deleted objects stay recoverable for a while, then go.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = var.max_noncurrent_versions
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Uploads that never completed cost storage and are never read.
  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.log_bucket == null ? [] : [var.log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = each.value.name
    }
  }
}
