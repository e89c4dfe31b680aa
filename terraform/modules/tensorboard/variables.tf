variable "enabled" {
  type        = bool
  description = "Create the TensorBoard instance. A TensorBoard is billed per GB stored, so it is off by default."
  default     = false
}

variable "project_id" {
  type        = string
  description = "ID of the project that owns the TensorBoard."
}

variable "region" {
  type        = string
  description = "Vertex AI region of the TensorBoard, e.g. europe-west1."
}

variable "display_name" {
  type        = string
  description = "Display name of the TensorBoard instance."
  default     = "voltpipe"
}

variable "description" {
  type        = string
  description = "Description of the TensorBoard instance."
  default     = "Training curves and experiment metrics of voltpipe pipelines."
}

variable "labels" {
  type        = map(string)
  description = "Labels applied to the TensorBoard."
  default     = {}
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key for CMEK (must be in var.region); null uses Google-managed keys. Cannot be changed after creation."
  default     = null
}
