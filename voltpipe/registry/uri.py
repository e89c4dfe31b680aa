"""The ``vertex://PROJECT/LOCATION?image=...`` registry URI: written from the config, read by
`voltpipe.registry.open_registry`. Plain strings, no SDK (the config imports this)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from voltpipe.errors import ConfigError

__all__ = ["parse_vertex_uri", "vertex_registry_uri"]


def vertex_registry_uri(
    project: str,
    location: str,
    *,
    image: str,
    api_endpoint: str | None = None,
    labels: dict[str, str] | None = None,
    gcs_mount: str | None = None,
    encryption_key: str | None = None,
) -> str:
    """The registry URI (a plain string, so it can be a pipeline parameter) for these settings."""
    query: list[tuple[str, str]] = [("image", image)]
    if api_endpoint:
        query.append(("api_endpoint", api_endpoint))
    if encryption_key:
        query.append(("encryption_key", encryption_key))
    if gcs_mount:
        query.append(("gcs_mount", gcs_mount))
    query += [(f"label.{k}", v) for k, v in sorted((labels or {}).items())]
    return f"vertex://{project}/{location}?{urlencode(query)}"


def parse_vertex_uri(uri: str) -> dict[str, Any]:
    """`VertexRegistry` arguments from ``vertex://PROJECT/LOCATION?image=...``.

    Query keys: ``image`` (the serving image, required to register), ``api_endpoint``,
    ``gcs_mount`` (where ``gs://`` is mounted; default ``/gcs``), ``encryption_key`` (the CMEK
    key of every version), ``label.KEY=VALUE``.

    Raises:
        ConfigError: no project or location, or an unknown query key.
    """
    parts = urlsplit(uri)
    project, location = parts.netloc, parts.path.strip("/")
    if parts.scheme != "vertex" or not project or not location or "/" in location:
        raise ConfigError(
            f"registry URI {uri!r}: expected vertex://PROJECT/LOCATION[?image=IMAGE&...]"
        )
    kwargs: dict[str, Any] = {"project": project, "location": location, "labels": {}}
    for key, value in parse_qsl(parts.query):
        if key.startswith("label."):
            kwargs["labels"][key.removeprefix("label.")] = value
        elif key in ("image", "api_endpoint", "gcs_mount", "encryption_key"):
            kwargs[key] = value
        else:
            raise ConfigError(
                f"registry URI {uri!r}: unknown option {key!r}; "
                "expected image, api_endpoint, gcs_mount, encryption_key or label.KEY"
            )
    return kwargs
