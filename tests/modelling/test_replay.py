"""The NumPy replay saved beside row models: what it holds, that it predicts as Keras does, and
that evaluation-side loading and the deploy smoke test need no TensorFlow with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.modelling.synthetic import sensor_table, tabular_table, write_split
from voltpipe.errors import DataError
from voltpipe.modelling.predict import load_model
from voltpipe.modelling.replay import REPLAY_FILE, Replay
from voltpipe.modelling.train import check_model_file, train_model

pytestmark = pytest.mark.slow
FAST = {"epochs": 2, "batch_size": 128, "learning_rate": 0.01, "steps_per_execution": 1}


def _with_assets(n: int, seed: int) -> pa.Table:
    """The regression table plus a 40-value category: over MAX_ONE_HOT, so an embedding."""
    table = tabular_table(n, 2, seed)
    assets = np.random.default_rng(seed).integers(0, 40, n)
    return table.append_column("asset", pa.array([f"WT{a:02d}" for a in assets]))


CASES = {
    "classification": ("label", ["target"], lambda n, s: tabular_table(n, 3, s)),
    "regression": ("target", ["label"], _with_assets),
    "anomaly": ("fault", [], lambda n, s: sensor_table(n, 0.02, s)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    task = request.param
    label, exclude, make = CASES[task]
    root = tmp_path_factory.mktemp(f"replay-{task}")
    tr = write_split(root / "tr", make(1200, 1))
    va = write_split(root / "va", make(400, 2))
    te = write_split(root / "te", make(500, 3))
    train_model(
        tr,
        va,
        root / "model",
        label=label,
        task=task,
        exclude=exclude,
        model_params={
            "hidden_units": [16, 8],
            "latent_dim": 2,
            **({} if task == "anomaly" else {"family": "mlp"}),
        },
        training_params=FAST,
    )
    return task, root / "model", te


def test_training_saves_a_replay_that_predicts_as_keras_does(trained) -> None:  # type: ignore[no-untyped-def]
    task, model_dir, te = trained
    meta = json.loads((model_dir / "voltpipe_model.json").read_text())
    assert meta["replay"] is True and (model_dir / REPLAY_FILE).exists()
    replay = Replay.load(model_dir)
    assert replay is not None and replay.arrays
    kinds = {step["kind"] for step in replay.steps}
    assert {"Normalization", "StringLookup", "Dense"} <= kinds
    if task == "regression":  # the 40 assets go through an embedding
        assert "Embedding" in kinds
    test = pq.read_table(te)
    fast = load_model(model_dir)  # auto: the replay, no Keras model loaded
    assert fast.replay is not None and fast.model is None
    keras_loaded = load_model(model_dir, engine="keras")
    assert keras_loaded.replay is None and keras_loaded.model is not None
    got, expected = fast.predict_raw(test, batch_size=128), keras_loaded.predict_raw(test)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    if task == "classification":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_scoring_and_the_smoke_test_do_not_import_tensorflow(trained) -> None:  # type: ignore[no-untyped-def]
    _, model_dir, te = trained
    code = f"""
import sys
import pyarrow.parquet as pq
from voltpipe.modelling.predict import load_model
from voltpipe.deploy.local import sample_instances, smoke_test
out = load_model({str(model_dir)!r}).predict_raw(pq.read_table({str(te)!r}))
predictions = smoke_test({str(model_dir)!r}, sample_instances({str(model_dir)!r}))
print(len(out), len(predictions), "tensorflow" in sys.modules, "keras" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["500", "1", "False", "False"], done.stdout + done.stderr


def test_a_corrupted_archive_is_caught_without_tensorflow(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    _, model_dir, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    check_model_file(copy)  # the archive as saved passes
    data = (copy / "model.keras").read_bytes()
    (copy / "model.keras").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="model.keras is not a readable Keras archive"):
        check_model_file(copy)
    # one flipped byte inside the weights: the zip is readable but fails its CRC check
    import zipfile

    with zipfile.ZipFile(model_dir / "model.keras") as archive:
        info = archive.getinfo("model.weights.h5")
    buf = bytearray(data)
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    buf[at] ^= 0xFF
    (copy / "model.keras").write_bytes(bytes(buf))
    with pytest.raises(DataError, match="corrupted: model.weights.h5 fails its CRC check"):
        check_model_file(copy)
