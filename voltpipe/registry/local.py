"""A model registry in a local folder: numbered versions, aliases, metadata; atomic updates.

Layout::

    ROOT/NAME/versions/N/          the model files and metadata.json (written once)
    ROOT/NAME/aliases.json         {"champion": "N", ...} (replaced atomically)
    ROOT/NAME/.lock                serialises writers (fcntl)

Files and folders get the permissions the process's umask gives (as ``cp`` would), so a
server running as another user in the same group can read them. A damaged file is reported
in one line naming it and what to do (`RegistryFileError`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voltpipe.errors import ConfigError, DataError
from voltpipe.model_dir import REGISTRY_METADATA_FILE as METADATA_FILE
from voltpipe.registry.base import CHAMPION, ModelVersion

log = logging.getLogger("voltpipe.registry")

ALIASES_FILE = "aliases.json"


class RegistryFileError(DataError):
    """A registry file is missing, unreadable or not what voltpipe wrote; names the file."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_permissions(path: Path) -> None:
    """Gives `path` (and, for a folder, everything in it) the umask's default permissions:
    mkstemp/mkdtemp create 0600/0700, which another user's server could not read."""
    mask = _umask()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def _write_json(path: Path, data: Any) -> None:
    """Atomically replaces `path` with `data` as JSON, readable as the umask allows."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RegistryFileError(
            f"writing registry file {path} failed ({exc.strerror or exc}): free some space or "
            "fix the folder's permissions, then run again"
        ) from exc
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data, indent=2, sort_keys=True, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        _publish_permissions(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise RegistryFileError(
            f"writing registry file {path} failed ({exc.strerror or exc}); it is unchanged: "
            "free some space or fix the folder's permissions, then run again"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json_file(path: Path, what: str, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RegistryFileError(
            f"registry file {path} ({what}) is unreadable: {reason}; {fix}"
        ) from None


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
        try:
            (d / "versions").mkdir(parents=True, exist_ok=True)
            lock = open(d / ".lock", "a")  # noqa: SIM115 - held for the with-block below
        except OSError as exc:
            raise RegistryFileError(
                f"the registry folder {d} is not writable ({exc.strerror or exc}): check its "
                "permissions and free space, or point `registry` at another folder"
            ) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _aliases(self, d: Path) -> dict[str, str]:
        f = d / ALIASES_FILE
        fix = (
            "restore it, or delete it to start with no champion (the versions are kept; "
            "`voltpipe run training` then promotes a new one)"
        )
        try:
            data = _read_json_file(f, "the aliases", fix)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise RegistryFileError(
                f"registry file {f} (the aliases) is not an object of alias -> version: {fix}"
            )
        return data

    def register(
        self,
        name: str,
        model_dir: str | Path,
        metadata: dict[str, Any],
        extra_files: dict[str, Path] | None = None,
    ) -> ModelVersion:
        """Copies `model_dir` (plus `extra_files`, by target name) in as the next version;
        the version appears whole or not at all.

        With ``metadata["model_fingerprint"]`` set, a version holding the same fingerprint is
        returned instead of registering the same model again (a retried run reuses it).
        """
        fingerprint = metadata.get("model_fingerprint")
        with self._locked(name) as d:
            if fingerprint:
                for existing in self._readable_versions(d, name):
                    if existing.metadata.get("model_fingerprint") == fingerprint:
                        log.info("model %s version %s is this model", name, existing.version)
                        return existing
            # Every numbered folder counts, readable or not: a number is never reused.
            numbers = [int(p.name) for p in (d / "versions").iterdir() if p.name.isdigit()]
            version = str(max(numbers, default=0) + 1)
            tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=d))
            try:
                shutil.copytree(model_dir, tmp / "model", dirs_exist_ok=False)
                for target, source in (extra_files or {}).items():
                    shutil.copyfile(source, tmp / "model" / target)
                meta = {**metadata, "name": name, "version": version}
                (tmp / "model" / METADATA_FILE).write_text(
                    json.dumps(meta, indent=2, sort_keys=True, default=str)
                )
                _publish_permissions(tmp / "model")
                os.replace(tmp / "model", d / "versions" / version)
            except OSError as exc:
                raise RegistryFileError(
                    f"registering {name} in {d} failed ({exc.strerror or exc}); no version was "
                    "added and the champion is unchanged: free some space or fix the folder's "
                    "permissions, then run again"
                ) from exc
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return self._version(d, name, version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._locked(name) as d:
            if not (d / "versions" / version).is_dir():
                raise ConfigError(f"model {name} has no version {version}")
            aliases = self._aliases(d)
            aliases[alias] = version
            _write_json(d / ALIASES_FILE, aliases)

    def compare_and_set_alias(
        self, name: str, alias: str, version: str, *, expected: str | None
    ) -> str | None:
        """Points `alias` at `version` only if it still points at `expected` (None: unset).

        Returns:
            None when the alias moved (or already pointed at `version`); otherwise the version
            the alias points at now (``""`` when unset), and nothing changed.
        """
        with self._locked(name) as d:
            if not (d / "versions" / version).is_dir():
                raise ConfigError(f"model {name} has no version {version}")
            aliases = self._aliases(d)
            current = aliases.get(alias)
            if current == version:
                return None
            if current != expected:
                return current or ""
            aliases[alias] = version
            _write_json(d / ALIASES_FILE, aliases)
            return None

    def remove_alias(self, name: str, alias: str, version: str | None = None) -> None:
        """Removes `alias` (only while it points at `version`, when given)."""
        with self._locked(name) as d:
            aliases = self._aliases(d)
            if alias in aliases and (version is None or aliases[alias] == version):
                del aliases[alias]
                _write_json(d / ALIASES_FILE, aliases)

    def get(self, name: str, selector: str = CHAMPION) -> ModelVersion | None:
        d = self._model_dir(name)
        if not d.exists():
            return None
        version = selector if selector.isdigit() else self._aliases(d).get(selector)
        if version is None or not (d / "versions" / version).is_dir():
            return None
        return self._version(d, name, version)

    def versions(self, name: str) -> list[ModelVersion]:
        """The readable versions, oldest first; a damaged or stray version folder is skipped
        with a warning naming it."""
        d = self._model_dir(name)
        if not (d / "versions").exists():
            return []
        return self._readable_versions(d, name)

    def _readable_versions(self, d: Path, name: str) -> list[ModelVersion]:
        out = []
        aliases = self._aliases(d)
        nums = sorted(int(p.name) for p in (d / "versions").iterdir() if p.name.isdigit())
        for n in nums:
            try:
                out.append(self._version(d, name, str(n), aliases))
            except RegistryFileError as exc:
                log.warning("skipping a version: %s", exc)
        return out

    def _version(
        self, d: Path, name: str, version: str, aliases: dict[str, str] | None = None
    ) -> ModelVersion:
        path = d / "versions" / version
        meta_path = path / METADATA_FILE
        fix = f"restore the file, or remove the folder {path} if it is not a model version"
        try:
            meta = _read_json_file(meta_path, f"version {version}'s metadata", fix)
        except FileNotFoundError:
            raise RegistryFileError(
                f"registry folder {path} has no {METADATA_FILE}, so it is not a complete model "
                f"version: {fix}"
            ) from None
        if not isinstance(meta, dict):
            raise RegistryFileError(
                f"registry file {meta_path} (version {version}'s metadata) is not a JSON object; "
                f"{fix}"
            )
        if aliases is None:
            aliases = self._aliases(d)
        return ModelVersion(
            name=name,
            version=version,
            uri=str(path),
            metadata=meta,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        )
