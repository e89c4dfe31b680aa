terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.30, < 7.0"
    }
  }

  # Partial configuration: the state bucket is given at init time, e.g.
  #   terraform init -backend-config="bucket=my-tf-state-bucket"
  # (create that bucket once, with versioning on, outside this stack).
  backend "gcs" {
    prefix = "voltpipe/dev"
  }
}
