"""The registry interface, model references and the factory that picks a backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from voltpipe.errors import ConfigError

CHAMPION = "champion"


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    uri: str
    metadata: dict[str, Any]
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """``NAME@ALIAS``, ``NAME@VERSION``, ``NAME`` (= ``@champion``) or a model folder path."""

    name: str | None = None
    selector: str = CHAMPION
    path: Path | None = None


def parse_model_ref(ref: str) -> ModelRef:
    p = Path(ref)
    if "/" in ref or p.exists():
        return ModelRef(path=p)
    name, _, selector = ref.partition("@")
    if not name:
        raise ConfigError(
            f"model reference {ref!r}: expected NAME[@ALIAS|@VERSION] or a model folder"
        )
    return ModelRef(name=name, selector=selector or CHAMPION)


class Registry(Protocol):
    def register(
        self, name: str, model_dir: str | Path, metadata: dict[str, Any]
    ) -> ModelVersion: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def compare_and_set_alias(
        self, name: str, alias: str, version: str, *, expected: str | None
    ) -> str | None:
        """Moves `alias` to `version` only if it points at `expected` (None: unset); returns
        None when done, else the version it points at now (``""``: unset)."""
        ...

    def remove_alias(self, name: str, alias: str, version: str | None = None) -> None: ...

    def get(self, name: str, selector: str = CHAMPION) -> ModelVersion | None: ...

    def versions(self, name: str) -> list[ModelVersion]: ...


def open_registry(uri: str) -> Registry:
    """Returns the registry for `uri`: a local folder (the default), or the Vertex AI Model
    Registry for ``vertex://PROJECT/LOCATION[?image=IMAGE&...]`` (see `registry.vertex`)."""
    if uri.startswith("vertex://"):
        from voltpipe.registry.vertex import VertexRegistry, parse_vertex_uri

        return VertexRegistry(**parse_vertex_uri(uri))
    from voltpipe.registry.local import LocalRegistry

    return LocalRegistry(Path(uri))
