"""Clustering models: choice of k, determinism, NumPy scoring equal to scikit-learn, id order
and matching, saved without pickle, bad input refused with one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.errors import ConfigError, DataError
from voltpipe.modelling.clustering import (
    GMM_N_INIT,
    KMEANS_N_INIT,
    ClusterModel,
    canonical_order,
    covariance_type,
    fit_clusters,
    fit_gmm,
    matching_permutation,
)


def blobs(n: int = 600, k: int = 4, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_auto_finds_k_without_being_told_and_agrees_with_the_truth() -> None:
    from sklearn.metrics import adjusted_rand_score

    x, y = blobs(k=4)
    fit = fit_clusters(x[:500], x[500:], family="auto", k_range=(2, 8), seed=1)
    assert fit.model.k == 4
    assert adjusted_rand_score(y, fit.model.assign(x)) > 0.98
    chosen = [c for c in fit.candidates if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["k"] == 4
    assert {c["family"] for c in fit.candidates} == {"kmeans", "gmm"}


def test_fits_are_deterministic_and_ids_ordered_by_size() -> None:
    x, _ = blobs(k=3, seed=2)
    a = fit_clusters(x, None, family="kmeans", k_range=(3, 3), seed=5).model
    b = fit_clusters(x, None, family="kmeans", k_range=(3, 3), seed=5).model
    np.testing.assert_array_equal(a.centers, b.centers)
    sizes = np.bincount(a.assign(x), minlength=3)
    assert list(sizes) == sorted(sizes, reverse=True)


@pytest.mark.parametrize("d", [3, 40])
def test_mixture_probabilities_in_numpy_equal_scikit_learn(d: int) -> None:
    from sklearn.mixture import GaussianMixture

    x, _ = blobs(n=300, k=3, d=d, seed=3)
    model, bic = fit_gmm(x, 3, seed=0)
    kind = covariance_type(len(x), d, 3)
    assert kind == ("full" if d == 3 else "diag")
    reference = GaussianMixture(
        n_components=3, covariance_type=kind, n_init=GMM_N_INIT, reg_covar=1e-6, random_state=0
    ).fit(x)
    np.testing.assert_allclose(model.probabilities(x), reference.predict_proba(x), atol=1e-8)
    np.testing.assert_array_equal(model.assign(x), reference.predict(x))
    assert bic == pytest.approx(reference.bic(x))


def test_kmeans_distances_equal_scikit_learn_transform() -> None:
    from sklearn.cluster import KMeans

    x, _ = blobs(seed=4)
    km = KMeans(n_clusters=4, n_init=KMEANS_N_INIT, random_state=0).fit(x)
    model = ClusterModel("kmeans", km.cluster_centers_)
    np.testing.assert_allclose(model.distances(x), km.transform(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(model.assign(x), km.predict(x))


def test_matching_undoes_a_relabelling() -> None:
    x, _ = blobs(k=4, seed=6)
    model = canonical_order(fit_clusters(x, None, family="kmeans", k_range=(4, 4), seed=0).model, x)
    scrambled = model.permuted([2, 0, 3, 1])
    assert not np.array_equal(scrambled.assign(x), model.assign(x))
    order = matching_permutation(model.assign(x), scrambled.assign(x), scrambled.k)
    restored = scrambled.permuted(order)
    np.testing.assert_array_equal(restored.assign(x), model.assign(x))
    np.testing.assert_array_equal(restored.centers, model.centers)


def test_matching_with_more_clusters_than_the_champion_keeps_every_id() -> None:
    reference = np.array([0, 0, 1, 1, 1, 0])
    labels = np.array([2, 2, 0, 0, 1, 2])  # three clusters; 2 ~ ref 0, 0 ~ ref 1
    order = matching_permutation(reference, labels, 3)
    assert sorted(order) == [0, 1, 2]
    assert order[0] == 2 and order[1] == 0  # new id 0 is old 2, new id 1 is old 0


def test_json_round_trip_scores_the_same() -> None:
    x, _ = blobs(n=200, k=2, seed=7)
    model, _ = fit_gmm(x, 2, seed=0)
    again = ClusterModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.probabilities(x), model.probabilities(x))


def test_too_few_rows_and_a_constant_table_are_refused() -> None:
    x, _ = blobs(n=5, k=2)
    with pytest.raises(DataError, match=r"clustering\.k: 8 clusters asked but .* only 5 rows"):
        fit_clusters(x, None, family="kmeans", k_range=(8, 8), seed=0)
    with pytest.raises(DataError, match="constant table"):
        fit_clusters(np.ones((50, 3)), None, family="auto", k_range=(2, 10), seed=0)


# ----- through training: the model folder ------------------------------------------------------


def _write_splits(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> tuple[Path, Path]:
    t = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "kind": y.astype(str)})
    train, valid = tmp_path / "train.parquet", tmp_path / "valid.parquet"
    pq.write_table(t.slice(0, 500), train)
    pq.write_table(t.slice(500), valid)
    return train, valid


def test_training_saves_json_only_and_the_label_is_never_a_feature(tmp_path: Path) -> None:
    from voltpipe.model_dir import CLUSTER_FILE, read_meta
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    x, y = blobs(k=3, seed=8)
    train, valid = _write_splits(tmp_path, x, y)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="kind", task="clustering",
        task_params={"clustering": {"k": [2, 5]}},
    )  # fmt: skip
    meta = read_meta(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CLUSTER_FILE, "voltpipe_model.json", "voltpipe_history.json"]
    )
    assert list(meta["features"]["numeric"]) == ["a", "b", "c"]
    assert meta["clustering"]["k"] == 3 and meta["family"] in ("kmeans", "gmm")
    distances = load_model(out).predict_raw(pq.read_table(valid))
    assert distances.shape == (100, 3) and np.all(distances >= 0)


def test_a_damaged_model_file_is_refused(tmp_path: Path) -> None:
    from voltpipe.model_dir import CLUSTER_FILE
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    x, y = blobs(k=2, seed=9)
    train, valid = _write_splits(tmp_path, x, y)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="", task="clustering", task_params={"clustering": {"k": 2}}
    )
    data = (out / CLUSTER_FILE).read_bytes()
    (out / CLUSTER_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupted or truncated"):
        load_model(out)


@pytest.mark.parametrize(
    ("yaml_extra", "message"),
    [
        ("task: regression\nlabel: y\nclustering: {k: 3}\n", "clustering: these keys configure"),
        ("task: embedding\nmodel: {family: kmeans}\n", "'kmeans' does not serve task 'embedding'"),
        ("task: clustering\nclustering: {k: 1}\n", "clustering.k: needs 2 or more clusters"),
        ("task: clustering\nclustering: {k: [5, 3]}\n", "clustering.k: a range"),
        ("task: regression\n", "label: required key is missing"),
        (
            "task: clustering\nclustering: {profile: {time_column: ts, value: kwh, "
            "group_column: meter_id}}\n",
            r"split: clustering.profile needs whole periods.*method: hash, column: meter_id",
        ),
        ("task: embedding\nembedding: {variance_target: 1.5}\n", "embedding.variance_target"),
        ("task: clustering\ntuning: {enabled: true}\n", "tuning.enabled: task 'clustering'"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(
    tmp_path: Path, yaml_extra: str, message: str
) -> None:
    from voltpipe.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("query: SELECT 1\n" + yaml_extra)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_clustering_config_loads_without_a_label(tmp_path: Path) -> None:
    from voltpipe.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "query: SELECT 1\ntask: clustering\nsplit: {method: hash, column: meter_id}\n"
        "clustering: {k: [2, 6], profile: {time_column: ts, value: kwh, group_column: meter_id, "
        "normalise: shape}}\n"
    )
    cfg = load_config(path)
    assert cfg.label == "" and cfg.gate_metric == "silhouette"
    assert cfg.clustering.k_range == (2, 6) and cfg.clustering.profile is not None


def test_the_vertex_custom_job_entry_point_trains_a_clustering_model(tmp_path: Path) -> None:
    import json

    from voltpipe.model_dir import read_meta
    from voltpipe.modelling.trial import main

    x, y = blobs(k=3, seed=10)
    train, valid = _write_splits(tmp_path, x, y)
    out = tmp_path / "job-model"
    params = {"task_params": {"clustering": {"k": 3}}, "exclude": []}
    env = {"CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "metric.json")}
    argv = [
        f"--train={train}", f"--valid={valid}", "--label=", "--task=clustering",
        f"--params={json.dumps(params)}", f"--output-dir={out}",
    ]  # fmt: skip
    assert main(argv, env) == 0
    meta = read_meta(out)
    assert meta["task"] == "clustering" and meta["clustering"]["k"] == 3


def test_silhouette_matches_scikit_learn_and_the_gate_prefers_the_true_k(tmp_path: Path) -> None:
    from sklearn.metrics import silhouette_score

    from voltpipe.evaluation.evaluate import evaluate_challenger
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    x, y = blobs(n=700, k=3, seed=10)
    train, valid = _write_splits(tmp_path, x, y)
    test = tmp_path / "test.parquet"
    pq.write_table(pq.read_table(valid), test)
    good, poor = tmp_path / "k3", tmp_path / "k2"
    for out, k in ((good, 3), (poor, 2)):
        train_model(
            train, valid, out, label="kind", task="clustering",
            task_params={"clustering": {"k": k, "stability_resamples": 2}},
        )  # fmt: skip
    first = evaluate_challenger(
        good, test, champion_dir=None, champion_version=None, metric="silhouette"
    )
    loaded = load_model(good)
    z, _ = loaded.model.inputs.matrix(pq.read_table(test))
    expected = silhouette_score(z, loaded.model.clusters.assign(z))
    assert first.metrics["silhouette"] == pytest.approx(expected, abs=1e-12)
    assert first.decision.verdict == "promote" and first.metrics["ari"] > 0.95
    # the 2-cluster challenger is worse on the same rows: the paired bootstrap rejects it
    second = evaluate_challenger(
        poor, test, champion_dir=good, champion_version="1", metric="silhouette"
    )
    assert second.decision.method == "paired bootstrap"
    assert second.decision.verdict == "reject" and second.decision.rows == 200


def test_cluster_drift_fires_on_shifted_shares_not_on_the_same_mix(tmp_path: Path) -> None:
    from voltpipe.model_dir import read_meta
    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model
    from voltpipe.monitoring.cluster_drift import cluster_drift

    x, y = blobs(n=1500, k=3, seed=12)
    train, valid = _write_splits(tmp_path, x, y)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="", task="clustering", task_params={"clustering": {"k": 3}}
    )
    model, meta = load_model(out).model, read_meta(out)
    same = pa.table({"a": x[600:, 0], "b": x[600:, 1], "c": x[600:, 2]})
    one = x[y == 0][:300]
    shifted = pa.table({"a": one[:, 0], "b": one[:, 1], "c": one[:, 2]})
    calm, moved = cluster_drift(model, meta, same), cluster_drift(model, meta, shifted)
    assert not calm.drifted and calm.js_distance is not None and calm.js_distance < 0.05
    assert moved.drifted and moved.fired[0] == "proportions"
    assert max(moved.current_shares or []) == pytest.approx(1.0)
    far = pa.table({"a": same.column("a").to_numpy() + 30.0, "b": same["b"], "c": same["c"]})
    assert "distances" in cluster_drift(model, meta, far).fired


def test_serving_a_clustering_model_imports_neither_tensorflow_nor_scikit_learn(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from voltpipe.modelling.train import train_model

    x, y = blobs(k=2, seed=13)
    train, valid = _write_splits(tmp_path, x, y)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="", task="clustering", task_params={"clustering": {"k": 2}}
    )
    code = (
        "import sys\n"
        "from voltpipe.serving.predictor import load_predictor\n"
        f"p = load_predictor({str(out)!r})\n"
        "print(p.predict([p.example_instance()])[0]['cluster'])\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'sklearn', 'scipy'}\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("0", "1")


def test_large_tables_choose_k_on_a_sample_and_refit_on_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.cluster import KMeans

    from voltpipe.modelling import clustering

    monkeypatch.setattr(clustering, "SELECTION_MAX_ROWS", 200)
    x, _ = blobs(n=900, k=3, seed=10)
    fit = fit_clusters(x, None, family="kmeans", k_range=(2, 5), seed=3)
    assert fit.model.k == 3
    full = KMeans(n_clusters=3, n_init=clustering.KMEANS_N_INIT, random_state=3).fit(x)
    ours = np.sort(fit.model.centers, axis=0)
    np.testing.assert_allclose(ours, np.sort(full.cluster_centers_, axis=0), atol=1e-9)
