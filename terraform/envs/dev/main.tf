provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  environment       = "dev"
  name_prefix       = "voltpipe-${local.environment}"
  bigquery_location = coalesce(var.bigquery_location, var.region)
  labels = merge({
    app         = "voltpipe"
    environment = local.environment
    managed-by  = "terraform"
  }, var.labels)
}

module "project_services" {
  source = "../../modules/project-services"

  project_id = var.project_id
}

module "buckets" {
  source = "../../modules/buckets"

  project_id                        = module.project_services.project_id
  location                          = var.region
  name_prefix                       = local.name_prefix
  pipeline_root_retention_days      = var.pipeline_root_retention_days
  staging_retention_days            = 7
  noncurrent_version_retention_days = 7
  kms_key_name                      = var.kms_key_name
  log_bucket                        = var.log_bucket
  labels                            = local.labels
  force_destroy                     = true
}

module "artifact_registry" {
  source = "../../modules/artifact-registry"

  project_id              = module.project_services.project_id
  location                = var.region
  kms_key_name            = var.kms_key_name
  labels                  = local.labels
  untagged_retention_days = 7
  tagged_retention_days   = 90
}

module "bigquery" {
  source = "../../modules/bigquery"

  project_id                 = module.project_services.project_id
  location                   = local.bigquery_location
  datasets                   = var.bigquery_datasets
  kms_key_name               = var.kms_key_name
  labels                     = local.labels
  delete_contents_on_destroy = true
}

module "service_accounts" {
  source = "../../modules/service-accounts"

  project_id           = module.project_services.project_id
  name_prefix          = local.name_prefix
  bigquery_dataset_ids = module.bigquery.dataset_ids
  runner_bucket_names = {
    pipeline_root = module.buckets.pipeline_root_bucket_name
    staging       = module.buckets.staging_bucket_name
  }
  # Pipelines write models under the pipeline root; endpoints read them there.
  model_bucket_names = {
    pipeline_root = module.buckets.pipeline_root_bucket_name
  }
  artifact_repositories = module.artifact_registry.repositories
}

module "github_wif" {
  source = "../../modules/github-wif"

  project_id              = module.project_services.project_id
  pool_id                 = "${local.name_prefix}-github"
  github_repositories     = [var.github_repository]
  allowed_refs            = var.github_allowed_refs
  ci_service_account_name = module.service_accounts.ci_name
}

module "tensorboard" {
  source = "../../modules/tensorboard"

  enabled      = var.enable_tensorboard
  project_id   = module.project_services.project_id
  region       = var.region
  display_name = local.name_prefix
  labels       = local.labels
  kms_key_name = var.kms_key_name
}

module "schedules" {
  source   = "../../modules/pipeline-schedule"
  for_each = var.schedules

  project_id            = module.project_services.project_id
  region                = var.region
  name                  = "${local.name_prefix}-${each.key}"
  cron                  = each.value.cron
  time_zone             = try(each.value.time_zone, var.time_zone)
  template_uri          = "${module.artifact_registry.template_repository}/${each.value.pipeline}/${try(each.value.tag, "latest")}"
  pipeline_root         = module.buckets.pipeline_root
  parameter_values      = try(each.value.parameter_values, {})
  service_account_email = module.service_accounts.runner_email
  labels                = local.labels
  kms_key_name          = var.kms_key_name
  paused                = try(each.value.paused, false)
}
