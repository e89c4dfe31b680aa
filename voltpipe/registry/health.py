"""Is the champion usable? The checks deploy's smoke test makes on files, without loading it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from voltpipe.errors import DataError
from voltpipe.registry.base import CHAMPION, ModelVersion, Registry

log = logging.getLogger("voltpipe.registry")


def version_problem(version: ModelVersion) -> str | None:
    """Why `version` could not be served (a damaged model file or metadata), or None.

    Only a version whose files are on this machine (a local registry, or a mounted bucket)
    is checked; others are assumed sound (their deployment checks them).
    """
    from voltpipe.modelling.train import META_FILE, check_model_file, read_model_meta

    folder = Path(version.uri.replace("gs://", "/gcs/", 1))
    if not folder.is_dir():
        return None
    try:
        meta = read_model_meta(folder)
        if not isinstance(meta, dict) or "task" not in meta:
            raise DataError(f"{folder / META_FILE} is not a voltpipe model description")
        check_model_file(folder)  # what deploy's smoke test checks first
    except DataError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:  # a garbled voltpipe_model.json
        return f"{folder / META_FILE} is unreadable: {exc}"
    return None


@dataclasses.dataclass(frozen=True)
class ChampionCheck:
    """The champion to gate against (None: none usable), and the one set aside, with why."""

    champion: ModelVersion | None
    set_aside: ModelVersion | None = None
    problem: str | None = None

    def evaluation_fields(self) -> dict[str, str | None]:
        """What the evaluation records so deploy's compare-and-swap expects the right alias."""
        if self.set_aside is None:
            return {}
        return {"champion_set_aside": self.set_aside.version, "champion_problem": self.problem}


def usable_champion(registry: Registry, name: str) -> ChampionCheck:
    """The champion to gate against; a champion whose files are damaged is set aside.

    A damaged champion is no bar: a healthy challenger may take its place (the problem is
    logged and returned so the caller can report it).
    """
    champion = registry.get(name, CHAMPION)
    if champion is None:
        return ChampionCheck(None)
    problem = version_problem(champion)
    if problem is None:
        return ChampionCheck(champion)
    message = (
        f"the champion ({name} version {champion.version}) cannot be served and is not used as "
        f"the bar: {problem}"
    )
    log.warning("%s", message)
    return ChampionCheck(None, champion, message)
