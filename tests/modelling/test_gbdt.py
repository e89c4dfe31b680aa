"""Family gbdt (LightGBM): its folder, scoring without TensorFlow, determinism, bad files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.modelling.synthetic import tabular_table, write_split
from tests.modelling.test_vertex_jobs import running_server  # noqa: F401 - the fixture
from voltpipe.errors import DataError
from voltpipe.model_dir import GBDT_FILE, META_FILE, check_model_files, load_meta, read_meta
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.train import train_model

GBDT = {"family": "gbdt", "gbdt": {"max_trees": 300, "early_stopping_rounds": 20}}


def _train(root: Path, task: str, label: str, out: str = "model", **kw) -> Path:  # type: ignore[no-untyped-def]
    drop = "target" if label == "label" else "label"  # the other label would leak
    train, valid = root / f"train-{label}", root / f"valid-{label}"
    if not train.exists():
        write_split(train, tabular_table(2000, 2, seed=1).drop_columns([drop]))
        write_split(valid, tabular_table(500, 2, seed=2).drop_columns([drop]))
    train_model(train, valid, root / out, label=label, task=task, model_params=GBDT, **kw)
    return root / out


@pytest.fixture(scope="module")
def regression_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("gbdt-reg"), "regression", "target")


@pytest.fixture(scope="module")
def classification_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("gbdt-cls"), "classification", "label")


def test_the_folder_holds_a_lightgbm_text_model_and_its_metadata(regression_dir: Path) -> None:
    assert (regression_dir / GBDT_FILE).read_text().startswith("tree")  # LightGBM's text format
    assert not (regression_dir / "model.keras").exists()
    meta = load_meta(regression_dir)
    assert (meta.format, meta.family, meta.task) == ("voltpipe-gbdt-v1", "gbdt", "regression")
    assert meta.model_file and meta.model_file["name"] == GBDT_FILE
    assert 1 <= meta.training["best_epoch"] <= 300
    assert meta.training["stopped_by"] in ("early_stopping", "epoch_cap")
    assert set(meta.features["numeric"]) == {"x1", "x2"}
    assert meta.features["categorical"] == {"cat": ["a", "b", "c"]}
    history = json.loads((regression_dir / "voltpipe_history.json").read_text())
    assert len(history["val_loss"]) == meta.training["epochs_run"]


def test_regression_learns_the_table_and_takes_unseen_categories(regression_dir: Path) -> None:
    test = tabular_table(400, 2, seed=3)
    model = load_model(regression_dir)
    pred = model.predict_raw(test)
    y = test.column("target").to_numpy()
    assert pred.shape == (400,) and pred.dtype == np.float32
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    assert rmse < 0.35 * float(np.std(y))  # far better than the mean
    unseen = test.set_column(2, "cat", pa.array(["zzz"] * 400))
    assert np.all(np.isfinite(model.predict_raw(unseen)))
    with pytest.raises(DataError, match="no Keras model"):
        _ = model.keras_model


def test_classification_gives_probabilities_in_class_order(classification_dir: Path) -> None:
    test = tabular_table(400, 2, seed=3)
    model = load_model(classification_dir)
    p = model.predict_raw(test)
    assert model.meta["classes"] == ["ok", "trip"] and p.shape == (400, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    truth = np.asarray(test.column("label").to_pylist()) == "trip"
    assert float(np.mean((p[:, 1] > 0.5) == truth)) > 0.9


def test_balanced_class_weights_raise_the_minority_probability(tmp_path: Path) -> None:
    def noisy(n: int, seed: int) -> pa.Table:  # ~12 % positives, overlapping classes
        rng = np.random.default_rng(seed)
        x = rng.normal(0, 1, n)
        y = rng.random(n) < 1 / (1 + np.exp(-(1.5 * x - 2.8)))
        return pa.table({"x": x, "y": np.where(y, "fault", "ok")})

    write_split(tmp_path / "train", noisy(3000, 1))
    write_split(tmp_path / "valid", noisy(1000, 2))
    p = {}
    for weight in ("none", "balanced"):
        out = tmp_path / weight
        train_model(
            tmp_path / "train",
            tmp_path / "valid",
            out,
            label="y",
            task="classification",
            model_params=GBDT,
            training_params={"class_weight": weight},
        )
        p[weight] = float(load_model(out).predict_raw(noisy(1000, 3))[:, 0].mean())
    assert read_meta(tmp_path / "balanced")["class_weights"][0] > 2  # "fault" sorts first
    assert p["none"] < 0.2 and p["balanced"] > p["none"] + 0.15


def test_two_fits_give_the_same_predictions(tmp_path: Path, regression_dir: Path) -> None:
    again = _train(tmp_path, "regression", "target")
    test = tabular_table(400, 2, seed=3)
    a = load_model(regression_dir).predict_raw(test).astype(np.float64)
    b = load_model(again).predict_raw(test).astype(np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert (again / GBDT_FILE).read_bytes() == (regression_dir / GBDT_FILE).read_bytes()


def test_scoring_serving_and_the_smoke_test_never_import_tensorflow(
    classification_dir: Path,
) -> None:
    code = f"""
