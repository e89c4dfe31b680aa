output "tensorboard_id" {
  description = "Resource name of the TensorBoard (projects/NUMBER/locations/REGION/tensorboards/ID), or null when disabled."
  value       = one(google_vertex_ai_tensorboard.this[*].name)
}
