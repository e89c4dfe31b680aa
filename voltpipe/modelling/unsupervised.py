"""Training and loading the unsupervised tasks (clustering, embedding).

`InputSpec` turns a table into the model's matrix: the numeric feature columns standardised
with their train mean and standard deviation (rows), or one profile per group and period
(``clustering.profile``: ``profiles.build_profiles``, not standardised: the points share a
unit). `train_unsupervised` fits the task's family (``clustering``, ``embedding``) and writes
the model folder through ``model_dir``; `UnsupervisedModel` scores it with NumPy alone.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from voltpipe.errors import DataError
from voltpipe.model_dir import (
    HISTORY_FILE,
    META_FILE,
    UNSUPERVISED_FORMATS,
    read_unsupervised_file,
    write_bytes_atomic,
    write_unsupervised_file,
)
from voltpipe.modelling.clustering import ClusterModel
from voltpipe.modelling.embedding import EmbeddingModel

TASKS = ("clustering", "embedding")
REFERENCE_VALUES = 2000  # train residuals stored for monitoring
PERIOD_SECONDS = {"day": 86_400, "week": 7 * 86_400}
OUTPUTS = {
    "clustering": (
        "float64 (n, k): distance of each row (or profile) to each cluster centre on the "
        "model's scale; the cluster is the nearest centre (kmeans) or the most probable "
        "component (gmm)"
    ),
    "embedding": "float64 (n, n_components): the components pc1..pcN of each row",
}


@dataclasses.dataclass
class InputSpec:
    """How a table becomes the model's (n, d) matrix.

    Attributes:
        features: the matrix's columns: numeric feature columns, or profile points.
        mean, scale: subtracted and divided (rows: train mean and standard deviation;
            profiles: 0 and 1).
        clip: standardised values are clipped to [-clip, clip] (the autoencoder's rule).
        profile: ``clustering.profile`` (a dict) when rows are profiles, else None.
        points_per_period: readings in one period (profiles).
        step_seconds: the spacing of the readings (profiles).
    """

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    clip: float | None = None
    profile: dict[str, Any] | None = None
    points_per_period: int | None = None
    step_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "clip": self.clip,
            "profile": self.profile,
            "points_per_period": self.points_per_period,
            "step_seconds": self.step_seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            list(d["features"]),
            np.asarray(d["mean"], dtype="float64"),
            np.asarray(d["scale"], dtype="float64"),
            d.get("clip"),
            d.get("profile"),
            d.get("points_per_period"),
            d.get("step_seconds"),
        )

    def standardise(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype="float64") - self.mean) / self.scale
        return np.clip(z, -self.clip, self.clip) if self.clip else z

    def matrix(self, table: pa.Table) -> tuple[np.ndarray, pa.Table | None]:
        """The standardised matrix of `table`, and the profiles' keys (group, period start)
        when the model takes profiles.

        Raises:
            DataError: a column is missing, not numeric or holds null/NaN values; no complete
                profile.
        """
        if self.profile is not None:
            profiles = build(table, self.profile, self.step_seconds)
            if profiles.matrix.shape[1] != len(self.features):
                raise DataError(
                    f"the profiles have {profiles.matrix.shape[1]} points per period but the "
                    f"model was trained on {len(self.features)} (another reading interval?)"
                )
            return self.standardise(profiles.matrix), profiles.keys
        return self.standardise(numeric_matrix(table, self.features)), None

    def profile_vector(self, values: list[Any]) -> np.ndarray:
        """One raw profile (``points_per_period`` readings) normalised as the model's profiles.

        Raises:
            DataError: the wrong number of readings, or a reading that is not a finite number.
        """
        assert self.profile is not None
        n = self.points_per_period or len(self.features)
        try:
            v = np.asarray(values, dtype="float64").reshape(-1)
        except (TypeError, ValueError):
            raise DataError("profile: expected a list of numbers") from None
        if len(v) != n or not np.all(np.isfinite(v)):
            raise DataError(f"profile: expected {n} finite readings, got {len(v)}")
        mode = self.profile.get("normalise", "none")
        if mode == "shape":  # as profiles.build_profiles: by the mean absolute value
            scale = np.abs(v).mean()
            v = v / scale if scale > 0 else np.zeros_like(v)
        elif mode == "level":
            v = np.array([v.mean()])
        return self.standardise(v[None, :])


def numeric_matrix(table: pa.Table, columns: list[str]) -> np.ndarray:
    """(n, len(columns)) float64 of numeric columns.

    Raises:
        DataError: a column is missing, not numeric, or holds null/NaN/infinite values.
    """
    out = np.empty((table.num_rows, len(columns)))
    for j, name in enumerate(columns):
        if name not in table.column_names:
            raise DataError(
                f"feature column {name!r} is missing (columns: {', '.join(table.column_names)})"
            )
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"feature column {name!r} should be numeric but is {col.type}")
        values = col.to_numpy(zero_copy_only=False).astype("float64")
        if col.null_count or not np.all(np.isfinite(values)):
            raise DataError(f"feature column {name!r} holds null, NaN or infinite values")
        out[:, j] = values
    return out


def build(table: pa.Table, profile: dict[str, Any], step_seconds: int | None = None) -> Any:
    """``profiles.build_profiles`` with the config's profile settings (and, for a trained
    model, its reading interval)."""
    from voltpipe.modelling.profiles import build_profiles

    return build_profiles(
        table,
        time_column=profile["time_column"],
        value=profile["value"],
        period=profile.get("period", "day"),
        group_column=profile.get("group_column"),
        normalise=profile.get("normalise", "none"),
        max_missing=int(profile.get("max_missing", 0)),
        step_seconds=step_seconds,
    )


def history_vector(spec: InputSpec, history: pa.Table) -> np.ndarray:
    """The (1, d) model input of one group's recent readings (its latest usable period)."""
    from voltpipe.modelling.profiles import profile_from_history

    p = spec.profile or {}
    time_column = p["time_column"]
    if time_column in history.column_names and pa.types.is_string(
        history.schema.field(time_column).type
    ):
        try:  # JSON requests carry times as ISO text
            times = history.column(time_column).cast(pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(
                f"history.{time_column}: expected ISO times such as '2024-03-11 00:30:00'"
            ) from None
        index = history.column_names.index(time_column)
        history = history.set_column(index, time_column, times)
    vector = profile_from_history(
        history,
        time_column=p["time_column"],
        value=p["value"],
        period=p.get("period", "day"),
        group_column=p.get("group_column"),
        normalise=p.get("normalise", "none"),
        max_missing=int(p.get("max_missing", 0)),
        step_seconds=spec.step_seconds,
    )
    return spec.standardise(np.asarray(vector, dtype="float64")[None, :])


def row_inputs(
    train: pa.Table,
    *,
    label: str,
    features: list[str] | None,
    exclude: list[str],
) -> tuple[InputSpec, dict[str, Any]]:
    """The numeric feature columns of the train split, standardised; and the feature plan
    (string and other columns are skipped: these tasks measure distances between numbers).

    Raises:
        DataError: a named feature is missing or not numeric; no numeric feature is left.
    """
    from voltpipe.modelling.features import plan_features

    plan = plan_features(train, label=label, features=features, exclude=exclude)
    if features is not None and plan.categorical:
        raise DataError(
            f"feature column(s) {', '.join(plan.categorical)} are not numeric; clustering and "
            "embedding take numeric columns only (exclude them)"
        )
    for name in plan.categorical:
        plan.skipped[name] = "not numeric (clustering and embedding take numbers)"
    plan.categorical = {}
    if not plan.numeric:
        raise DataError("no numeric feature column: clustering and embedding take numeric columns")
    names = list(plan.numeric)
    mean = np.array([plan.numeric[n]["mean"] for n in names])
    scale = np.sqrt(np.array([plan.numeric[n]["variance"] for n in names]))
    return InputSpec(names, mean, scale), plan.to_dict()


def profile_inputs(train: pa.Table, profile: dict[str, Any]) -> tuple[InputSpec, Any]:
    """The profile spec and the train profiles.

    Raises:
        DataError: bad profile columns (see ``profiles.build_profiles``) or no profile left.
    """
    profiles = build(train, profile)
    if profiles.matrix.shape[0] == 0:
        raise DataError(
            "clustering.profile: no complete profile in the train split (every period misses "
            f"more than clustering.profile.max_missing={profile.get('max_missing', 0)} points)"
        )
    d = profiles.matrix.shape[1]
    step = int(profiles.step_seconds) or 1
    spec = InputSpec(
        list(profiles.points),
        np.zeros(d),
        np.ones(d),
        profile=dict(profile),
        points_per_period=PERIOD_SECONDS[profile.get("period", "day")] // step,
        step_seconds=step,
    )
    return spec, profiles


@dataclasses.dataclass
class UnsupervisedModel:
    """A clustering or embedding model folder, loaded (NumPy only)."""

    task: str
    family: str
    inputs: InputSpec
    clusters: ClusterModel | None = None
    embedding: EmbeddingModel | None = None

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], meta: dict[str, Any]) -> UnsupervisedModel:
        payload = read_unsupervised_file(model_dir, meta)
        task = str(meta["task"])
        inputs = InputSpec.from_dict(payload["inputs"])
        if task == "clustering":
            return cls(
                task, str(meta["family"]), inputs, clusters=ClusterModel.from_dict(payload["model"])
            )
        return cls(
            task, str(meta["family"]), inputs, embedding=EmbeddingModel.from_dict(payload["model"])
        )

    def payload(self) -> dict[str, Any]:
        model = self.clusters if self.clusters is not None else self.embedding
        assert model is not None
        return {
            "format": UNSUPERVISED_FORMATS[self.task],
            "inputs": self.inputs.to_dict(),
            "model": model.to_dict(),
        }

    def outputs(self, z: np.ndarray) -> np.ndarray:
        """Clustering: (n, k) distances to the centres; embedding: (n, m) components."""
        if self.clusters is not None:
            return self.clusters.distances(z)
        assert self.embedding is not None
        return self.embedding.transform(z)

    def residuals(self, z: np.ndarray) -> np.ndarray:
        """(n,) how far each row is from the model: the distance to its own centre
        (clustering) or its mean squared reconstruction error (embedding)."""
        if self.clusters is not None:
            ids = self.clusters.assign(z)
            return np.asarray(self.clusters.distances(z)[np.arange(len(z)), ids])
        assert self.embedding is not None
        rebuilt = self.embedding.reconstruct(z)
        return np.asarray(((z - rebuilt) ** 2).mean(axis=1))

    def reference(self, z_train: np.ndarray, max_values: int = REFERENCE_VALUES) -> list[float]:
        """`residuals` of up to `max_values` train rows (a seeded sample): what monitoring
        compares a window's with."""
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(len(z_train), min(max_values, len(z_train)), replace=False))
        return [float(v) for v in self.residuals(z_train[idx])]

    def predict_raw(self, table: pa.Table) -> np.ndarray:
        """See `OUTPUTS`."""
        z, _ = self.inputs.matrix(table)
        return self.outputs(z)


