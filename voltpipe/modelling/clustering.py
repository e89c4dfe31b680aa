"""Clustering models (task: clustering): k-means and a Gaussian mixture, fitted with
scikit-learn, saved as JSON and scored with NumPy.

`ClusterModel` is the saved model: centres (and, for the mixture, covariances and weights) on
the standardised scale of its inputs. Cluster ids are ordered deterministically (largest train
cluster first, ties by centre) and can be matched to another model's (`matching_permutation`,
Hungarian assignment) so a retrain does not relabel clusters. scikit-learn is imported only by
the fitting functions: serving a `ClusterModel` needs NumPy alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from voltpipe.errors import DataError

FAMILIES = ("kmeans", "gmm")
# Restarts: measured on 5,000 48-point day profiles (a loaded 2-core machine), k-means with 10
# restarts took 15-19 s per k and a 3-restart mixture up to 60 s; the k-means++ / k-means
# initialised mixture rarely needs more restarts than these.
KMEANS_N_INIT = 4
GMM_N_INIT = 1
GMM_REG_COVAR = 1e-6
FULL_ROWS_PER_PARAMETER = 2
SELECTION_MAX_ROWS = 5000  # rows k is chosen on (a seeded sample of larger train splits)
# Silhouette is O(n^2): above this many rows it is computed on a seeded sample.
SILHOUETTE_MAX_ROWS = 4000


@dataclasses.dataclass
class ClusterModel:
    """A fitted clustering on standardised inputs.

    Attributes:
        method: ``kmeans`` or ``gmm``.
        centers: (k, d) cluster centres (mixture: component means).
        covariances: (k, d, d) full or (k, d) diagonal covariances (gmm), else None.
        weights: (k,) mixture weights (gmm), else None.
    """

    method: str
    centers: np.ndarray
    covariances: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    def distances(self, z: np.ndarray) -> np.ndarray:
        """(n, k) Euclidean distance of each row to each centre."""
        z = np.asarray(z, dtype="float64")
        sq = (
            (z * z).sum(axis=1)[:, None]
            - 2.0 * z @ self.centers.T
            + (self.centers * self.centers).sum(axis=1)[None, :]
        )
        return np.sqrt(np.maximum(sq, 0.0))

    def log_densities(self, z: np.ndarray) -> np.ndarray:
        """(n, k) log of weight x Gaussian density of each row under each component (gmm)."""
        if self.covariances is None or self.weights is None:
            raise DataError(f"a {self.method} model has no mixture densities")
        z = np.asarray(z, dtype="float64")
        n, d = z.shape
        out = np.empty((n, self.k))
        if self.covariances.ndim == 2:  # diagonal: (k, d) variances
            for j in range(self.k):
                var = self.covariances[j]
                maha = (((z - self.centers[j]) ** 2) / var).sum(axis=1)
                out[:, j] = math.log(self.weights[j]) - 0.5 * (
                    d * math.log(2 * math.pi) + float(np.log(var).sum()) + maha
                )
            return out
        for j in range(self.k):
            chol = np.linalg.cholesky(self.covariances[j])
            solved = np.linalg.solve(chol, (z - self.centers[j]).T)
            maha = (solved * solved).sum(axis=0)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            out[:, j] = math.log(self.weights[j]) - 0.5 * (
                d * math.log(2 * math.pi) + log_det + maha
            )
        return out

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """(n, k) membership probabilities (gmm: the posterior; kmeans: one-hot)."""
        if self.method != "gmm":
            ids = self.assign(z)
            return np.eye(self.k)[ids]
        logp = self.log_densities(z)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)

    def assign(self, z: np.ndarray) -> np.ndarray:
        """(n,) cluster ids: the nearest centre (kmeans) or the most probable component (gmm)."""
        if self.method == "gmm":
            return np.asarray(self.log_densities(z).argmax(axis=1), dtype="int64")
        return np.asarray(self.distances(z).argmin(axis=1), dtype="int64")

    def permuted(self, order: list[int] | np.ndarray) -> ClusterModel:
        """The same model with new id ``i`` = old id ``order[i]``."""
        idx = np.asarray(order, dtype="int64")
        return ClusterModel(
            self.method,
            self.centers[idx],
            None if self.covariances is None else self.covariances[idx],
            None if self.weights is None else self.weights[idx],
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "centers": self.centers.tolist()}
        if self.covariances is not None and self.weights is not None:
            out["covariances"] = self.covariances.tolist()
            out["weights"] = self.weights.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterModel:
        method = str(d.get("method"))
        if method not in FAMILIES:
            raise DataError(f"cluster model method {method!r} is not one of {', '.join(FAMILIES)}")
        centers = np.asarray(d["centers"], dtype="float64")
        if centers.ndim != 2 or centers.shape[0] < 1:
            raise DataError("cluster model centers must be a (k, d) matrix")
        cov = d.get("covariances")
        weights = d.get("weights")
        return cls(
            method,
            centers,
            None if cov is None else np.asarray(cov, dtype="float64"),
            None if weights is None else np.asarray(weights, dtype="float64"),
        )


def canonical_order(model: ClusterModel, z_train: np.ndarray) -> ClusterModel:
    """Ids ordered by train cluster size (largest first), ties by centre coordinates."""
    ids = model.assign(z_train)
    sizes = np.bincount(ids, minlength=model.k)
    keys = sorted(
        range(model.k), key=lambda j: (-int(sizes[j]), *np.round(model.centers[j], 9).tolist())
    )
    return model.permuted(keys)


def matching_permutation(reference: np.ndarray, labels: np.ndarray, k: int) -> list[int]:
    """The relabelling of a k-cluster model that best agrees with `reference` ids on the same
    rows (Hungarian assignment on the contingency table).

    Returns ``order`` for `ClusterModel.permuted`: new id ``i`` = old id ``order[i]``. Clusters
    the reference cannot match (more clusters than it has) keep the ids after its own, in
    their old order.
    """
    from scipy.optimize import linear_sum_assignment

    ref = np.asarray(reference, dtype="int64")
    new = np.asarray(labels, dtype="int64")
    k_ref = int(ref.max()) + 1 if ref.size else 0
    table = np.zeros((max(k_ref, 1), k))
    np.add.at(table, (ref, new), 1.0)
    rows, cols = linear_sum_assignment(-table)
    new_of_old = {int(c): int(r) for r, c in zip(rows, cols, strict=True)}
    order: list[int | None] = [None] * k
    spare = []
    for old in range(k):
        target = new_of_old.get(old)
        if target is not None and target < k:
            order[target] = old
        else:
            spare.append(old)
    free = [i for i in range(k) if order[i] is None]
    for i, old in zip(free, spare, strict=True):
        order[i] = old
    return [int(o) for o in order if o is not None]


def silhouette(z: np.ndarray, ids: np.ndarray, *, seed: int = 0) -> float:
    """The mean silhouette (a seeded sample of `SILHOUETTE_MAX_ROWS` rows above that); nan
    when fewer than two clusters are used."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(ids)) < 2 or len(np.unique(ids)) >= len(ids):
        return float("nan")
    sample = SILHOUETTE_MAX_ROWS if len(ids) > SILHOUETTE_MAX_ROWS else None
    return float(silhouette_score(z, ids, sample_size=sample, random_state=seed))


