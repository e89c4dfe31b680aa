"""Extract: a BigQuery-SQL query -> train/valid/test parquet Datasets (DuckDB or BigQuery)."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def extract(
    warehouse: str,
    query: str,
    query_parameters: dict,
    split: dict,
    train: dsl.Output[dsl.Dataset],
    valid: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
    warehouse_options: dict = {},  # noqa: B006 - KFP parameter defaults must be literals
):
    """Runs `query` (BigQuery SQL, typed @named parameters) and writes three parquet Datasets.

    Args:
        warehouse: ``duckdb:///PATH`` or ``bigquery://PROJECT``.
        query: BigQuery Standard SQL.
        query_parameters: ``{name: {"type": "TIMESTAMP", "value": "..."}}`` or plain values.
        split: ``{"method": "random"|"hash"|"time", "column", "fractions", "seed"}``.
        warehouse_options: the config's ``bigquery:`` section.
    """
    from voltpipe.data.extract import extract_splits
    from voltpipe.data.params import normalize_parameters
    from voltpipe.errors import exit_on_user_error

    outputs = {"train": train, "valid": valid, "test": test}
    with exit_on_user_error():
        result = extract_splits(
            warehouse,
            query,
            normalize_parameters(query_parameters),
            split,
            {name: art.path for name, art in outputs.items()},
            warehouse_options,
        )
    for name, art in outputs.items():
        art.metadata.update(result.metadata(name))
    print(f"voltpipe: extracted {result.row_counts} rows from {result.source}")