def train_unsupervised(
    train: pa.Table,
    valid: pa.Table,
    out_dir: str | os.PathLike[str],
    *,
    label: str,
    task: str,
    features: list[str] | None,
    exclude: list[str],
    mp: Any,
    tp: Any,
    params: Any,
) -> dict[str, Any]:
    """Fits a clustering or embedding model and writes its folder; returns the metadata.

    Raises:
        DataError: the data cannot train this task (a message naming the setting or column).
    """
    from voltpipe.config import DEFAULT_FAMILY, MODEL_FAMILIES

    started = time.perf_counter()
    family = mp.family or DEFAULT_FAMILY[task]
    if family not in MODEL_FAMILIES[task]:
        raise DataError(
            f"model.family {family!r} does not fit task {task!r}; valid: "
            f"{', '.join(MODEL_FAMILIES[task])}"
        )
    if train.num_rows == 0:
        raise DataError("the train split is empty")
    if label and label in train.column_names:
        exclude = [*exclude, label]
    cfg = params.clustering if task == "clustering" else None
    profile = cfg.profile.model_dump() if cfg is not None and cfg.profile else None
    task_meta: dict[str, Any] = {}
    rows = {"train": train.num_rows, "valid": valid.num_rows}
    if profile is not None:
        spec, profiles = profile_inputs(train, profile)
        plan = _profile_plan(train, profile)
        z_train = profiles.matrix
        z_valid = None
        if valid.num_rows:
            try:
                z_valid, _ = spec.matrix(valid)
            except DataError:
                z_valid = None  # no complete valid period: score k on train
        rows |= {
            "train_profiles": len(z_train),
            "valid_profiles": 0 if z_valid is None else len(z_valid),
        }
        task_meta |= {"profiles_dropped": int(profiles.dropped)}
        what = "profiles"
    else:
        time_col = [params.time_column] if params.time_column else []
        spec, plan = row_inputs(
            train, label=label, features=features, exclude=[*exclude, *time_col]
        )
        z_train = spec.standardise(numeric_matrix(train, spec.features))
        z_valid = spec.standardise(numeric_matrix(valid, spec.features)) if valid.num_rows else None
        what = "rows"
    seed = int(tp.seed)
    if task == "clustering":
        from voltpipe.modelling.clustering import fit_clusters

        assert cfg is not None
        fit = fit_clusters(
            z_train, z_valid, family=family, k_range=cfg.k_range, seed=seed, what=what
        )
        model = UnsupervisedModel(task, fit.family, spec, clusters=fit.model)
        sizes = np.bincount(fit.model.assign(z_train), minlength=fit.model.k)
        task_meta |= {
            "k": fit.model.k,
            "k_range": list(cfg.k_range),
            "requested_family": family,
            "train_sizes": sizes.tolist(),
            "stability_resamples": cfg.stability_resamples,
            "seed": seed,
            "profile": profile,
            "ids": "ordered by train cluster size, largest first; matched to the champion's "
            "at the gate",
        }
        candidates: list[dict[str, Any]] | None = fit.candidates
        chosen = fit.family
    else:
        emb = params.embedding
        candidates = None
        if family == "pca":
            from voltpipe.modelling.embedding import fit_pca

            model_e = fit_pca(
                z_train, n_components=emb.n_components, variance_target=emb.variance_target
            )
        else:
            model_e, spec = _fit_autoencoder(train, valid, spec, label, exclude, mp, tp, params)
        model = UnsupervisedModel(task, family, spec, embedding=model_e)
        task_meta |= {
            "n_components": model_e.n_components,
            "variance_target": emb.variance_target,
            "columns": [f"pc{i + 1}" for i in range(model_e.n_components)],
            "seed": seed,
        }
        if model_e.verified_gap is not None:
            task_meta["numpy_vs_keras_max_gap"] = model_e.verified_gap
        if model_e.explained_variance_ratio is not None:
            task_meta["explained_variance_ratio"] = model_e.explained_variance_ratio.tolist()
        chosen = family
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": UNSUPERVISED_FORMATS[task],
        "task": task,
        "label": label,
        "family": chosen,
        "features": plan,
        "classes": None,
        "label_stats": None,
        "rows": rows,
        "output": OUTPUTS[task],
        task: task_meta,
        "model_params": {**mp.model_dump(), "family": chosen},
        "training_params": tp.model_dump(),
        "task_params": params.to_dict(),
        "epochs_run": 0,
        "best_epoch": 0,
        "stopped_by": "converged",
        "training_warnings": [],
        "replay": False,
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    if candidates is not None:
        meta["candidates"] = candidates
    z_ref, _ = model.inputs.matrix(train)
    meta["reference"] = {"values": model.reference(z_ref), "of": "train"}
    meta["model_file"] = write_unsupervised_file(out, task, model.payload())
    import json

    write_bytes_atomic(out / META_FILE, json.dumps(meta, indent=2, default=_default).encode())
    write_bytes_atomic(out / HISTORY_FILE, b"{}")
    return meta


