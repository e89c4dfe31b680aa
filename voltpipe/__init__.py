"""voltpipe: Kubeflow Pipelines components and pipelines for energy ML on Vertex AI."""

__version__ = "0.1.0"
