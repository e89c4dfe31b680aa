locals {
  services = toset(concat(var.services, var.additional_services))
}

resource "google_project_service" "this" {
  for_each = local.services

  project = var.project_id
  service = each.value

  # Other stacks in the same project may rely on these APIs: never switch them
  # off when this module is destroyed.
  disable_on_destroy         = false
  disable_dependent_services = false
}
