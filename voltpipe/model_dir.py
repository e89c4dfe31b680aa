"""The model folder: its file names, its metadata (``voltpipe_model.json``) as a typed
`ModelMeta`, and one scoring interface (`RowScorer`) for every row model family.

Written by training (``modelling.train``), read by evaluation, drift, batch prediction, the
registry, deploy and serving. A folder holds::

    voltpipe_model.json     ModelMeta: task, label, family, features plan, classes, ...
    voltpipe_history.json   the training curves
    model.keras             Keras families (mlp, forecasters, autoencoder)
    voltpipe_replay.npz     the NumPy replay of a Keras row model (modelling.replay)
    voltpipe_gbdt.txt       family gbdt: a LightGBM model in its text format
    voltpipe_linear.json    family linear: the weights of the linear model
    voltpipe_blend.json     family blend (auto's mean of candidates): its member sub-folders,
                            ``member-<i>-<family>/``, each a model folder of its own
    voltpipe_clusters.json  task clustering (kmeans, gmm): inputs spec and centres, as JSON
    voltpipe_embedding.json task embedding (pca, autoencoder): inputs spec and weights, as JSON
    metadata.json           written by the registry next to a registered version

No TensorFlow or LightGBM at import time: `load_row_scorer` imports the family's module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voltpipe.errors import DataError

MODEL_FILE = "model.keras"
META_FILE = "voltpipe_model.json"
HISTORY_FILE = "voltpipe_history.json"
REPLAY_FILE = "voltpipe_replay.npz"
GBDT_FILE = "voltpipe_gbdt.txt"
LINEAR_FILE = "voltpipe_linear.json"
BLEND_FILE = "voltpipe_blend.json"
REGISTRY_METADATA_FILE = "metadata.json"
CLUSTER_FILE = "voltpipe_clusters.json"
EMBEDDING_FILE = "voltpipe_embedding.json"
# Tasks whose model is one JSON file (no pickle, no Keras): scored with NumPy alone.
UNSUPERVISED_FILES = {"clustering": CLUSTER_FILE, "embedding": EMBEDDING_FILE}
UNSUPERVISED_FORMATS = {
    "clustering": "voltpipe-clustering-v1",
    "embedding": "voltpipe-embedding-v1",
}

KERAS_FORMAT = "voltpipe-keras-v1"
# Families whose model is one file of their own (no Keras, no TensorFlow), by file name.
FILE_FAMILIES = {"gbdt": GBDT_FILE, "linear": LINEAR_FILE, "blend": BLEND_FILE}
FORMATS = {"gbdt": "voltpipe-gbdt-v1", "linear": "voltpipe-linear-v1", "blend": "voltpipe-blend-v1"}

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class RowScorer(Protocol):
    """A row model (regression, classification, anomaly) scored without TensorFlow.

    ``forward(numeric_names, categorical_names)`` returns a function of packed inputs
    ``(xn float32 (n, k), xc object (n, m))`` (columns in the order of the names given) that
    returns float64 outputs: (n, 1) for regression and anomaly, (n, classes) probabilities for
    classification. The NumPy replay of a Keras model, the GBDT and the linear model all
    implement it.
    """

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward: ...


class FileModel:
    """A fitted row model of a non-Keras family: scores as a `RowScorer` and saves itself as
    one file of the model folder (``FILE_FAMILIES``)."""

    family: str
    numeric: list[str]
    categorical: list[str]
    engine: str = "numpy"

    def forward(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> Forward:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def save(self, folder: str | os.PathLike[str]) -> dict[str, Any]:
        """Writes the model's file atomically; returns its ``model_file`` entry for the meta
        (name, SHA-256, which `check_model_files` verifies, and input column order)."""
        name = FILE_FAMILIES[self.family]
        data = self.to_bytes()
        for stale in {MODEL_FILE, REPLAY_FILE, *FILE_FAMILIES.values()} - {name}:
            (Path(folder) / stale).unlink(missing_ok=True)  # another family's leftovers
        write_bytes_atomic(Path(folder) / name, data)
        return {
            "name": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            # the model's input column order (the metadata's feature plan is a JSON object,
            # whose key order is not kept)
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
        }

    def _columns(
        self, numeric: list[str] | None, categorical: list[str] | None
    ) -> tuple[list[int], list[int]]:
        """Where each of the model's own features sits among the caller's columns."""
        numeric = self.numeric if numeric is None else list(numeric)
        categorical = self.categorical if categorical is None else list(categorical)
        if sorted(numeric) != sorted(self.numeric) or sorted(categorical) != sorted(
            self.categorical
        ):
            raise DataError(
                f"the {self.family} model takes numeric {self.numeric} and categorical "
                f"{self.categorical}, not {numeric} and {categorical}"
            )
        return [numeric.index(n) for n in self.numeric], [
            categorical.index(c) for c in self.categorical
        ]


@dataclasses.dataclass
class ModelMeta:
    """``voltpipe_model.json``: what every family writes (other keys stay in `extra`).

    Attributes:
        format: ``voltpipe-keras-v1``, ``voltpipe-gbdt-v1`` or ``voltpipe-linear-v1``.
        family: the family saved in the folder (for ``auto``, the chosen one).
        features: the feature plan (``FeaturePlan.to_dict()``).
        classes: class labels in output order (classification), else None.
        label_stats: ``{mean, std}`` of the label (regression, forecasting), else None.
        rows: rows per split used in training.
        output: what ``predict_raw`` returns.
        training: how training went (``epochs_run``, ``best_epoch``, ``stopped_by``, ...).
        candidates: for ``auto``: every candidate's validation score and fit time.
        model_file: for file families: ``{name, sha256, bytes, numeric, categorical}``: the
            model's file, its checksum and its input columns in order.
    """

    format: str
    task: str
    label: str
    family: str
    features: dict[str, Any]
    classes: list[str] | None = None
    label_stats: dict[str, float] | None = None
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    output: str = ""
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    candidates: list[dict[str, Any]] | None = None
    model_file: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    _TRAINING_KEYS = ("epochs_run", "best_epoch", "stopped_by", "resumed_after_epoch")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        fields = {f.name for f in dataclasses.fields(cls)} - {"extra", "training"}
        known = {k: d[k] for k in fields if k in d}
        training = {k: d[k] for k in cls._TRAINING_KEYS if k in d}
        rest = {k: v for k, v in d.items() if k not in fields and k not in cls._TRAINING_KEYS}
        return cls(
            format=str(known.pop("format", KERAS_FORMAT)),
            task=str(known.pop("task", "")),
            label=str(known.pop("label", "")),
            family=str(known.pop("family", "")),
            features=known.pop("features", {}) or {},
            training=training,
            extra=rest,
            **known,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the training fields flat, as the metadata has always had them)."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "training"):
                continue
            value = getattr(self, f.name)
            if f.name in ("candidates", "model_file") and value is None:
                continue
            out[f.name] = value
        out.update(self.training)
        return out


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's ``voltpipe_model.json`` as a dict.

    Raises:
        DataError: the file is missing or not a JSON object (one message naming the file).
    """
    path = Path(model_dir) / META_FILE
    if not path.exists():
        raise DataError(
            f"{model_dir} is not a voltpipe model folder (no {META_FILE}); give the folder a "
            "training run wrote (voltpipe run training) or a registered version"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"{path} is not readable JSON ({exc}); the model folder is damaged: retrain, or "
            "copy the folder again from the registry"
        ) from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} holds a {type(meta).__name__}, not the model's metadata object")
    return meta