def save_relabelled(model_dir: str | os.PathLike[str], order: list[int]) -> None:
    """Rewrites a clustering folder with its ids permuted (new id i = old id ``order[i]``)."""
    import json

    from voltpipe.model_dir import read_meta

    meta = read_meta(model_dir)
    loaded = UnsupervisedModel.load(model_dir, meta)
    assert loaded.clusters is not None
    loaded.clusters = loaded.clusters.permuted(order)
    c = meta.get("clustering") or {}
    if c.get("train_sizes"):
        c["train_sizes"] = [c["train_sizes"][i] for i in order]
    c["relabelled"] = list(order)
    meta["model_file"] = write_unsupervised_file(model_dir, "clustering", loaded.payload())
    write_bytes_atomic(
        Path(model_dir) / META_FILE, json.dumps(meta, indent=2, default=_default).encode()
    )


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _profile_plan(train: pa.Table, profile: dict[str, Any]) -> dict[str, Any]:
    """A feature plan of the raw value column (what drift monitoring compares)."""
    from voltpipe.modelling.features import plan_features

    value = profile["value"]
    plan = plan_features(train, label="", features=[value])
    return plan.to_dict()


def _fit_autoencoder(
    train: pa.Table,
    valid: pa.Table,
    spec: InputSpec,
    label: str,
    exclude: list[str],
    mp: Any,
    tp: Any,
    params: Any,
) -> tuple[EmbeddingModel, InputSpec]:
    """The anomaly autoencoder trained on the numeric features; its encoder as the embedding."""
    from voltpipe.modelling.embedding import autoencoder_layers
    from voltpipe.modelling.mlp import CLIP
    from voltpipe.modelling.problems import AnomalyProblem
    from voltpipe.modelling.train import fit_problem

    width = params.embedding.n_components or mp.latent_dim
    mp = mp.model_copy(update={"latent_dim": width, "family": "autoencoder"})
    problem = AnomalyProblem(
        train.select(spec.features),
        valid.select(spec.features) if valid.num_rows else valid.select([]),
        label=label or "\0",
        family="autoencoder",
        features=list(spec.features),
        exclude=None,
        params=params,
    )
    fitted = fit_problem(problem, mp, tp, verbose=0)
    model = autoencoder_layers(fitted.model, list(mp.hidden_units))
    spec = dataclasses.replace(spec, clip=CLIP)
    # The NumPy encoder must give the Keras model's latent values (as the replay is checked).
    import keras

    from voltpipe.modelling.features import model_inputs

    probe = model_inputs(train.select(spec.features).slice(0, 256), problem.plan)
    latent = keras.Model(fitted.model.inputs, fitted.model.get_layer("latent").output)
    expected = np.asarray(latent.predict(probe, verbose=0), dtype="float64")
    ours = model.transform(spec.standardise(np.hstack([probe[f] for f in spec.features])))
    gap = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
    if not gap <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
        raise DataError(f"the autoencoder's NumPy encoder disagrees with Keras (max gap {gap:.3g})")
    model.verified_gap = gap
    return model, spec
