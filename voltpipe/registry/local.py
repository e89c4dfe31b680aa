"""A model registry in a local folder: numbered versions, aliases, metadata; atomic updates.

Layout::

    ROOT/NAME/versions/N/          the model files and metadata.json (written once)
    ROOT/NAME/aliases.json         {"champion": "N", ...} (replaced atomically)
    ROOT/NAME/.lock                serialises writers (fcntl)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voltpipe.data.io import write_json_atomic
from voltpipe.errors import ConfigError
from voltpipe.model_dir import REGISTRY_METADATA_FILE as METADATA_FILE
from voltpipe.registry.base import CHAMPION, ModelVersion


class LocalRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"invalid model name {name!r}")
        return self.root / name

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        d = self._model_dir(name)
        (d / "versions").mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _aliases(self, d: Path) -> dict[str, str]:
        f = d / "aliases.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def register(
        self,
        name: str,
        model_dir: str | Path,
        metadata: dict[str, Any],
        extra_files: dict[str, Path] | None = None,
    ) -> ModelVersion:
        """Copies `model_dir` (plus `extra_files`, by target name) in as the next version;
        the version appears whole or not at all."""
        with self._locked(name) as d:
            existing = [int(p.name) for p in (d / "versions").iterdir() if p.name.isdigit()]
            version = str(max(existing, default=0) + 1)
            tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=d))
            try:
                shutil.copytree(model_dir, tmp / "model", dirs_exist_ok=False)
                for target, source in (extra_files or {}).items():
                    shutil.copyfile(source, tmp / "model" / target)
                meta = {**metadata, "name": name, "version": version}
                (tmp / "model" / METADATA_FILE).write_text(
                    json.dumps(meta, indent=2, sort_keys=True, default=str)
                )
                os.replace(tmp / "model", d / "versions" / version)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return self._version(d, name, version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._locked(name) as d:
            if not (d / "versions" / version).is_dir():
                raise ConfigError(f"model {name} has no version {version}")
            aliases = self._aliases(d)
            aliases[alias] = version
            write_json_atomic(d / "aliases.json", aliases)

    def get(self, name: str, selector: str = CHAMPION) -> ModelVersion | None:
        d = self._model_dir(name)
        if not d.exists():
            return None
        version = selector if selector.isdigit() else self._aliases(d).get(selector)
        if version is None or not (d / "versions" / version).is_dir():
            return None
        return self._version(d, name, version)

    def versions(self, name: str) -> list[ModelVersion]:
        d = self._model_dir(name)
        if not (d / "versions").exists():
            return []
        nums = sorted(int(p.name) for p in (d / "versions").iterdir() if p.name.isdigit())
        return [self._version(d, name, str(n)) for n in nums]

    def _version(self, d: Path, name: str, version: str) -> ModelVersion:
        path = d / "versions" / version
        meta = json.loads((path / METADATA_FILE).read_text())
        aliases = tuple(sorted(a for a, v in self._aliases(d).items() if v == version))
        return ModelVersion(
            name=name, version=version, uri=str(path), metadata=meta, aliases=aliases
        )