def load_meta(model_dir: str | os.PathLike[str]) -> ModelMeta:
    """The folder's metadata as a `ModelMeta` (see `read_meta`)."""
    return ModelMeta.from_dict(read_meta(model_dir))


def write_meta(model_dir: str | os.PathLike[str], meta: ModelMeta | dict[str, Any]) -> Path:
    """Writes ``voltpipe_model.json`` atomically (temp file, then rename)."""
    data = meta.to_dict() if isinstance(meta, ModelMeta) else meta
    path = Path(model_dir) / META_FILE
    text = json.dumps(data, indent=2, default=_json_default)
    write_bytes_atomic(path, text.encode())
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def family_of(meta: dict[str, Any]) -> str:
    return str(meta.get("family") or "")


def load_row_scorer(
    model_dir: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> RowScorer | None:
    """The TensorFlow-free scorer of a row model folder: its GBDT or linear model, else the
    NumPy replay of its Keras model; None when a Keras model has no replay (or the task is not
    a row task).

    Raises:
        DataError: the family's model file is missing, corrupt or truncated.
    """
    path = Path(model_dir)
    meta = read_meta(path) if meta is None else meta
    if meta.get("task") not in ("regression", "classification", "anomaly"):
        return None
    family = family_of(meta)
    if family in FILE_FAMILIES:
        check_model_files(path, meta)
        data = (path / FILE_FAMILIES[family]).read_bytes()
        if family == "gbdt":
            from voltpipe.modelling.gbdt import GbdtModel

            return GbdtModel.from_bytes(data, meta, path / GBDT_FILE)
        if family == "blend":
            from voltpipe.modelling.blend import load_blend

            return load_blend(path, data, meta)
        from voltpipe.modelling.linear import LinearModel

        return LinearModel.from_bytes(data, meta, path / LINEAR_FILE)
    from voltpipe.modelling.replay import Replay

    return Replay.load(path)


def check_model_files(
    model_dir: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> None:
    """Checks the folder's model file without loading a framework: a Keras archive whose
    members pass their CRC check, or a GBDT/linear file whose SHA-256 matches the metadata.

    Raises:
        DataError: the file is missing, truncated, corrupted or of the wrong kind.
    """
    path = Path(model_dir)
    meta = read_meta(path) if meta is None else meta
    if meta.get("task") in UNSUPERVISED_FILES:
        read_unsupervised_file(path, meta)
        return
    if (meta.get("forecasting") or {}).get("members"):  # gbdt/statistical/auto forecasters
        from voltpipe.modelling.forecast_auto import member_files

        missing = [n for n in member_files(meta) if not (path / n).is_file()]
        if missing:
            raise DataError(f"{model_dir} lacks the forecaster file(s) {', '.join(missing)}")
        return
    family = family_of(meta)
    if family not in FILE_FAMILIES:
        _check_keras_archive(path / MODEL_FILE)
        return
    target = path / FILE_FAMILIES[family]
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{target} is missing or unreadable ({exc.strerror}): the {family} model file"
        ) from None
    expected = (meta.get("model_file") or {}).get("sha256")
    if not expected:
        raise DataError(f"{path / META_FILE} names no model_file checksum for the {family} model")
    if hashlib.sha256(data).hexdigest() != expected:
        raise DataError(
            f"{target} is corrupted or truncated ({len(data)} bytes; its SHA-256 does not match "
            f"{META_FILE}): retrain, or copy the folder again from the registry"
        )
    if family == "blend":  # and every member, by its own rule
        from voltpipe.modelling.blend import member_folders

        for sub, digest in member_folders(path, data):
            member_meta = sub / META_FILE
            try:
                ok = hashlib.sha256(member_meta.read_bytes()).hexdigest() == digest
            except OSError as exc:
                raise DataError(
                    f"{member_meta} is missing or unreadable ({exc.strerror}): a blend member"
                ) from None
            if not ok:
                raise DataError(
                    f"{member_meta} does not match {target} (SHA-256): the blend member is "
                    "damaged; retrain, or copy the folder again from the registry"
                )
            check_model_files(sub)


def write_unsupervised_file(
    model_dir: str | os.PathLike[str], task: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Writes a clustering or embedding model's JSON file atomically (removing another
    family's model files); returns its ``model_file`` entry (name, SHA-256, bytes)."""
    folder = Path(model_dir)
    name = UNSUPERVISED_FILES[task]
    data = json.dumps(payload, default=_json_default).encode()
    stale = {MODEL_FILE, REPLAY_FILE, *FILE_FAMILIES.values(), *UNSUPERVISED_FILES.values()}
    for other in stale - {name}:
        (folder / other).unlink(missing_ok=True)
    write_bytes_atomic(folder / name, data)
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def read_unsupervised_file(
    model_dir: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON payload of a clustering or embedding model, checked against its SHA-256.

    Raises:
        DataError: the file is missing, corrupted, truncated or not a JSON object.
    """
    path = Path(model_dir)
    meta = read_meta(path) if meta is None else meta
    task = str(meta.get("task"))
    if task not in UNSUPERVISED_FILES:
        raise DataError(f"{path} holds a {task} model, not a clustering or embedding model")
    target = path / UNSUPERVISED_FILES[task]
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{target} is missing or unreadable ({exc.strerror}): the {task} model file"
        ) from None
    expected = (meta.get("model_file") or {}).get("sha256")
    if not expected or hashlib.sha256(data).hexdigest() != expected:
        raise DataError(
            f"{target} is corrupted or truncated (its SHA-256 does not match {META_FILE}): "
            "retrain, or copy the folder again from the registry"
        )
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise DataError(f"{target} holds a {type(payload).__name__}, not a model object")
    return payload


def _check_keras_archive(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable Keras archive: {exc}") from None
    if bad is not None:
        raise DataError(f"{path} is corrupted: {bad} fails its CRC check")
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        raise DataError(f"{path} is not a Keras model archive (no {', '.join(sorted(missing))})")


def packed_inputs(
    columns: dict[str, np.ndarray], numeric: list[str], categorical: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(xn, xc)`` from (n, 1) feature columns by name (as ``features.model_inputs`` makes)."""
    n = len(next(iter(columns.values()))) if columns else 0
    xn = (
        np.hstack([columns[k] for k in numeric]).astype(np.float32)
        if numeric
        else np.empty((n, 0), np.float32)
    )
    xc = np.hstack([columns[k] for k in categorical]) if categorical else np.empty((n, 0), object)
    return xn, xc
