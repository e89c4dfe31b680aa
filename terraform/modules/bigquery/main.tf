locals {
  # dataset => {role => [members]} flattened to one additive binding each.
  # Members must be known at plan time (literal groups/users), since they are
  # part of the for_each keys.
  iam_bindings = merge([
    for ds_key, ds in var.datasets : merge([
      for role, members in ds.iam : {
        for m in members : "${ds_key}|${role}|${m}" => { dataset = ds_key, role = role, member = m }
      }
    ]...)
  ]...)
}

resource "google_bigquery_dataset" "this" {
  for_each = var.datasets
  # checkov:skip=CKV_GCP_81:CMEK is optional (var.kms_key_name); without a key BigQuery uses Google-managed encryption.

  project                     = var.project_id
  dataset_id                  = coalesce(each.value.dataset_id, each.key)
  friendly_name               = each.value.friendly_name
  description                 = each.value.description
  location                    = var.location
  default_table_expiration_ms = each.value.table_expiration_days == null ? null : each.value.table_expiration_days * 86400000
  delete_contents_on_destroy  = var.delete_contents_on_destroy
  labels                      = merge(var.labels, each.value.labels)

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }
}

# Additive, per-dataset grants: an authoritative `access` list would drop the
# default owners and any grant made elsewhere.
resource "google_bigquery_dataset_iam_member" "this" {
  for_each = local.iam_bindings

  project    = var.project_id
  dataset_id = google_bigquery_dataset.this[each.value.dataset].dataset_id
  role       = each.value.role
  member     = each.value.member
}
