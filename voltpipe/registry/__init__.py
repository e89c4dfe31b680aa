"""Model registry: versions, aliases (``champion``) and lineage metadata."""

from voltpipe.registry.base import ModelRef, ModelVersion, open_registry, parse_model_ref

__all__ = ["ModelRef", "ModelVersion", "open_registry", "parse_model_ref"]
