"""The registry interface and model references (the factory is `voltpipe.registry.factory`)."""

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
        self,
        name: str,
        model_dir: str | Path,
        metadata: dict[str, Any],
        extra_files: dict[str, Path] | None = None,
    ) -> ModelVersion:
        """Adds `model_dir` (plus `extra_files`, by target name) as the next version of `name`."""
        ...

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
