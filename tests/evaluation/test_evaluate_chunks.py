"""Evaluate scores a big test split in chunks: the same metrics, one chunk of inputs at a time."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.serving.conftest import scada_table
from voltpipe.evaluation import evaluate


@pytest.fixture(scope="module")
def model_and_test(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("gbdt-eval")
    for split, n, seed in (("train", 800, 1), ("valid", 200, 2), ("test", 1000, 3)):
        (root / split).mkdir()
        pq.write_table(scada_table(n, seed).drop_columns(["state"]), root / split / "p.parquet")
    train_model(
        root / "train",
        root / "valid",
        root / "model",
        label="power_kw",
        task="regression",
        model_params={"family": "gbdt", "gbdt": {"max_trees": 20}},
    )
    return root / "model", root / "test"


def test_chunked_scoring_gives_the_same_metrics(
    model_and_test: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, test = model_and_test
    whole = evaluate.score_model(model, test, slice_columns=["turbine_id"])
    assert whole.chunks == 1
    monkeypatch.setattr(evaluate, "SCORE_CHUNK_ROWS", 300)
    chunked = evaluate.score_model(model, test, slice_columns=["turbine_id"])
    assert chunked.chunks == math.ceil(1000 / 300)
    assert chunked.rows == whole.rows == 1000
    for name, value in whole.metrics.items():
        assert chunked.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert chunked.slices == whole.slices
    assert chunked.outputs is not None and whole.outputs is not None
    assert chunked.outputs.shape == whole.outputs.shape == (1000,)
