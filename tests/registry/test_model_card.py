"""Model cards: generated content, and the card written into each registered version."""

from __future__ import annotations

import json
from pathlib import Path

from voltpipe.registry import open_registry
from voltpipe.registry.model_card import MODEL_CARD_FILE, model_card_markdown
from voltpipe.registry.promote import register_and_promote

META = {
    "task": "regression",
    "label": "power_kw",
    "family": "mlp",
    "classes": None,
    "features": {
        "numeric": {"wind_speed_ms": {"mean": 8.1, "variance": 9.0}},
        "categorical": {"turbine_id": ["WT01", "WT02"]},
        "skipped": {"ts": "timestamp"},
    },
    "training_params": {"epochs": 6},
}
STATS = {
    "train": {
        "rows": 4000,
        "columns": {
            "ts": {"kind": "timestamp", "min": "2024-10-20 00:00:00", "max": "2024-10-31 23:50:00"},
            "wind_speed_ms": {"kind": "numeric", "min": 0.1, "max": 24.5, "mean": 8.1},
            "power_kw": {"kind": "numeric", "min": 0.0, "max": 3000.0, "mean": 900.0, "std": 700.0},
        },
    },
    "valid": {"rows": 500},
    "test": {"rows": 510},
}
EVALUATION = {
    "metrics": {"rmse": 120.5, "mae": 80.25, "r2": 0.93},
    "details": {},
    "slices": {
        "turbine_id": {
            "distinct": 2,
            "slices": [
                {"value": "WT01", "rows": 260, "metrics": {"rmse": 110.0, "mae": 70.0, "r2": 0.94}},
                {"value": "WT02", "rows": 250, "metrics": {"rmse": 130.0, "mae": 90.0, "r2": 0.92}},
            ],
        }
    },
    "decision": {
        "promote": True,
        "metric": "rmse",
        "reason": "no champion yet: the first model becomes champion",
    },
}
LINEAGE = {
    "query": "SELECT * FROM scada.turbine WHERE ts < @cutoff",
    "query_parameters": {"cutoff": {"type": "TIMESTAMP", "value": "2024-11-01T00:00:00"}},
    "data_statistics": STATS,
}


def test_card_content() -> None:
    card = model_card_markdown(
        name="wind-power",
        version="3",
        lineage=LINEAGE,
        model_meta=META,
        evaluation=EVALUATION,
        champion=True,
    )
    assert card.startswith("# Model card: wind-power version 3")
    for text in (
        "- **Task:** regression",
        "`wind_speed_ms`",
        "| `turbine_id` | 2 | WT01, WT02 |",
        "`@cutoff` = '2024-11-01T00:00:00' (TIMESTAMP)",
        "| train | 4,000 |",
        "| test | 510 |",
        "| rmse | 120.5 |",
        "#### Slices by `turbine_id`",
        "| WT02 | 250 | 130 | 90 | 0.92 |",
        "**Promoted** on `rmse`",
        "## Intended use",
        "Trained on data from 2024-10-20 00:00:00 to 2024-10-31 23:50:00 (`ts`)",
        "`wind_speed_ms` [0.1, 24.5]",
        "`turbine_id`: only 2 categories were seen",
        "voltpipe serve --model wind-power@3",
        "Not used: `ts` (timestamp)",
    ):
        assert text in card, text


def test_register_writes_the_card_into_the_version(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "voltpipe_model.json").write_text(json.dumps(META))
    paths = {}
    for name, data in (
        ("evaluation", EVALUATION),
        ("statistics", STATS),
        ("schema", {"columns": {}}),
    ):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    info = register_and_promote(
        model_dir=str(model),
        evaluation_path=str(paths["evaluation"]),
        statistics_path=str(paths["statistics"]),
        schema_path=str(paths["schema"]),
        registry_uri=str(tmp_path / "registry"),
        model_name="wind-power",
        query=LINEAGE["query"],
        query_parameters=LINEAGE["query_parameters"],
        tracking_uri="",
        out_path=str(tmp_path / "registration.json"),
    )
    registry = open_registry(str(tmp_path / "registry"))
    # Registering moves no alias: deploy makes a promoted version champion after its smoke test.
    assert registry.get("wind-power") is None
    assert info["promote"] is True and info["champion"] is False and info["version"] == "1"
    version = registry.get("wind-power", "1")
    card = Path(version.uri, MODEL_CARD_FILE).read_text()
    assert "# Model card: wind-power version 1" in card
    assert "**Status:** promoted by the gate (champion once deploy's smoke test passes)" in card