def check_clusterable(z: np.ndarray, k_range: tuple[int, int], what: str) -> None:
    """Refuses data that cannot make `k_range[0]` clusters.

    Raises:
        DataError: fewer rows or distinct rows than clusters, or a constant table.
    """
    n = len(z)
    lo = k_range[0]
    if n < lo:
        raise DataError(
            f"clustering.k: {lo} clusters asked but the train split has only {n} {what}; "
            "lower clustering.k or select more data"
        )
    distinct = len(np.unique(np.round(z, 12), axis=0))
    if distinct < 2:
        raise DataError(
            f"the train split's {what} are all identical (a constant table): nothing to cluster"
        )
    if distinct < lo:
        raise DataError(
            f"clustering.k: {lo} clusters asked but the train split has only {distinct} "
            f"distinct {what}"
        )


def fit_kmeans(z: np.ndarray, k: int, seed: int) -> ClusterModel:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(z)
    return ClusterModel("kmeans", np.asarray(km.cluster_centers_, dtype="float64"))


def covariance_type(n: int, d: int, k: int) -> str:
    """``full`` when every component has at least `FULL_ROWS_PER_PARAMETER` rows per
    covariance parameter on average, else ``diag`` (a 48-point profile has 1,176 covariance
    parameters: full covariances would need tens of thousands of profiles per cluster)."""
    return "full" if n / max(k, 1) >= FULL_ROWS_PER_PARAMETER * d * (d + 1) / 2 else "diag"


def fit_gmm(z: np.ndarray, k: int, seed: int) -> tuple[ClusterModel, float]:
    """A Gaussian mixture (full or diagonal covariances: `covariance_type`) and its BIC."""
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(
        n_components=k,
        covariance_type=covariance_type(len(z), z.shape[1], k),
        n_init=GMM_N_INIT,
        reg_covar=GMM_REG_COVAR,
        random_state=seed,
    ).fit(z)
    model = ClusterModel(
        "gmm",
        np.asarray(gm.means_, dtype="float64"),
        np.asarray(gm.covariances_, dtype="float64"),
        np.asarray(gm.weights_, dtype="float64"),
    )
    return model, float(gm.bic(z))


