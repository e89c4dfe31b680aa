"""Serving clustering and embedding models with NumPy alone (no TensorFlow, no scikit-learn).

An instance is a row of feature values, or, for a model trained on profiles, ``{"profile":
[one period's readings]}`` (normalised as in training). A clustering prediction is the
cluster id, the distance to each centre and (Gaussian mixture) the membership probabilities;
an embedding prediction is the row's components. Batch prediction writes the same as columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.model_dir import read_meta
from voltpipe.modelling.features import FeaturePlan
from voltpipe.modelling.unsupervised import UnsupervisedModel
from voltpipe.serving.predictor import BasePredictor, registry_info
from voltpipe.serving.validation import RequestError

TASKS = ("clustering", "embedding")
WARMUP_BATCH_SIZES = (1, 8)


class UnsupervisedPredictor(BasePredictor):
    """Predicts with a loaded clustering or embedding model (see the module docstring).

    Attributes:
        plan: the model's feature plan (rows: its numeric features; profiles: the value column).
        takes_profiles: instances and batch rows are profiles of a long table.
    """

    classes: list[str] | None = None

    def __init__(
        self, model: UnsupervisedModel, meta: dict[str, Any], *, name: str, version: str | None
    ) -> None:
        self.meta = meta
        self.task = str(meta["task"])
        if self.task not in TASKS:
            raise DataError(f"task {self.task}: UnsupervisedPredictor serves {', '.join(TASKS)}")
        self.model = model
        self.name, self.version = name, version
        self.plan = FeaturePlan.from_dict(meta["features"])
        self.takes_profiles = model.inputs.profile is not None

    @property
    def engine(self) -> str:
        return "numpy"

    @classmethod
    def from_dir(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        warmup_batch_sizes: Iterable[int] = WARMUP_BATCH_SIZES,
    ) -> UnsupervisedPredictor:
        """Loads the model folder's JSON model and metadata.

        Raises:
            DataError: the folder holds no clustering or embedding model, or a damaged one.
        """
        path = Path(model_dir)
        meta = read_meta(path)
        name, version = registry_info(path)
        predictor = cls(UnsupervisedModel.load(path, meta), meta, name=name, version=version)
        predictor.warm_up(warmup_batch_sizes)
        return predictor

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        for size in batch_sizes:
            self.predict([self.example_instance()] * size)

    def example_instance(self) -> dict[str, Any]:
        spec = self.model.inputs
        if self.takes_profiles:
            return {"profile": [1.0] * int(spec.points_per_period or len(spec.features))}
        return {n: float(m) for n, m in zip(spec.features, spec.mean.tolist(), strict=True)}

    # ----- inputs -------------------------------------------------------------------------------

    def _matrix(self, instances: list[dict[str, Any]]) -> np.ndarray:
        spec = self.model.inputs
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "instances: expected a non-empty list")
        rows = []
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RequestError(400, f"instances[{i}]: expected an object")
            if self.takes_profiles:
                rows.append(self._profile_row(inst, i))
                continue
            values = []
            for name in spec.features:
                v = inst.get(name)
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise RequestError(
                        400, f"instances[{i}].{name}: expected a finite number, got {v!r}"
                    )
                values.append(float(v))
            rows.append(spec.standardise(np.asarray(values)[None, :])[0])
        return np.vstack(rows)

    def _profile_row(self, inst: dict[str, Any], i: int) -> np.ndarray:
        """``{"profile": [readings]}`` or ``{"history": [{time, value}, ...]}`` (one group's
        recent rows: its latest usable period is the profile)."""
        from voltpipe.modelling.unsupervised import history_vector

        spec = self.model.inputs
        try:
            if "profile" in inst:
                return spec.profile_vector(inst["profile"])[0]
            if isinstance(inst.get("history"), list) and inst["history"]:
                return history_vector(spec, pa.Table.from_pylist(inst["history"]))[0]
        except (DataError, pa.ArrowException) as exc:
            raise RequestError(400, f"instances[{i}]: {exc}") from None
        raise RequestError(
            400,
            f"instances[{i}]: expected 'profile' (a list of one period's readings) or "
            "'history' (a non-empty list of rows of one group)",
        )

    # ----- outputs ------------------------------------------------------------------------------

    def outputs(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Clustering: ``cluster`` (n,), ``distances`` (n, k) and, for a mixture,
        ``probabilities`` (n, k); embedding: ``components`` (n, m)."""
        m = self.model
        if m.clusters is not None:
            out = {"cluster": m.clusters.assign(z), "distances": m.clusters.distances(z)}
            if m.clusters.method == "gmm":
                out["probabilities"] = m.clusters.probabilities(z)
            return out
        assert m.embedding is not None
        return {"components": m.embedding.transform(z)}

    def predict(self, instances: list[dict[str, Any]]) -> list[Any]:
        """Per instance: ``{"cluster", "distance", "distances", "probabilities"?}`` or
        ``{"components": [...]}``.

        Raises:
            RequestError: a missing or bad value (names the instance and field).
        """
        out = self.outputs(self._matrix(instances))
        if "components" in out:
            return [{"components": row} for row in out["components"].tolist()]
        ids = out["cluster"].tolist()
        dist = out["distances"].tolist()
        result = []
        for i, c in enumerate(ids):
            item: dict[str, Any] = {"cluster": int(c), "distance": dist[i][c], "distances": dist[i]}
            if "probabilities" in out:
                item["probabilities"] = out["probabilities"][i].tolist()
            result.append(item)
        return result

    def predict_table(self, table: pa.Table, *, batch_rows: int = 65_536) -> np.ndarray:
        """Raw outputs of a table's rows (``LoadedModel.predict_raw``'s)."""
        return self.model.predict_raw(table)

    def output_columns(self, table: pa.Table) -> tuple[dict[str, pa.Array], pa.Table | None]:
        """The prediction columns for a table, and the profiles' keys when it takes profiles:
        ``cluster``, ``distance`` (to its own centre), ``distance_<j>`` and (gmm)
        ``probability_<j>`` per cluster; or ``pc1..pcN``."""
        z, keys = self.model.inputs.matrix(table)
        out = self.outputs(z)
        cols: dict[str, pa.Array] = {}
        if "components" in out:
            for j in range(out["components"].shape[1]):
                cols[f"pc{j + 1}"] = pa.array(out["components"][:, j])
            return cols, keys
        ids, dist = out["cluster"], out["distances"]
        cols["cluster"] = pa.array(ids, pa.int64())
        cols["distance"] = pa.array(dist[np.arange(len(ids)), ids])
        for j in range(dist.shape[1]):
            cols[f"distance_{j}"] = pa.array(dist[:, j])
        for j in range(out["probabilities"].shape[1] if "probabilities" in out else 0):
            cols[f"probability_{j}"] = pa.array(out["probabilities"][:, j])
        return cols, keys

    def describe(self) -> dict[str, Any]:
        spec = self.model.inputs
        if self.takes_profiles:
            n = spec.points_per_period or len(spec.features)
            request: Any = {
                "profile": f"list of {n} numbers: one period's readings",
                "history": "or: a list of one group's recent rows (time and value columns)",
            }
        else:
            request = {n: "number" for n in spec.features}
        if self.model.clusters is not None:
            k = self.model.clusters.k
            prediction: dict[str, Any] = {
                "cluster": f"integer 0..{k - 1}",
                "distance": "number: distance to its cluster's centre",
                "distances": f"list of {k} numbers: distance to each centre",
            }
            if self.model.clusters.method == "gmm":
                prediction["probabilities"] = f"list of {k} membership probabilities"
        else:
            m = self.model.embedding.n_components if self.model.embedding else 0
            prediction = {"components": f"list of {m} numbers (pc1..pc{m})"}
        return {
            "model": self.name,
            "version": self.version,
            "task": self.task,
            "family": self.meta.get("family"),
            "features": request,
            "request": {"instances": [request]},
            "response": {"predictions": [prediction]},
        }