import sys
import pyarrow as pa
from voltpipe.modelling.predict import load_model
from voltpipe.deploy.local import sample_instances, smoke_test
from voltpipe.serving.predictor import load_predictor
d = {str(classification_dir)!r}
rows = pa.table({{"x1": [0.5, 2.0], "x2": [0.1, -1.0], "cat": ["b", None]}})
out = load_model(d).predict_raw(rows)
predictor = load_predictor(d)
served = predictor.predict(rows.to_pylist())
smoke = smoke_test(d, sample_instances(d))
print(out.shape[0], len(served), len(smoke), predictor.engine, "tensorflow" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["2", "2", "1", "lightgbm", "False"], done.stdout + done.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_model_file_is_refused(tmp_path: Path, regression_dir: Path, damage: str) -> None:
    from voltpipe.serving.predictor import load_predictor

    copy = tmp_path / "m"
    shutil.copytree(regression_dir, copy)
    check_model_files(copy)  # as saved: fine
    path = copy / GBDT_FILE
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    else:
        path.unlink()
    with pytest.raises(DataError, match=GBDT_FILE):
        check_model_files(copy)
    with pytest.raises(DataError, match=GBDT_FILE):
        load_predictor(copy)
    with pytest.raises(DataError, match=GBDT_FILE):
        load_model(copy)


def test_garbled_metadata_is_one_clear_error(tmp_path: Path, regression_dir: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(regression_dir, copy)
    (copy / META_FILE).write_text('{"task": "regression", ')
    with pytest.raises(DataError, match=f"{META_FILE} is not readable JSON"):
        load_model(copy)


def test_columns_not_in_alphabetical_order_keep_their_meaning(tmp_path: Path) -> None:
    # The metadata's feature plan is a JSON object (keys sorted on write): the model's own
    # input order must survive the round trip.
    def table(n: int, seed: int) -> pa.Table:
        rng = np.random.default_rng(seed)
        wind, density = rng.uniform(0, 25, n), rng.uniform(1.1, 1.3, n)
        return pa.table(
            {"zone": rng.choice(["s", "n"], n), "wind": wind, "density": density, "y": wind**2}
        )

    write_split(tmp_path / "train", table(1500, 1))
    write_split(tmp_path / "valid", table(300, 2))
    out = tmp_path / "model"
    train_model(
        tmp_path / "train", tmp_path / "valid", out, label="y", task="regression", model_params=GBDT
    )
    test = table(300, 3)
    pred = load_model(out).predict_raw(test)
    assert float(np.sqrt(np.mean((pred - test.column("y").to_numpy()) ** 2))) < 10.0  # y std ~ 180


@pytest.mark.slow
@pytest.mark.integration
def test_the_vertex_custom_job_trains_a_gbdt(running_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.modelling.test_vertex_jobs import IMAGE, _splits_in_gcs, _vertex
    from voltpipe.modelling import vertex_jobs

    train_uri, valid_uri = _splits_in_gcs(tmp_path)
    model_path = tmp_path / "gcs/my-bucket/root/train-43/model"
    result = vertex_jobs.train_on_vertex(
        vertex=_vertex(running_server),
        image=IMAGE,
        train_uri=train_uri,
        valid_uri=valid_uri,
        model_uri="gs://my-bucket/root/train-43/model",
        model_path=str(model_path),
        label="target",
        task="regression",
        exclude=["label"],
        model_params=GBDT,
        training_params={"backend": "vertex"},
        display_name="gbdt-train",
    )
    assert result.meta["family"] == "gbdt" and (model_path / GBDT_FILE).exists()
    assert result.best_epoch >= 1 and len(result.history["val_loss"]) == result.epochs_run
    check_model_files(model_path)
    assert load_model(model_path).predict_raw(tabular_table(5, 2, 3)).shape == (5,)


@pytest.mark.slow
def test_tuning_searches_the_gbdt_default_space_and_training_applies_it(tmp_path: Path) -> None:
    from voltpipe.modelling.tuning import search

    tr = write_split(tmp_path / "tr", tabular_table(1500, 2, 1).drop_columns(["label"]))
    va = write_split(tmp_path / "va", tabular_table(400, 2, 2).drop_columns(["label"]))
    result = search(
        str(tr),
        str(va),
        label="target",
        task="regression",
        tuning={"enabled": True, "max_trials": 3},  # no space: the family's default
        model_params=GBDT,
    )
    tuned = result.best_params["model"]
    assert {"gbdt.learning_rate", "gbdt.num_leaves"} <= set(tuned)
    assert isinstance(tuned["gbdt.num_leaves"], int)
    assert [t["state"] for t in result.trials] == ["COMPLETE"] * 3
    trained = train_model(
        tr,
        va,
        tmp_path / "m",
        label="target",
        task="regression",
        model_params=GBDT,
        best_params=result.best_params,
    )
    assert trained.meta["model_params"]["gbdt"]["num_leaves"] == tuned["gbdt.num_leaves"]
    assert trained.meta["model_params"]["gbdt"]["max_trees"] == 300  # untuned keys stay


def test_the_run_table_counts_a_gbdts_boosting_iterations_as_trees() -> None:
    from voltpipe.cli import _fit_unit

    blend = {"family": "blend", "chosen": True, "members": ["gbdt", "mlp"]}
    assert _fit_unit({"family": "gbdt"}) == "trees"
    assert _fit_unit({"family": "blend", "candidates": [{"family": "gbdt"}, blend]}) == "trees"
    assert _fit_unit(
        {"family": "blend", "candidates": [{**blend, "members": ["mlp", "gbdt"]}]}
    ) == ("epochs")
    assert _fit_unit({"family": "mlp"}) == "epochs"
    assert _fit_unit({}) == "epochs"  # an older summary without the family
