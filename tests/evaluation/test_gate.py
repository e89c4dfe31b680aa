"""The paired gate: bootstrap and Diebold-Mariano intervals, verdicts, slices, evaluate wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voltpipe.evaluation.gate import (
    PairedOutputs,
    decide,
    diebold_mariano,
    forecast_comparison,
    hac_variance,
    paired_bootstrap,
    slice_comparison,
)


def _regression(n: int, champion_noise: float, challenger_noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 30, n)
    shared = rng.normal(0, 10, n)  # what both models get wrong (hard rows)
    champ = y + shared + rng.normal(0, champion_noise, n)
    chall = y + shared + rng.normal(0, challenger_noise, n)
    return PairedOutputs("regression", y, chall, champ)


def test_bootstrap_of_equal_models_is_not_significant_and_holds() -> None:
    p = _regression(2000, 3.0, 3.0)
    iv = paired_bootstrap(p, "rmse", samples=500)
    assert iv.low < 0 < iv.high
    rmse = lambda out: float(np.sqrt(np.mean((out - p.y_true) ** 2)))  # noqa: E731
    assert iv.improvement == pytest.approx(rmse(p.champion) - rmse(p.challenger))
    d = decide({"rmse": rmse(p.challenger)}, {"rmse": rmse(p.champion)}, metric="rmse", interval=iv)
    assert d.verdict == "hold" and not d.promote
    assert "not significant" in d.reason and "interval" in d.reason


def test_bootstrap_detects_a_real_improvement_and_promotes() -> None:
    p = _regression(2000, 8.0, 2.0)
    iv = paired_bootstrap(p, "mae", samples=500)
    assert iv.low > 0
    d = decide({"mae": 1.0}, {"mae": 2.0}, metric="mae", interval=iv)
    assert d.verdict == "promote" and d.promote
    # min_improvement now applies to the lower bound.
    d = decide({"mae": 1.0}, {"mae": 2.0}, metric="mae", interval=iv, min_improvement=iv.low + 1)
    assert d.verdict == "hold"


def test_bootstrap_rejects_a_significantly_worse_challenger() -> None:
    p = _regression(2000, 2.0, 8.0)
    iv = paired_bootstrap(p, "rmse", samples=300)
    assert iv.high < 0
    d = decide({"rmse": 2.0}, {"rmse": 1.0}, metric="rmse", interval=iv)
    assert d.verdict == "reject" and "significantly worse" in d.reason


def test_bootstrap_is_seeded() -> None:
    p = _regression(500, 3.0, 3.5)
    a = paired_bootstrap(p, "rmse", samples=200)
    b = paired_bootstrap(p, "rmse", samples=200)
    assert (a.low, a.high) == (b.low, b.high)


def test_pairing_narrows_the_interval() -> None:
    """Shared errors cancel: the paired interval is far narrower than the unpaired spread."""
    p = _regression(2000, 1.0, 1.0)
    iv = paired_bootstrap(p, "rmse", samples=300)
    rng = np.random.default_rng(1)
    unpaired = []
    for _ in range(300):
        i, j = rng.integers(0, 2000, 2000), rng.integers(0, 2000, 2000)
        unpaired.append(
            np.sqrt(np.mean((p.champion[i] - p.y_true[i]) ** 2))
            - np.sqrt(np.mean((p.challenger[j] - p.y_true[j]) ** 2))
        )
    assert iv.high - iv.low < 0.25 * (np.quantile(unpaired, 0.975) - np.quantile(unpaired, 0.025))


def _classification(n: int, champ_sharp: float, chall_sharp: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = (y - 0.5) * 2 + rng.normal(0, 1.0, n)

    def proba(sharp: float) -> np.ndarray:
        p1 = 1 / (1 + np.exp(-sharp * (signal + rng.normal(0, 0.3, n))))
        return np.column_stack([1 - p1, p1])

    return PairedOutputs("classification", y, proba(chall_sharp), proba(champ_sharp))


def test_auc_bootstrap_on_resampled_rows_and_log_loss() -> None:
    from voltpipe.evaluation.metrics import binary_auc

    p = _classification(600, 1.0, 1.0)
    iv = paired_bootstrap(p, "auc", samples=200)
    point = binary_auc(p.y_true, p.challenger[:, 1]) - binary_auc(p.y_true, p.champion[:, 1])
    assert iv.improvement == pytest.approx(point)
    assert iv.low < iv.improvement < iv.high
    assert iv.low < 0 < iv.high  # same model family and signal: not significant
    worse = _classification(600, 3.0, 0.2)  # challenger badly under-confident
    ll = paired_bootstrap(worse, "log_loss", samples=200)
    assert ll.high < 0


def test_hac_variance_grows_with_positive_autocorrelation() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(size=5001)
    ma = e[1:] + e[:-1]  # MA(1): long-run variance 4, plain variance 2
    assert hac_variance(ma, 0) == pytest.approx(2.0, rel=0.1)
    assert hac_variance(ma, 1) == pytest.approx(3.0, rel=0.1)  # Bartlett weight 1/2 at lag 1
    assert hac_variance(ma, 10) > hac_variance(ma, 0)


def test_diebold_mariano_size_and_power() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=400), rng.normal(size=400)
    _, low, high, p = diebold_mariano(np.abs(same[0]), np.abs(same[1]), horizon=1)
    assert low < 0 < high and p > 0.05
    champion = np.abs(rng.normal(0, 2.0, 400))
    challenger = np.abs(rng.normal(0, 1.0, 400))
    mean, low, high, p = diebold_mariano(champion, challenger, horizon=3)
    assert low > 0 and p < 1e-6 and low < mean < high


def test_forecast_comparison_rmse_units_and_skill() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 4))
    champ = y + rng.normal(0, 1.0, y.shape)
    chall = y + rng.normal(0, 0.5, y.shape)
    p = PairedOutputs("forecasting", y, chall, champ)
    iv = forecast_comparison(p, "rmse", horizon=4)
    exact = np.sqrt(np.mean((champ - y) ** 2)) - np.sqrt(np.mean((chall - y) ** 2))
    assert iv.improvement == pytest.approx(exact, rel=1e-9)
    assert iv.low > 0 and iv.method == "diebold-mariano"
    mae = forecast_comparison(p, "mae", horizon=4)
    skill = forecast_comparison(p, "skill_persistence", horizon=4, persistence_mae=2.0)
    assert skill.improvement == pytest.approx(mae.improvement / 2.0)
    with pytest.raises(ValueError, match="no per-window loss"):
        forecast_comparison(p, "mae_h1", horizon=4)


def test_slice_regression_rejects_naming_the_slice() -> None:
    p = _regression(3000, 3.0, 1.0)
    chall = p.challenger.copy()
    bad = np.zeros(3000, bool)
    bad[:300] = True
    chall[bad] += 15.0  # turbine T07 gets much worse while the whole set improves
    p = PairedOutputs("regression", p.y_true, chall, p.champion)
    masks = {"turbine_id": [("T07", bad), ("others", ~bad)]}
    rows = slice_comparison(p, "rmse", masks, max_regression=0.1)
    t07 = next(r for r in rows if r["value"] == "T07")
    assert t07["regressed"] and t07["relative_change"] > 0.1 and t07["rows"] == 300
    iv = paired_bootstrap(p, "rmse", samples=200)
    d = decide(
        {"rmse": 1.0},
        {"rmse": 2.0},
        metric="rmse",
        interval=iv,
        slices=rows,
        max_slice_regression=0.1,
    )
    assert d.verdict == "reject" and "turbine_id=T07" in d.reason
    assert "deploy.gate.max_slice_regression" in d.reason


def test_decision_serialises_the_whole_comparison() -> None:
    import json

    p = _regression(500, 3.0, 3.0)
    iv = paired_bootstrap(p, "rmse", samples=100)
    d = decide(
        {"rmse": 1.0},
        {"rmse": 1.0},
        metric="rmse",
        interval=iv,
        test_data_hash="sha256:abc",
        champion_version="3",
        challenger_model="/m",
    )
    out = json.loads(json.dumps(d.to_dict()))
    assert out["verdict"] == "hold" and out["champion_version"] == "3"
    assert out["interval"] == [iv.low, iv.high] and out["samples"] == 100 and out["rows"] == 500
    assert {"promote", "metric", "challenger", "champion", "min_improvement", "reason"} <= set(out)


def test_aggregate_fallback_and_first_model() -> None:
    assert decide({"rmse": 5.0}, None, metric="rmse").verdict == "promote"
    d = decide({"rmse": 4.0}, {"rmse": 5.0}, metric="rmse")
    assert d.promote and d.method == "aggregate"


# ----- with trained models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_regressors(tmp_path_factory: pytest.TempPathFactory):
    """A weak (1 epoch) and a stronger (25 epochs) model of oil temperature, one test split."""
    import pyarrow.parquet as pq

    from tests.conftest import make_equipment_table
    from voltpipe.modelling.train import train_model

    root = tmp_path_factory.mktemp("reg")
    for split, n, seed in (("train", 2000, 1), ("valid", 300, 2), ("test", 600, 3)):
        (root / split).mkdir()
        table = make_equipment_table(n, seed).drop_columns(["asset_id", "outcome"])
        pq.write_table(table, root / split / "part-0.parquet")
    for name, epochs in (("weak", 1), ("strong", 25)):
        train_model(
            root / "train",
            root / "valid",
            root / name,
            label="oil_temp_c",
            task="regression",
            model_params={"family": "mlp"},  # the epochs are what differ (auto would pick alike)
            training_params={"epochs": epochs, "batch_size": 64, "learning_rate": 0.01},
        )
    return root


@pytest.mark.slow
def test_evaluate_pairs_champion_and_challenger_on_the_same_rows(two_regressors, tmp_path) -> None:
    import json

    from kfp import dsl

    from voltpipe.components.evaluate import evaluate
    from voltpipe.evaluation.evaluate import evaluate_challenger
    from voltpipe.registry.model_card import model_card_markdown

    root = two_regressors
    kw = {"metric": "rmse", "slice_columns": ["region"], "gate": {"slices": True}}
    better = evaluate_challenger(
        root / "strong", root / "test", champion_dir=root / "weak", champion_version="1", **kw
    )
    d = better.decision
    assert d.verdict == "promote" and d.interval[0] > 0 and d.rows == 600
    assert d.champion_version == "1" and d.test_data_hash.startswith("sha256:")
    assert {s["value"] for s in d.slices} == {"north", "south", "east", "west"}
    worse = evaluate_challenger(
        root / "weak", root / "test", champion_dir=root / "strong", champion_version="2", **kw
    )
    assert worse.decision.verdict == "reject" and worse.decision.test_data_hash == d.test_data_hash
    same = evaluate_challenger(
        root / "weak", root / "test", champion_dir=root / "weak", champion_version="1", **kw
    )
    assert same.decision.verdict == "hold" and same.decision.interval == [0.0, 0.0]
    card = model_card_markdown(
        name="oil",
        version="2",
        lineage={},
        model_meta={},
        evaluation=better.to_dict(),
        champion=True,
    )
    assert "**Promoted**" in card and "95% interval" in card and "region=north" in card

    def art(cls: type, name: str) -> dsl.Artifact:
        return cls(name=name, uri=str(tmp_path / name), metadata={})

    outputs = {
        "metrics": art(dsl.Metrics, "metrics"),
        "evaluation": art(dsl.Artifact, "evaluation"),
        "decision_report": art(dsl.Markdown, "decision_report"),
        "classification_metrics": art(dsl.ClassificationMetrics, "classification_metrics"),
        "plots": art(dsl.HTML, "plots"),
    }
    result = evaluate.python_func(
        model=dsl.Model(name="model", uri=str(root / "weak"), metadata={}),
        test_data=dsl.Dataset(name="test", uri=str(root / "test"), metadata={}),
        registry_uri="",
        model_name="oil",
        gate_metric="rmse",
        gate={"confidence": 0.9},
        **outputs,
    )
    assert result.promote is True  # no registry: the first model
    stored = json.loads(Path(outputs["evaluation"].path).read_text())["decision"]
    assert stored["verdict"] == "promote" and stored["confidence"] == 0.9
    assert outputs["evaluation"].metadata["verdict"] == "promote"


def test_comparison_is_logged_to_mlflow_without_files_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import mlflow

    from voltpipe.tracking import log_comparison

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    p = _regression(300, 3.0, 3.0)
    d = decide(
        {"rmse": 1.0},
        {"rmse": 1.1},
        metric="rmse",
        interval=paired_bootstrap(p, "rmse", samples=100),
        champion_version="4",
    )
    run_id = log_comparison(uri, "wind", d.to_dict())
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.data.metrics["gate.interval_low"] == pytest.approx(d.interval[0])
    assert run.data.tags["voltpipe.gate.verdict"] == "hold"
    assert run.data.tags["voltpipe.champion_version"] == "4"
    assert json.loads(run.data.tags["voltpipe.gate.decision"])["verdict"] == "hold"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    assert log_comparison("", "wind", d.to_dict()) is None