@dataclasses.dataclass
class ClusterFit:
    """The chosen model and how it was chosen (every candidate's scores)."""

    model: ClusterModel
    family: str
    candidates: list[dict[str, Any]]


def fit_clusters(
    z_train: np.ndarray,
    z_valid: np.ndarray | None,
    *,
    family: str,
    k_range: tuple[int, int],
    seed: int,
    what: str = "rows",
) -> ClusterFit:
    """Fits the family over `k_range` and keeps the best.

    k-means: the k with the highest silhouette on train and valid; mixture: the k with the
    lowest BIC on train; ``auto``: both, then the one with the higher silhouette (a tie goes
    to k-means). Above `SELECTION_MAX_ROWS` train rows, k is chosen on a seeded sample and the
    chosen model refitted on every row. Ids are ordered by `canonical_order`.

    Raises:
        DataError: too few rows (or distinct rows) for the smallest k, or a constant table.
    """
    check_clusterable(z_train, k_range, what)
    lo, hi = k_range
    hi = max(lo, min(hi, len(z_train) - 1))  # silhouette needs fewer clusters than rows
    # Silhouette needs no held-out rows (nothing is fitted to it), and a small valid split
    # can miss a cluster entirely: k is scored on train and valid together.
    score_on = z_train if z_valid is None or not len(z_valid) else np.vstack([z_train, z_valid])
    # k is chosen on a seeded sample of large tables; the chosen model is refitted on all rows.
    full = z_train
    if len(z_train) > SELECTION_MAX_ROWS:
        rng = np.random.default_rng(seed)
        z_train = z_train[np.sort(rng.choice(len(z_train), SELECTION_MAX_ROWS, replace=False))]
    candidates: list[dict[str, Any]] = []
    best: dict[str, tuple[float, ClusterModel, int]] = {}
    for k in range(lo, hi + 1):
        if family in ("auto", "kmeans"):
            t0 = time.perf_counter()
            km = fit_kmeans(z_train, k, seed)
            sil = silhouette(score_on, km.assign(score_on), seed=seed)
            candidates.append(
                {"family": "kmeans", "k": k, "silhouette": sil,
                 "seconds": round(time.perf_counter() - t0, 3)}
            )  # fmt: skip
            score = sil if math.isfinite(sil) else -math.inf
            if "kmeans" not in best or score > best["kmeans"][0]:
                best["kmeans"] = (score, km, k)
        if family in ("auto", "gmm"):
            t0 = time.perf_counter()
            gm, bic = fit_gmm(z_train, k, seed)
            sil = silhouette(score_on, gm.assign(score_on), seed=seed)
            candidates.append(
                {"family": "gmm", "k": k, "bic": bic, "silhouette": sil,
                 "seconds": round(time.perf_counter() - t0, 3)}
            )  # fmt: skip
            if "gmm" not in best or -bic > best["gmm"][0]:
                best["gmm"] = (-bic, gm, k)
    if family == "auto":
        sil_of = {
            f: next(
                c["silhouette"] for c in candidates if c["family"] == f and c["k"] == best[f][2]
            )
            for f in best
        }
        chosen = max(
            best,
            key=lambda f: (sil_of[f] if math.isfinite(sil_of[f]) else -math.inf, f == "kmeans"),
        )
    else:
        chosen = family
    model = best[chosen][1]
    if len(full) > len(z_train):
        model = (
            fit_gmm(full, model.k, seed)[0] if chosen == "gmm" else fit_kmeans(full, model.k, seed)
        )
    model = canonical_order(model, full)
    for c in candidates:
        c["chosen"] = c["family"] == chosen and c["k"] == model.k
    return ClusterFit(model, chosen, candidates)


def bootstrap_stability(
    z: np.ndarray, ids: np.ndarray, *, method: str, k: int, resamples: int, seed: int
) -> float | None:
    """Mean adjusted Rand index between `ids` and refits of the same method and k on bootstrap
    resamples of `z` (each refit labels every row of `z`); None without resamples."""
    from sklearn.metrics import adjusted_rand_score

    if resamples <= 0 or len(z) <= k:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    for r in range(resamples):
        idx = rng.integers(0, len(z), len(z))
        sample = z[idx]
        if len(np.unique(np.round(sample, 12), axis=0)) < k:
            continue
        refit = (
            fit_gmm(sample, k, seed + r + 1)[0]
            if method == "gmm"
            else fit_kmeans(sample, k, seed + r + 1)
        )
        scores.append(adjusted_rand_score(ids, refit.assign(z)))
    return float(np.mean(scores)) if scores else None
