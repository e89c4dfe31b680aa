"""Extract window: a BigQuery-SQL query -> one parquet Dataset (e.g. recent serving data)."""

from kfp import dsl

from voltpipe.config import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def extract_window(
    warehouse: str,
    query: str,
    query_parameters: dict,
    window: dsl.Output[dsl.Dataset],
    warehouse_options: dict = {},  # noqa: B006 - KFP parameter defaults must be literals
):
    """Runs `query` (typed @named parameters) and writes all its rows as one parquet Dataset."""
    from voltpipe.data.extract import extract_window as run_extract
    from voltpipe.data.params import normalize_parameters
    from voltpipe.errors import exit_on_user_error

    with exit_on_user_error():
        result = run_extract(
            warehouse, query, normalize_parameters(query_parameters), window.path, warehouse_options
        )
    window.metadata.update(result.metadata("train") | {"split": "window"})
    print(f"voltpipe: extracted {result.row_counts['train']} rows from {result.source}")
