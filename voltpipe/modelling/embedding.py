"""Embedding models (task: embedding): PCA (scikit-learn) or the anomaly autoencoder's latent
space, saved as JSON weights and scored with NumPy.

`EmbeddingModel` maps standardised inputs to components (``transform``) and back
(``reconstruct``). PCA keeps scikit-learn's components, mean and variances as they are, so its
components equal ``sklearn.decomposition.PCA``'s to rounding. The autoencoder's encoder and
decoder are Dense layers, replayed here from their weights. scikit-learn and Keras are imported
only by the fitting functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from voltpipe.errors import DataError

FAMILIES = ("pca", "autoencoder")
_ACTIVATIONS = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
}


@dataclasses.dataclass
class DenseLayer:
    kernel: np.ndarray  # (inputs, units)
    bias: np.ndarray  # (units,)
    activation: str = "linear"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(_ACTIVATIONS[self.activation](x @ self.kernel + self.bias))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel.tolist(),
            "bias": self.bias.tolist(),
            "activation": self.activation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenseLayer:
        act = str(d.get("activation", "linear"))
        if act not in _ACTIVATIONS:
            raise DataError(f"embedding layer activation {act!r} is not supported")
        return cls(np.asarray(d["kernel"], "float64"), np.asarray(d["bias"], "float64"), act)


@dataclasses.dataclass
class EmbeddingModel:
    """A fitted embedding of standardised inputs.

    Attributes:
        method: ``pca`` or ``autoencoder``.
        components: (m, d) principal axes (pca), else None.
        mean: (d,) the mean PCA removes (pca), else None.
        explained_variance: (m,) variance of each component on train (pca: scikit-learn's).
        explained_variance_ratio: (m,) its share of the total variance (pca).
        encoder, decoder: Dense layers (autoencoder).
    """

    method: str
    components: np.ndarray | None = None
    mean: np.ndarray | None = None
    explained_variance: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None
    encoder: list[DenseLayer] = dataclasses.field(default_factory=list)
    decoder: list[DenseLayer] = dataclasses.field(default_factory=list)
    verified_gap: float | None = None  # autoencoder: max |NumPy - Keras| latent at training

    @property
    def n_components(self) -> int:
        if self.components is not None:
            return int(self.components.shape[0])
        return int(self.encoder[-1].bias.shape[0])

    def transform(self, z: np.ndarray) -> np.ndarray:
        """(n, m) components of standardised rows."""
        z = np.asarray(z, dtype="float64")
        if self.method == "pca":
            assert self.components is not None and self.mean is not None
            return np.asarray((z - self.mean) @ self.components.T)
        for layer in self.encoder:
            z = layer(z)
        return z

    def inverse(self, c: np.ndarray) -> np.ndarray:
        """(n, d) standardised rows rebuilt from components."""
        c = np.asarray(c, dtype="float64")
        if self.method == "pca":
            assert self.components is not None and self.mean is not None
            return np.asarray(c @ self.components + self.mean)
        for layer in self.decoder:
            c = layer(c)
        return c

    def reconstruct(self, z: np.ndarray) -> np.ndarray:
        return self.inverse(self.transform(z))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        for name in ("components", "mean", "explained_variance", "explained_variance_ratio"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.tolist()
        if self.encoder:
            out["encoder"] = [layer.to_dict() for layer in self.encoder]
            out["decoder"] = [layer.to_dict() for layer in self.decoder]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddingModel:
        method = str(d.get("method"))
        if method not in FAMILIES:
            raise DataError(f"embedding method {method!r} is not one of {', '.join(FAMILIES)}")

        def arr(name: str) -> np.ndarray | None:
            return None if d.get(name) is None else np.asarray(d[name], dtype="float64")

        model = cls(
            method,
            arr("components"),
            arr("mean"),
            arr("explained_variance"),
            arr("explained_variance_ratio"),
            [DenseLayer.from_dict(x) for x in d.get("encoder") or []],
            [DenseLayer.from_dict(x) for x in d.get("decoder") or []],
        )
        if method == "pca" and (model.components is None or model.mean is None):
            raise DataError("a pca embedding needs its components and mean")
        if method == "autoencoder" and not (model.encoder and model.decoder):
            raise DataError("an autoencoder embedding needs its encoder and decoder layers")
        return model


def components_for(ratios: np.ndarray, target: float) -> int:
    """The fewest leading components whose variance ratios sum to `target` or more."""
    cum = np.cumsum(np.asarray(ratios, dtype="float64"))
    return min(len(cum), int(np.searchsorted(cum, target - 1e-12)) + 1)


def fit_pca(z: np.ndarray, *, n_components: int | None, variance_target: float) -> EmbeddingModel:
    """PCA of standardised train rows (scikit-learn, full SVD): `n_components`, or the fewest
    explaining `variance_target` of the variance.

    Raises:
        DataError: fewer than two rows, a constant table, or more components than columns.
    """
    from sklearn.decomposition import PCA

    n, d = z.shape
    if n < 2:
        raise DataError(f"PCA needs two or more train rows, got {n}")
    if not np.any(z.var(axis=0) > 0):
        raise DataError("the train split's features are constant: there is no variance to embed")
    limit = min(n, d)
    if n_components is not None and n_components > limit:
        raise DataError(
            f"embedding.n_components: {n_components} components asked but at most {limit} "
            f"exist ({n} rows x {d} feature columns)"
        )
    full = PCA(n_components=limit, svd_solver="full").fit(z)
    m = n_components or components_for(full.explained_variance_ratio_, variance_target)
    return EmbeddingModel(
        "pca",
        components=np.asarray(full.components_[:m], dtype="float64"),
        mean=np.asarray(full.mean_, dtype="float64"),
        explained_variance=np.asarray(full.explained_variance_[:m], dtype="float64"),
        explained_variance_ratio=np.asarray(full.explained_variance_ratio_[:m], dtype="float64"),
    )


def autoencoder_layers(keras_model: Any, hidden_units: list[int]) -> EmbeddingModel:
    """The encoder and decoder of a trained ``families.build_autoencoder`` model as NumPy
    layers (dropout is inactive at inference)."""

    def dense(name: str, activation: str) -> DenseLayer:
        kernel, bias = keras_model.get_layer(name).get_weights()
        return DenseLayer(np.asarray(kernel, "float64"), np.asarray(bias, "float64"), activation)

    encoder = [dense(f"encode_{i}", "relu") for i in range(len(hidden_units))]
    encoder.append(dense("latent", "linear"))
    decoder = [dense(f"decode_{i}", "relu") for i in range(len(hidden_units))]
    decoder.append(dense("reconstruction", "linear"))
    return EmbeddingModel("autoencoder", encoder=encoder, decoder=decoder)


def explained_variance(z: np.ndarray, rebuilt: np.ndarray, mean: np.ndarray) -> float:
    """1 - residual sum of squares / total sum of squares about `mean` (the train mean)."""
    total = float(((z - mean) ** 2).sum())
    if total <= 0:
        return float("nan")
    return 1.0 - float(((z - rebuilt) ** 2).sum()) / total
