"""The clustering benchmark's pure parts and peers, on small data (no voltpipe run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks import bench_clustering as bc
from benchmarks import realdata as rd

sklearn = pytest.importorskip("sklearn")


def test_case_names_quick_all_and_by_table() -> None:
    assert bc.case_names([], quick=True) == list(bc.QUICK)
    assert bc.case_names([], quick=False) == list(bc.CASES)
    assert bc.case_names(["wine"], quick=False) == ["cluster:wine", "embed:wine"]
    assert bc.case_names(["embed:digits", "meters"], quick=False) == ["embed:digits", "meters"]
    with pytest.raises(ValueError, match="unknown case 'housing'; valid: cluster:iris"):
        bc.case_names(["housing"], quick=False)


def test_component_difference_ignores_each_axis_sign() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5))
    flipped = a * np.array([1.0, -1.0, -1.0])[:, None]
    assert bc.max_abs_diff_up_to_sign(a, flipped) == 0.0
    nudged = flipped.copy()
    nudged[1, 2] += 1e-4
    assert bc.max_abs_diff_up_to_sign(a, nudged) == pytest.approx(1e-4, rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        bc.max_abs_diff_up_to_sign(a, a[:2])


def test_reconstruction_error_matches_sklearn_pca() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    pca = PCA(n_components=3, svd_solver="full").fit(x)
    expected = float(np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2))
    assert bc.reconstruction_error(x, pca.components_, pca.mean_) == pytest.approx(expected)
    full = PCA(n_components=6, svd_solver="full").fit(x)
    assert bc.reconstruction_error(x, full.components_, full.mean_) < 1e-20


def test_standardise_is_standard_scaler_with_constant_columns_by_one() -> None:
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(5, 2, 50), np.full(50, 3.0), rng.uniform(0, 1, 50)])
    y = rng.normal(size=(7, 3))
    z_train, z_other = bc.standardise(x, y)
    scaler = StandardScaler().fit(x)
    np.testing.assert_allclose(z_train, scaler.transform(x), atol=1e-12)
    np.testing.assert_allclose(z_other, scaler.transform(y), atol=1e-12)


def _write_case(folder, frame: pd.DataFrame, seed: int = 0) -> None:
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(0.8 * len(frame))
    frame.iloc[order[:cut]].to_parquet(folder / "train.parquet")
    frame.iloc[order[cut:]].to_parquet(folder / "test.parquet")


def test_kmeans_peer_scores_the_test_rows_with_the_true_k(tmp_path) -> None:
    _write_case(tmp_path, rd.load_table("iris"))
    out = bc.peers_kmeans(tmp_path, {"label": "y"})
    assert out["k"] == 3 and out["rows"] == {"train": 120, "test": 30}
    for name in ("kmeans_standardised", "kmeans_raw"):
        assert 0.4 < out[name]["ari"] <= 1.0
        assert -1.0 <= out[name]["silhouette_standardised"] <= 1.0


def test_pca_peer_finds_no_difference_with_the_same_model(tmp_path) -> None:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    frame = rd.load_table("wine")
    _write_case(tmp_path, frame)
    train = pd.read_parquet(tmp_path / "train.parquet")
    features = [c for c in frame.columns if c != "y"]
    scaler = StandardScaler().fit(train[features].to_numpy(float))
    pca = PCA(n_components=4, svd_solver="full").fit(
        scaler.transform(train[features].to_numpy(float))
    )
    components = pca.components_ * np.array([1, -1, 1, -1])[:, None]  # signs are arbitrary
    ours = {
        "features": features,
        "input_mean": scaler.mean_.tolist(),
        "input_scale": scaler.scale_.tolist(),
        "components": components.tolist(),
        "mean": pca.mean_.tolist(),
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
    }
    out = bc.peers_pca(tmp_path, {"voltpipe": ours})
    assert out["n_components"] == 4 and out["max_component_diff"] < 1e-12
    recon = out["reconstruction_error"]
    assert recon["voltpipe"] == pytest.approx(recon["sklearn"], rel=1e-12)
    assert out["max_ratio_diff"] < 1e-15

    ours["components"] = (components * 1.001).tolist()  # a wrong model shows
    assert bc.peers_pca(tmp_path, {"voltpipe": ours})["max_component_diff"] > 1e-4


def test_meters_peer_builds_the_examples_profiles(tmp_path) -> None:
    from voltpipe.demo import MeterSpec, generate_meters

    example = bc.meters_config()
    assert example["task"] == "clustering" and example["label"] == "customer_type"
    profile = example["clustering"]["profile"]
    assert profile["group_column"] == "meter_id" and profile["normalise"] == "shape"
    table = generate_meters(MeterSpec(meters=40, days=14))
    ids = np.array(table.column("meter_id").to_pylist())
    test_meters = pc.is_in(table.column("meter_id"), pc.unique(table.column("meter_id"))[:8])
    pq.write_table(table.filter(pc.invert(test_meters)), tmp_path / "train.parquet")
    pq.write_table(table.filter(test_meters), tmp_path / "test.parquet")
    out = bc.peers_profiles(tmp_path, {"profile": profile, "label": "customer_type"})
    assert out["k"] == 4
    assert out["profiles"]["test"] <= 8 * 14 and out["profiles"]["train"] > 30 * 12
    assert out["kmeans_true_k_ari"] > 0.8
    assert len(np.unique(ids)) == 40


def test_failed_row_is_not_met_and_names_the_case() -> None:
    row = bc.failed_row("embed:wine", "embed:wine failed", bc.COMPONENT_GOAL, RuntimeError("x"))
    assert row.extra == {"case": "embed:wine", "failed": "x"}
    assert bc._met(row) is None
    assert "failed: x" in bc.markdown([row])
