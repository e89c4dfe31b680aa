"""Honest forecast evaluation: the test forecasts' past comes from the valid split, so every test
row is a target whatever the window, and the naive baselines are scored on the same targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.modelling.synthetic import demand_series, time_splits, write_split
from voltpipe.evaluation.evaluate import evaluate_challenger, score_model
from voltpipe.modelling import forecasting as fc

HORIZON = 6
SITES = ("north", "south")


def _site(table: pa.Table, site: str) -> np.ndarray:
    rows = table.filter(pc.equal(table["site"], site)).sort_by("ts")
    return rows["load_mw"].to_numpy()


def test_with_history_puts_each_series_valid_tail_before_its_test_rows() -> None:
    _, valid, test = time_splits(demand_series(days=14), ("2024-01-08", "2024-01-11"))
    rows, scored = fc.with_history(valid, test, time_column="ts", group_column="site", rows=5)
    assert rows.num_rows == test.num_rows + 2 * 5 and int(scored.sum()) == test.num_rows
    for site in SITES:
        mine = pc.equal(rows["site"], site).to_numpy(zero_copy_only=False)
        ts = rows["ts"].to_numpy()[mine]
        assert np.all(np.diff(ts.astype("int64")) > 0)  # sorted by time within the series
        # the first five are the valid split's last five, then every test row
        np.testing.assert_array_equal(scored[mine], [False] * 5 + [True] * (mine.sum() - 5))
        np.testing.assert_allclose(rows["load_mw"].to_numpy()[mine][:5], _site(valid, site)[-5:])
    # No history: the table alone, all scored.
    alone, all_scored = fc.with_history(None, test, time_column="ts", group_column="site", rows=5)
    assert alone.num_rows == test.num_rows and all_scored.all()


def test_naive_baselines_take_their_source_rows_from_the_history() -> None:
    st = fc.series_table(
        demand_series(days=3),
        label="load_mw",
        time_column="ts",
        group_column="site",
        covariates=[],
        calendar=False,
    )
    origins = np.array([24, 30, 72 + 24])  # the third is in the second series
    naive = fc.naive_forecasts(st, origins, 3, 24)
    np.testing.assert_allclose(naive["persistence"][:, 0], st.target[origins - 1])
    np.testing.assert_allclose(naive["seasonal"], st.target[origins[:, None] - 24 + np.arange(3)])
    assert naive["seasonal_mask"].all()
    # One row short of a season: masked, never read from the other series.
    assert not fc.naive_forecasts(st, np.array([72 + 23]), 3, 24)["seasonal_mask"][0]


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("honest")
    parts = time_splits(demand_series(days=35), ("2024-01-29", "2024-02-01"))
    return {
        s: write_split(root / s, t) for s, t in zip(("train", "valid", "test"), parts, strict=True)
    }


def _train(splits: dict[str, Path], out: Path, window: int) -> Path:
    from voltpipe.modelling.train import train_model

    train_model(
        splits["train"],
        splits["valid"],
        out,
        label="load_mw",
        task="forecasting",
        model_params={"family": "mlp", "hidden_units": [8]},
        training_params={"epochs": 1, "batch_size": 128, "steps_per_execution": 1},
        task_params={
            "time_column": "ts",
            "forecasting": {
                "window": window,
                "horizon": HORIZON,
                "group_column": "site",
                "season": 24,
            },
        },
    )
    return out


@pytest.mark.slow
def test_every_test_row_is_scored_whatever_the_window(
    splits: dict[str, Path], tmp_path: Path
) -> None:
    from voltpipe.data.io import read_table

    short = _train(splits, tmp_path / "short", window=12)
    long = _train(splits, tmp_path / "long", window=60)  # the valid split has 72 rows a site
    test, valid = read_table(splits["test"]), read_table(splits["valid"])
    n_test = test.num_rows // 2  # per site
    a = score_model(short, splits["test"], valid_path=splits["valid"])
    b = score_model(long, splits["test"], valid_path=splits["valid"])
    windows = 2 * (n_test - HORIZON + 1)  # every origin whose targets are all test rows
    for score in (a, b):
        assert score.details["windows"] == windows, score.details
        assert score.details["targets"] == windows * HORIZON
        assert score.details["history"] == "valid"
        assert score.details["seasonal_windows"] == windows  # no window dropped by the baseline
        assert score.details["short_history_series"] == 0
    # The baselines are the same numbers for both: same targets, same source rows.
    for key in ("mae_persistence", "mae_seasonal"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-9)
    # ... and equal to a direct computation over the test rows, the first origin's persistence
    # being the last valid value and its seasonal source the valid split's last day.
    persistence, seasonal = [], []
    for site in SITES:
        y = np.r_[_site(valid, site), _site(test, site)]
        first = len(y) - n_test
        for o in range(first, len(y) - HORIZON + 1):
            truth = y[o : o + HORIZON]
            persistence.append(np.abs(truth - y[o - 1]))
            seasonal.append(np.abs(truth - y[o - 24 : o - 24 + HORIZON]))
    assert a.metrics["mae_persistence"] == pytest.approx(np.mean(persistence), rel=1e-6)
    assert a.metrics["mae_seasonal"] == pytest.approx(np.mean(seasonal), rel=1e-6)

    # Without the valid split the first `context` (window, or more with seasonal lags) test
    # rows of each series are history only: the number of targets depends on the model, which
    # is what the valid tail fixes.
    from voltpipe.modelling.predict import load_model

    context = fc.context_length(load_model(short).meta["forecasting"])
    assert context >= 12
    alone = score_model(short, splits["test"])
    assert alone.details["history"] == "test"
    assert alone.details["windows"] == 2 * (n_test - context - HORIZON + 1)

    # The gate compares challenger and champion on those same targets.
    result = evaluate_challenger(
        long,
        splits["test"],
        champion_dir=short,
        champion_version="1",
        metric="mae",
        valid_path=splits["valid"],
    )
    assert result.champion_metrics == pytest.approx(a.metrics)
    assert result.details["windows"] == windows


def test_decision_report_says_what_a_forecaster_was_scored_on() -> None:
    from voltpipe.evaluation.evaluate import EvaluationResult, decision_report_markdown
    from voltpipe.evaluation.gate import decide

    metrics = {"mae": 1.0, "mae_persistence": 2.0}
    result = EvaluationResult(
        metrics,
        None,
        None,
        decide(metrics, None, metric="mae"),
        80,
        task="forecasting",
        details={
            "windows": 70,
            "targets": 420,
            "test_rows": 80,
            "history": "valid",
            "history_rows": 24,
        },
    )
    report = decision_report_markdown(result)
    assert "Scored 70 forecasts (420 targets) over 80 test rows" in report
    assert "the last 24 rows of each series in the valid split" in report


@pytest.mark.slow
def test_a_split_not_cut_on_time_is_reported(
    splits: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voltpipe.data.io import read_table

    model = _train(splits, tmp_path / "m", window=12)
    score = score_model(model, splits["test"], valid_path=splits["valid"])
    assert score.details["interleaved_series"] == 0
    # Valid rows from after the test period (as a random split would give) are flagged.
    late = read_table(splits["test"])
    ts = late["ts"].to_numpy()
    shifted = late.set_column(
        late.schema.get_field_index("ts"), "ts", pa.array(ts + np.timedelta64(30, "D"))
    )
    write_split(tmp_path / "late_valid", shifted)
    score = score_model(model, splits["test"], valid_path=tmp_path / "late_valid")
    assert score.details["interleaved_series"] == 2
    assert "split forecasting data on time (split: {method: time, column: ts})" in (
        capsys.readouterr().out
    )
