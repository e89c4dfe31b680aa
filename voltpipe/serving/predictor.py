"""The fast predictor: a saved voltpipe model behind one concrete TF function with a fixed signature.

``keras.Model.predict`` costs tens of milliseconds a call (it builds a data pipeline every time);
calling a traced concrete function with ready-made tensors costs a few hundred microseconds.
TensorFlow is imported when a model is loaded, not when this module is.

`Predictor` serves the row tasks (regression, classification, anomaly: an instance is a row of
feature values); ``forecast.ForecastPredictor`` serves forecasting (an instance is a series'
recent history). `load_predictor` picks the one for a model folder's task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voltpipe.errors import ConfigError, DataError
from voltpipe.model_dir import (
    FILE_FAMILIES,
    RowScorer,
    load_row_scorer,
)
from voltpipe.model_dir import read_meta as read_model_meta
from voltpipe.modelling.features import FeaturePlan, model_inputs
from voltpipe.modelling.replay import (
    Forward,
    Replay,
    UnsupportedModel,
    agrees,
    export_replay,
    probe_batch,
)
from voltpipe.serving.predictor_base import BasePredictor, load_keras_model, registry_info
from voltpipe.serving.validation import instances_to_arrays

log = logging.getLogger("voltpipe.serving")

WARMUP_BATCH_SIZES = (1, 2, 8, 64, 1000)
BATCH_ROWS = 65_536
# Batches up to this size take the NumPy replay (modelling.replay); larger ones TensorFlow, whose
# multi-threaded kernels win once the arithmetic outweighs the per-call overhead.
NUMPY_MAX_ROWS = 1024


ROW_TASKS = ("regression", "classification", "anomaly")


def load_predictor(
    model_dir: str | os.PathLike[str],
    *,
    engine: str = "auto",
    warmup_batch_sizes: Iterable[int] | None = None,
) -> BasePredictor:
    """The predictor for the model in `model_dir`, by its task, loaded and warm.

    Args:
        model_dir: a local model folder (``model.keras`` + ``voltpipe_model.json``).
        engine: ``auto`` (small row batches take the NumPy replay when it supports the model),
            ``tensorflow``, or ``numpy`` (row models: the replay saved at training time, every
            batch, TensorFlow never imported; falls back to ``auto`` when none was saved).
        warmup_batch_sizes: batch sizes to warm up; default: the predictor's own.

    Raises:
        DataError: the folder is not a voltpipe model, or its task cannot be served.
    """
    meta = read_model_meta(model_dir)
    warm = {} if warmup_batch_sizes is None else {"warmup_batch_sizes": warmup_batch_sizes}
    if meta.get("task") == "forecasting":
        from voltpipe.serving.forecast import ForecastPredictor

        return ForecastPredictor.from_dir(model_dir, **warm)
    if meta.get("task") in ("clustering", "embedding"):  # NumPy only
        from voltpipe.serving.unsupervised import UnsupervisedPredictor

        return UnsupervisedPredictor.from_dir(model_dir, **warm)
    return Predictor.from_dir(model_dir, engine=engine, **warm)


def _named(path: Path) -> dict[str, Any]:
    name, version = registry_info(path)
    return {"name": name, "version": version}


class Predictor(BasePredictor):
    """Predicts from JSON-like rows (online) or Arrow tables (batch) with a loaded row model.

    Attributes:
        task: ``regression``, ``classification`` or ``anomaly``.
        classes: class labels in output order (classification), else None.
        threshold: the reconstruction error above which a row is anomalous (anomaly), else None.
        plan: the feature plan the model was trained with.
        name, version: from the registry metadata when the folder came from a registry.
    """

    def __init__(
        self,
        model: Any,
        meta: dict[str, Any],
        *,
        name: str,
        version: str | None = None,
        engine: str = "auto",
        numpy_max_rows: int = NUMPY_MAX_ROWS,
        replay: RowScorer | None = None,
    ) -> None:
        if engine not in ("auto", "tensorflow", "numpy"):
            raise ConfigError(
                f"predictor engine {engine!r}: expected 'auto', 'tensorflow' or 'numpy'"
            )
        if engine == "numpy" and replay is None:
            raise ConfigError("predictor engine 'numpy' needs the model's saved replay")

        self.meta = meta
        self.task = str(meta["task"])
        if self.task not in ROW_TASKS:
            raise DataError(
                f"task {self.task}: Predictor serves {', '.join(ROW_TASKS)} models; load "
                "others with load_predictor (forecasting: serving.forecast.ForecastPredictor)"
            )
        self.threshold: float | None = None
        if self.task == "anomaly":
            threshold = (meta.get("anomaly") or {}).get("threshold")
            if threshold is None:
                raise DataError(
                    "the model's voltpipe_model.json has task anomaly but no anomaly.threshold"
                )
            self.threshold = float(threshold)
        self.classes: list[str] | None = list(meta["classes"]) if meta.get("classes") else None
        if self.task == "classification" and not self.classes:
            raise DataError(
                "the model's voltpipe_model.json has task classification but no classes"
            )
        self.plan = FeaturePlan.from_dict(meta["features"])
        self.name = name
        self.version = version
        numeric, categorical = list(self.plan.numeric), list(self.plan.categorical)
        self._model = model
        self._fn: Any = None
        self._scorer = replay
        if engine == "numpy" and replay is not None:
            # The replay was checked against the Keras model when it was saved (train_model);
            # a gbdt or linear model has no other engine.
            self.numpy_max_rows = np.iinfo(np.int64).max
            self._forward: Forward | None = replay.forward(numeric, categorical)
            return
        import tensorflow as tf

        self._tf = tf

        # Two packed inputs instead of one tensor per feature: each input costs a conversion and
        # a binding step per call, which dominates the latency of a single-row request.
        def packed(xn: Any, xc: Any) -> Any:
            inputs = {name: xn[:, j : j + 1] for j, name in enumerate(numeric)}
            inputs |= {name: xc[:, j : j + 1] for j, name in enumerate(categorical)}
            return model(inputs, training=False)

        signature = [
            tf.TensorSpec((None, len(numeric)), tf.float32, name="numeric"),
            tf.TensorSpec((None, len(categorical)), tf.string, name="categorical"),
        ]
        self._fn = tf.function(packed, input_signature=signature).get_concrete_function()
        self.numpy_max_rows = numpy_max_rows
        self._forward = (
            self._numpy_forward(model, numeric, categorical) if engine == "auto" else None
        )

    @property
    def engine(self) -> str:
        """``numpy+tensorflow`` when small batches take the NumPy replay, ``numpy`` when every
        batch does (no TensorFlow loaded), else ``tensorflow``."""
        if self._fn is None:
            return str(getattr(self._scorer, "engine", "numpy"))
        return "numpy+tensorflow" if self._forward is not None else "tensorflow"

    def _numpy_forward(
        self, model: Any, numeric: list[str], categorical: list[str]
    ) -> Forward | None:
        """The NumPy replay of `model`, if it supports the model and agrees with TF on a probe batch."""
        try:
            forward = export_replay(model, numeric, categorical).forward()
        except UnsupportedModel as exc:
            log.info("small batches stay on TensorFlow: %s", exc)
            return None
        xn, xc = probe_batch(self.plan)
        if not agrees(forward(xn, xc), self._tf_outputs(xn, xc)):
            log.warning(
                "the NumPy replay disagrees with TensorFlow on this model; using TensorFlow only"
            )
            return None
        return forward

    @classmethod
    def from_dir(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        engine: str = "auto",
        warmup_batch_sizes: Iterable[int] = WARMUP_BATCH_SIZES,
    ) -> Predictor:
        """Loads ``model.keras`` (safe mode) and ``voltpipe_model.json`` and warms the function up.

        With ``engine="numpy"`` and a replay saved beside the model, loads that instead and
        never imports TensorFlow.

        Raises:
            DataError: the folder is not a voltpipe model, or not a row model (forecasting
                models load with `load_predictor`).
        """
        path = Path(model_dir)
        task = read_model_meta(path).get("task")
        if task not in ROW_TASKS:  # fail before paying for TensorFlow
            raise DataError(
                f"{path} holds a {task} model; Predictor serves {', '.join(ROW_TASKS)} models "
                "(use load_predictor, which picks the predictor for the task)"
            )
        meta = read_model_meta(path)
        if meta.get("family") in FILE_FAMILIES:  # gbdt, linear: never TensorFlow
            replay = load_row_scorer(path, meta)
            engine = "numpy"
        else:
            replay = Replay.load(path) if engine == "numpy" else None
        if replay is not None:
            predictor = cls(None, meta, engine="numpy", replay=replay, **_named(path))
        else:
            model, meta, name, version = load_keras_model(path)
            engine = "auto" if engine == "numpy" else engine
            predictor = cls(model, meta, name=name, version=version, engine=engine)
        predictor.warm_up(warmup_batch_sizes)
        return predictor

    def warm_up(self, batch_sizes: Iterable[int] = WARMUP_BATCH_SIZES) -> None:
        """Runs a few batches through both paths so the first requests pay no first-call costs."""
        row: dict[str, Any] = {n: st["mean"] for n, st in self.plan.numeric.items()}
        row |= {n: (vocab[0] if vocab else "") for n, vocab in self.plan.categorical.items()}
        for size in batch_sizes:
            xn, xc = instances_to_arrays([row] * size, self.plan)
            for _ in range(3):
                self.predict([row] * size)
                if self._fn is not None:
                    self._tf_outputs(xn, xc)

    def predict(self, instances: list[dict[str, Any]]) -> list[Any]:
        """Predictions for JSON-like instances, in the server's response format.

        Regression: a number per instance. Classification: ``{"class": label, "probabilities":
        {label: p, ...}}`` per instance. Anomaly: ``{"score": reconstruction_error,
        "is_anomaly": score > threshold, "threshold": threshold}`` per instance.

        Raises:
            RequestError: a missing or bad feature value (names the feature and instance index).
        """
        return self.format(self.predict_arrays(*instances_to_arrays(instances, self.plan)))

    def predict_arrays(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        """Raw outputs for packed inputs (see ``validation.instances_to_arrays``).

        Returns:
            (n,) values for regression, (n, classes) probabilities for classification, (n,)
            reconstruction errors for anomaly.
        """
        if self._forward is not None and len(numeric) <= self.numpy_max_rows:
            out = self._forward(numeric, categorical)
        else:
            out = self._tf_outputs(numeric, categorical)
        return out if self.task == "classification" else out.reshape(-1)

    def _tf_outputs(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        tf = self._tf
        return self._fn(
            tf.constant(numeric, tf.float32), tf.constant(categorical, tf.string)
        ).numpy()

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Raw outputs for (n, 1) feature columns by name, as ``features.model_inputs`` makes them."""
        n = len(next(iter(columns.values())))
        numeric = [columns[name] for name in self.plan.numeric]
        categorical = [columns[name] for name in self.plan.categorical]
        xn = np.hstack(numeric) if numeric else np.empty((n, 0), np.float32)
        xc = np.hstack(categorical) if categorical else np.empty((n, 0), object)
        return self.predict_arrays(xn, xc)

    def predict_table(self, table: Any, *, batch_rows: int = BATCH_ROWS) -> np.ndarray:
        """Raw outputs for an Arrow table, in batches of `batch_rows` (the batch path).

        Raises:
            DataError: a feature column is missing or unusable (see ``model_inputs``).
        """
        outs = [
            self.predict_columns(model_inputs(table.slice(start, batch_rows), self.plan))
            for start in range(0, table.num_rows, batch_rows)
        ]
        if not outs:
            width = (len(self.classes or []),) if self.task == "classification" else ()
            return np.zeros((0, *width), dtype=np.float32)
        return np.concatenate(outs)

    def format(self, outputs: np.ndarray) -> list[Any]:
        """Raw outputs to the response's ``predictions`` list."""
        if self.task == "regression":
            return outputs.astype(np.float64).tolist()
        if self.task == "anomaly":
            threshold = self.threshold
            return [
                {"score": e, "is_anomaly": e > threshold, "threshold": threshold}
                for e in outputs.astype(np.float64).tolist()
            ]
        classes = self.classes or []
        rows = outputs.astype(np.float64).tolist()
        best = outputs.argmax(axis=1).tolist()
        return [
            {"class": classes[b], "probabilities": dict(zip(classes, p, strict=True))}
            for b, p in zip(best, rows, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        """What the model is and takes: for the server's ``GET /``."""
        features = {
            **{n: "number" for n in self.plan.numeric},
            **{n: "string" for n in self.plan.categorical},
        }
        info: dict[str, Any] = {
            "model": self.name,
            "version": self.version,
            "task": self.task,
            "classes": self.classes,
            "features": features,
        }
        label = self.meta.get("label")
        if self.task == "regression":
            prediction: Any = f"number: the predicted {label}"
        elif self.task == "classification":
            prediction = {
                "class": f"string: the most probable {label}, one of classes",
                "probabilities": {c: "number" for c in self.classes or []},
            }
        else:
            info["threshold"] = self.threshold
            prediction = {
                "score": "number: the row's reconstruction error (mean squared, encoded scale)",
                "is_anomaly": "boolean: score > threshold",
                "threshold": self.threshold,
            }
        return info | {
            "request": {
                "instances": [features],
                "notes": "one object of feature values per row; other fields are ignored; "
                "null in a string feature is the unseen-category bucket",
            },
            "response": {"predictions": [prediction]},
        }


def resolve_model_dir(
    uri: str | os.PathLike[str], *, download_to: str | os.PathLike[str] | None = None
) -> Path:
    """A local model folder for `uri`: a path, ``file://PATH``, or ``gs://BUCKET/PREFIX``.

    ``gs://`` folders are copied to `download_to` (a temporary folder by default) when
    google-cloud-storage is installed and has credentials.

    Raises:
        ConfigError: the folder does not exist, or a ``gs://`` URI cannot be fetched.
    """
    text = os.fspath(uri)
    if text.startswith("gs://"):
        return _download_gcs(text, download_to)
    path = Path(text.removeprefix("file://"))
    if not path.is_dir():
        raise ConfigError(f"model folder {text!r} does not exist")
    return path


def _download_gcs(uri: str, download_to: str | os.PathLike[str] | None) -> Path:
    try:
        import google.cloud.storage as storage
    except ImportError:
        raise ConfigError(
            f"model URI {uri!r} is on Cloud Storage but google-cloud-storage is not installed; "
            "install it, or copy the folder locally and pass its path"
        ) from None
    import tempfile

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    target = Path(download_to) if download_to else Path(tempfile.mkdtemp(prefix="voltpipe-model-"))
    try:
        blobs: Sequence[Any] = list(storage.Client().list_blobs(bucket_name, prefix=prefix))
        # Every destination is checked before anything is written: an object named with
        # `..`, an absolute path or a backslash must not write outside the model folder.
        root = target.resolve()
        planned = []
        for blob in blobs:
            rel = blob.name[len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            parts = rel.split("/")
            dest = (root / rel).resolve()
            if (
                rel.startswith("/")
                or "\\" in rel
                or any(p in ("", ".", "..") for p in parts)
                or not dest.is_relative_to(root)
            ):
                raise ConfigError(
                    f"model URI {uri!r}: object {blob.name!r} would be written outside the model "
                    "folder; refusing to copy the model (rename or remove that object)"
                )
            planned.append((blob, dest))
        for blob, dest in planned:
            dest.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(dest))
    except ConfigError:
        raise
    except Exception as exc:  # auth, network, permissions: one readable message
        raise ConfigError(f"could not copy model {uri!r} from Cloud Storage: {exc}") from exc
    if not blobs:
        raise ConfigError(f"model URI {uri!r} holds no files")
    return target
