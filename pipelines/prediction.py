"""The prediction pipeline: one batch_predict step reading the scoring query directly.

Reading the query inside the step (DuckDB: streamed Arrow batches) is faster than an
extract_window step followed by batch_predict: the rows are neither written to parquet nor read
back, and no copy of the scored data is kept per run.

No `from __future__ import annotations` here: KFP reads the pipeline signature's real types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl

from voltpipe.components import with_image
from voltpipe.components.batch_predict import batch_predict
from voltpipe.config import VoltpipeConfig
from voltpipe.data.params import normalize_parameters
from voltpipe.data.sql import checked
from voltpipe.pipelines import sized


def prediction_pipeline(cfg: VoltpipeConfig) -> Callable[..., Any]:
    """Builds the batch prediction pipeline for `cfg` (the ``prediction:`` section)."""
    predict_op = with_image(batch_predict, cfg.image)
    p = cfg.prediction
    _check_not_overwriting_the_source(cfg)
    vertex_params = {**p.vertex.model_dump(), "labels": cfg.vertex.labels}

    class Outputs(NamedTuple):
        predictions: dsl.Artifact

    @dsl.pipeline(
        name=f"{cfg.name}-prediction",
        description=f"Score rows with the {cfg.name} model into {p.destination_table}.",
    )
    def pipeline(
        warehouse: str = cfg.warehouse_uri,
        query: str = checked(cfg.prediction_sql),
        query_parameters: dict = normalize_parameters(p.query_parameters),
        registry_uri: str = cfg.registry_uri,
        model_name: str = cfg.name,
        model: str = p.model,
        destination_table: str = p.destination_table,
        write_mode: str = p.write_mode,
        batch_size: int = p.batch_size,
        warehouse_options: dict = cfg.bigquery.model_dump(exclude_none=True),
        backend: str = p.backend,
        vertex_params: dict = vertex_params,
    ) -> Outputs:
        # Never cached: the champion and the source rows change under the same inputs, and the
        # write is the point of the step.
        scored = (
            predict_op(
                warehouse=warehouse,
                query=query,
                query_parameters=query_parameters,
                registry_uri=registry_uri,
                model_name=model_name,
                model=model,
                destination_table=destination_table,
                write_mode=write_mode,
                batch_size=batch_size,
                warehouse_options=warehouse_options,
                backend=backend,
                vertex_params=vertex_params,
            )
            .set_display_name("batch-predict")
            .set_caching_options(False)
        )
        sized(scored, cfg, "batch_predict")
        return Outputs(predictions=scored.outputs["predictions"])

    return pipeline


def _check_not_overwriting_the_source(cfg: VoltpipeConfig) -> None:
    """`write_mode: replace` on a table the scoring query reads would delete the rows scored."""
    from voltpipe.data.sql import tables_referenced
    from voltpipe.errors import ConfigError

    p = cfg.prediction
    if p.write_mode != "replace":
        return

    def bare(name: str) -> str:
        return name.strip("`").lower().split(".", 1)[-1] if name.count(".") > 1 else name.lower()

    target = bare(p.destination_table)
    if any(bare(t) == target for t in tables_referenced(cfg.prediction_sql)):
        raise ConfigError(
            f"prediction.destination_table {p.destination_table!r} is also read by "
            "prediction.query: write_mode: replace would delete the rows being scored; write "
            "to another table or use write_mode: append"
        )
