resource "google_vertex_ai_tensorboard" "this" {
  count = var.enabled ? 1 : 0

  project      = var.project_id
  region       = var.region
  display_name = var.display_name
  description  = var.description
  labels       = var.labels

  dynamic "encryption_spec" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }
}
