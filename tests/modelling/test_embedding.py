"""Embedding models: PCA equal to scikit-learn's to 1e-6, components chosen by a variance
target, the autoencoder's latent space replayed in NumPy, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voltpipe.errors import DataError
from voltpipe.modelling.embedding import EmbeddingModel, components_for, fit_pca


def correlated(n: int = 800, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    mix = rng.normal(size=(2, d))
    scales = np.geomspace(0.1, 500, d)  # channels in very different units
    return (latent @ mix + 0.2 * rng.normal(size=(n, d))) * scales + 50


def _splits(tmp_path: Path, x: np.ndarray) -> tuple[Path, Path, Path]:
    t = pa.table({f"s{j}": x[:, j] for j in range(x.shape[1])} | {"id": np.arange(len(x))})
    paths = tmp_path / "train.parquet", tmp_path / "valid.parquet", tmp_path / "test.parquet"
    n = len(x)
    parts = (t.slice(0, n // 2), t.slice(n // 2, n // 4), t.slice(3 * n // 4))
    for path, part in zip(paths, parts, strict=True):
        pq.write_table(part, path)
    return paths


def test_pca_model_equals_scikit_learn_pca_to_1e6(tmp_path: Path) -> None:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    x = correlated()
    train, valid, test = _splits(tmp_path, x)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="", task="embedding", exclude=["id"],
        task_params={"embedding": {"n_components": 3}},
    )  # fmt: skip
    scaler = StandardScaler().fit(x[: len(x) // 2])
    reference = PCA(n_components=3, svd_solver="full").fit(scaler.transform(x[: len(x) // 2]))
    x_test = x[3 * len(x) // 4 :]
    ours = load_model(out).predict_raw(pq.read_table(test))
    np.testing.assert_allclose(ours, reference.transform(scaler.transform(x_test)), atol=1e-6)
    model = load_model(out).model.embedding
    np.testing.assert_allclose(model.components, reference.components_, atol=1e-6)
    np.testing.assert_allclose(
        model.explained_variance_ratio, reference.explained_variance_ratio_, atol=1e-9
    )


def test_the_variance_target_picks_the_fewest_components() -> None:
    z = correlated(d=8, seed=1)
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    model = fit_pca(z, n_components=None, variance_target=0.9)
    ratios = fit_pca(z, n_components=8, variance_target=0.9).explained_variance_ratio
    assert ratios is not None
    m = model.n_components
    assert ratios[:m].sum() >= 0.9 > ratios[: m - 1].sum()
    assert components_for(np.array([0.5, 0.3, 0.2]), 0.8) == 2
    assert components_for(np.array([0.5, 0.3, 0.2]), 1.0) == 3


def test_reconstruction_and_json_round_trip() -> None:
    z = correlated(d=4, seed=2)
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    full = fit_pca(z, n_components=4, variance_target=0.95)
    np.testing.assert_allclose(full.reconstruct(z), z, atol=1e-9)  # every component: exact
    again = EmbeddingModel.from_dict(full.to_dict())
    np.testing.assert_allclose(again.transform(z), full.transform(z))


def test_bad_embedding_inputs_are_refused() -> None:
    with pytest.raises(
        DataError, match=r"embedding.n_components: 9 components asked but at most 4"
    ):
        fit_pca(np.random.default_rng(0).normal(size=(50, 4)), n_components=9, variance_target=0.9)
    with pytest.raises(DataError, match="constant"):
        fit_pca(np.ones((30, 3)), n_components=None, variance_target=0.9)


def test_embedding_evaluation_reports_variance_and_error(tmp_path: Path) -> None:
    from voltpipe.evaluation.evaluate import evaluate_challenger
    from voltpipe.modelling.train import train_model

    x = correlated(seed=3)
    train, valid, test = _splits(tmp_path, x)
    out = tmp_path / "model"
    train_model(train, valid, out, label="", task="embedding", exclude=["id"])
    result = evaluate_challenger(
        out, test, champion_dir=out, champion_version="1", metric="explained_variance"
    )
    assert 0.9 < result.metrics["explained_variance"] <= 1.0
    assert result.metrics["reconstruction_error"] == pytest.approx(
        1 - result.metrics["explained_variance"], abs=0.05
    )
    assert result.decision.method == "paired bootstrap" and result.decision.verdict == "hold"
    assert "Explained variance by component" in result.plots_html
    assert result.details["top_loadings"][0][0]["feature"].startswith("s")


@pytest.mark.slow
def test_autoencoder_latent_space_in_numpy_equals_keras(tmp_path: Path) -> None:
    import keras

    from voltpipe.modelling.predict import load_model
    from voltpipe.modelling.train import train_model

    x = correlated(n=600, seed=4)
    train, valid, test = _splits(tmp_path, x)
    out = tmp_path / "model"
    train_model(
        train, valid, out, label="", task="embedding", exclude=["id"],
        model_params={"family": "autoencoder", "hidden_units": [8], "dropout": 0.0},
        training_params={"epochs": 5, "batch_size": 64},
        task_params={"embedding": {"n_components": 2}},
    )  # fmt: skip
    loaded = load_model(out)
    table = pq.read_table(test)
    ours = loaded.predict_raw(table)
    assert ours.shape == (table.num_rows, 2)
    # The same weights through Keras: the encoder of families.build_autoencoder on the
    # standardised, clipped inputs.
    spec = loaded.model.inputs
    z = spec.standardise(np.column_stack([table.column(f).to_numpy() for f in spec.features]))
    enc = loaded.model.embedding.encoder
    inp = keras.Input(shape=(z.shape[1],))
    h = inp
    for i, layer in enumerate(enc):
        dense = keras.layers.Dense(layer.bias.shape[0], activation=layer.activation, name=f"d{i}")
        h = dense(h)
        dense.set_weights([layer.kernel, layer.bias])
    expected = keras.Model(inp, h).predict(z.astype("float32"), verbose=0)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert not (out / "model.keras").exists()
    # ... and the trained Keras model's own latent layer agreed with the NumPy encoder
    from voltpipe.model_dir import read_meta

    assert read_meta(out)["embedding"]["numpy_vs_keras_max_gap"] < 1e-4
