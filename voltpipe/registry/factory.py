"""Picks the registry backend for a URI: beside the interface (`registry.base`), not inside it,
so that the backends can import the interface without a cycle."""

from __future__ import annotations

from pathlib import Path

from voltpipe.registry.base import Registry

__all__ = ["open_registry"]


def open_registry(uri: str) -> Registry:
    """Returns the registry for `uri`: a local folder (the default), or the Vertex AI Model
    Registry for ``vertex://PROJECT/LOCATION[?image=IMAGE&...]`` (see `registry.uri`)."""
    if uri.startswith("vertex://"):
        from voltpipe.registry.uri import parse_vertex_uri
        from voltpipe.registry.vertex import VertexRegistry

        return VertexRegistry(**parse_vertex_uri(uri))
    from voltpipe.registry.local import LocalRegistry

    return LocalRegistry(Path(uri))
