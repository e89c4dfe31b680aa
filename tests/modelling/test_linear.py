"""Family linear: ridge / logistic regression on standardised numbers and one-hot categories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.modelling.synthetic import tabular_table, write_split
from voltpipe.errors import DataError
from voltpipe.model_dir import LINEAR_FILE, check_model_files, read_meta
from voltpipe.modelling.linear import STRENGTHS
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import train_model

LINEAR = {"family": "linear"}


def linear_table(n: int, seed: int, flag: float = 0.0) -> pa.Table:
    """y = 2 x1 - 3 x2 + 1.5 [cat = b] + noise, and a column constant at `flag`."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(5, 10, n)
    cat = rng.choice(["a", "b", "c"], n)
    y = 2 * x1 - 3 * x2 + 1.5 * (cat == "b") + rng.normal(0, 0.1, n)
    return pa.table({"x1": x1, "x2": x2, "cat": cat, "flag": np.full(n, flag), "y": y})


def test_regression_recovers_a_linear_table_and_saves_plain_weights(tmp_path: Path) -> None:
    write_split(tmp_path / "train", linear_table(1500, 1))
    write_split(tmp_path / "valid", linear_table(400, 2))
    out = tmp_path / "model"
    train_model(
        tmp_path / "train",
        tmp_path / "valid",
        out,
        label="y",
        task="regression",
        model_params=LINEAR,
    )
    meta = read_meta(out)
    assert (meta["format"], meta["family"]) == ("voltpipe-linear-v1", "linear")
    saved = json.loads((out / LINEAR_FILE).read_text())  # plain JSON weights, no pickle
    assert saved["numeric"] == ["x1", "x2", "flag"] and len(saved["coef"]) == 3 + 3
    assert not (out / "model.keras").exists()
    check_model_files(out)
    test = linear_table(500, 3)
    pred = load_model(out).predict_raw(test)
    y = test.column("y").to_numpy()
    assert float(np.sqrt(np.mean((pred - y) ** 2))) < 0.15
    # a value never seen in a column constant in train: finite, and it moves nothing
    odd = load_model(out).predict_raw(linear_table(500, 3, flag=1e6))
    assert np.all(np.isfinite(odd))
    np.testing.assert_allclose(odd, pred, atol=1e-4)
    # an unseen category: all zeros in the one-hot block, still a sane number
    unseen = test.set_column(2, "cat", pa.array(["zzz"] * 500))
    assert float(np.abs(load_model(out).predict_raw(unseen) - pred).max()) < 2.0


@pytest.mark.parametrize("classes", [2, 3])
def test_classification_gives_calibrated_probabilities(tmp_path: Path, classes: int) -> None:
    write_split(tmp_path / "train", tabular_table(1500, classes, 1).drop_columns(["target"]))
    write_split(tmp_path / "valid", tabular_table(400, classes, 2).drop_columns(["target"]))
    out = tmp_path / "model"
    train_model(
        tmp_path / "train",
        tmp_path / "valid",
        out,
        label="label",
        task="classification",
        model_params=LINEAR,
    )
    test = tabular_table(500, classes, 3)
    model = load_model(out)
    p = model.predict_raw(test)
    assert p.shape == (500, classes)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    truth = np.asarray(test.column("label").to_pylist())
    classes_ = np.asarray(model.meta["classes"])
    assert float(np.mean(classes_[p.argmax(axis=1)] == truth)) > 0.9


def test_a_small_valid_split_chooses_the_strength_by_cross_validation(tmp_path: Path) -> None:
    from voltpipe.modelling.train import fit_tables

    fitted, _ = fit_tables(
        linear_table(150, 1),
        linear_table(20, 2),
        label="y",
        task="regression",
        model_params=LINEAR,
    )
    assert fitted.meta["strength"] in STRENGTHS
    # well-determined, barely noisy data: the weakest regularisation wins
    assert fitted.meta["strength"] <= 0.1


def test_fits_run_blas_on_one_thread_and_give_the_process_its_threads_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_info

    from voltpipe.modelling.train import fit_tables

    seen: list[int] = []
    real = Ridge.fit

    def watched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ridge, "fit", watched)  # scikit-learn's, watched, not replaced
    before = {(p["filepath"], p["num_threads"]) for p in threadpool_info()}
    fitted, _ = fit_tables(
        linear_table(150, 1), linear_table(20, 2), label="y", task="regression",
        model_params=LINEAR,
    )  # fmt: skip
    assert seen and set(seen) == {1}
    after = {(p["filepath"], p["num_threads"]) for p in threadpool_info()}
    assert before <= after  # the limit is lifted (libraries loaded meanwhile may add)
    assert fitted.meta["strength"] in STRENGTHS


def test_a_corrupted_weights_file_is_refused(tmp_path: Path) -> None:
    write_split(tmp_path / "train", linear_table(300, 1))
    write_split(tmp_path / "valid", linear_table(100, 2))
    out = tmp_path / "model"
    train_model(
        tmp_path / "train",
        tmp_path / "valid",
        out,
        label="y",
        task="regression",
        model_params=LINEAR,
    )
    data = (out / LINEAR_FILE).read_bytes()
    (out / LINEAR_FILE).write_bytes(data[:-10])
    with pytest.raises(DataError, match=f"{LINEAR_FILE} is corrupted or truncated"):
        load_model(out)
