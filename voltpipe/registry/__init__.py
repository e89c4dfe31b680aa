"""Model registry: versions, aliases (``champion``) and lineage metadata."""

from voltpipe.registry.base import ModelRef, ModelVersion, parse_model_ref
from voltpipe.registry.factory import open_registry

__all__ = ["ModelRef", "ModelVersion", "open_registry", "parse_model_ref"]
