"""Family blend: the mean of other row models' outputs (probabilities or values), which
``auto`` keeps when the mean scores better than its best candidate.

The folder holds ``voltpipe_blend.json`` (its members' sub-folders and the SHA-256 of each
member's metadata) and one sub-folder per member, each a complete model folder of its family
(``member-0-linear/voltpipe_linear.json``, ``member-1-mlp/model.keras`` with its NumPy replay,
...). It scores with its members' `RowScorer`s, so without TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.errors import DataError
from voltpipe.model_dir import (
    BLEND_FILE,
    FILE_FAMILIES,
    HISTORY_FILE,
    META_FILE,
    MODEL_FILE,
    REPLAY_FILE,
    FileModel,
    Forward,
    RowScorer,
    write_bytes_atomic,
    write_meta,
)

__all__ = ["FORMAT", "BlendModel", "Member", "member_folders"]

FORMAT = "voltpipe-blend-v1"
MEMBER_PREFIX = "member-"


@dataclass
class Member:
    """One member: its family, its fitted model (a `FileModel` or a Keras model), its
    TensorFlow-free scorer (the model itself, or the Keras model's replay), metadata, curves."""

    family: str
    model: Any
    scorer: RowScorer
    meta: dict[str, Any]
    history: dict[str, Any]


def _mean(forwards: list[Forward]) -> Forward:
    def forward(xn: np.ndarray, xc: np.ndarray) -> np.ndarray:
        return np.mean([np.asarray(f(xn, xc), np.float64) for f in forwards], axis=0)

    return forward


class BlendModel(FileModel):
    """The mean of its members' outputs."""

    family = "blend"

    def __init__(self, members: list[Member], numeric: list[str], categorical: list[str]):
        if len(members) < 2:
            raise ValueError("a blend needs at least two members")
        self.members = members
        self.numeric, self.categorical = list(numeric), list(categorical)

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward:
        numeric = self.numeric if numeric is None else list(numeric)
        categorical = self.categorical if categorical is None else list(categorical)
        return _mean([m.scorer.forward(numeric, categorical) for m in self.members])

    def save(self, folder: str | os.PathLike[str]) -> dict[str, Any]:
        """Writes every member's folder, then ``voltpipe_blend.json``; returns the
        ``model_file`` entry for the metadata."""
        out = Path(folder)
        for stale in {MODEL_FILE, REPLAY_FILE, *FILE_FAMILIES.values()}:
            (out / stale).unlink(missing_ok=True)  # another family's leftovers
        for old in out.glob(f"{MEMBER_PREFIX}*"):
            shutil.rmtree(old)
        entries = []
        for i, m in enumerate(self.members):
            sub = out / f"{MEMBER_PREFIX}{i}-{m.family}"
            sub.mkdir(parents=True)
            meta = dict(m.meta)
            if isinstance(m.model, FileModel):
                meta["model_file"] = m.model.save(sub)
                meta["replay"] = False
            else:  # Keras, with the replay it scores with
                from voltpipe.modelling.replay import Replay

                if not isinstance(m.scorer, Replay):
                    raise TypeError(f"blend member {m.family}: a Keras model scores by its Replay")
                m.model.save(sub / f".tmp-{MODEL_FILE}")
                os.replace(sub / f".tmp-{MODEL_FILE}", sub / MODEL_FILE)
                m.scorer.save(sub)
                meta["replay"] = True
            write_meta(sub, meta)
            write_bytes_atomic(sub / HISTORY_FILE, json.dumps(m.history).encode())
            digest = hashlib.sha256((sub / META_FILE).read_bytes()).hexdigest()
            entries.append({"dir": sub.name, "family": m.family, "meta_sha256": digest})
        data = json.dumps({"format": FORMAT, "members": entries}, indent=2).encode()
        write_bytes_atomic(out / BLEND_FILE, data)
        return {
            "name": BLEND_FILE,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "members": entries,
        }


def member_folders(model_dir: Path, data: bytes) -> list[tuple[Path, str]]:
    """``(member folder, its metadata's SHA-256)`` from ``voltpipe_blend.json``'s bytes.

    Raises:
        DataError: the file is not a voltpipe blend, or names a folder outside `model_dir`.
    """
    where = model_dir / BLEND_FILE
    try:
        d = json.loads(data.decode())
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
        members = [(str(e["dir"]), str(e["meta_sha256"])) for e in d["members"]]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where} is not a voltpipe blend ({exc})") from None
    if len(members) < 2 or any(
        not name.startswith(MEMBER_PREFIX) or Path(name).name != name for name, _ in members
    ):
        raise DataError(f"{where} names no valid member folders: {[n for n, _ in members]}")
    return [(model_dir / name, digest) for name, digest in members]


def load_blend(model_dir: Path, data: bytes, meta: dict[str, Any]) -> BlendModel:
    """The blend whose members `check_model_files` verified (see ``model_dir``)."""
    from voltpipe.model_dir import load_row_scorer, read_meta

    members = []
    for sub, _ in member_folders(model_dir, data):
        member_meta = read_meta(sub)
        scorer = load_row_scorer(sub, member_meta)
        if scorer is None:
            raise DataError(
                f"{sub}: the blend's {member_meta.get('family')} member has no NumPy scorer "
                f"({REPLAY_FILE} is missing): retrain, or copy the folder again"
            )
        members.append(Member(str(member_meta.get("family")), None, scorer, member_meta, {}))
    plan = (meta.get("model_file") or {}) or {}
    return BlendModel(members, plan.get("numeric") or [], plan.get("categorical") or [])
