"""The query BigQuery runs is the text the user wrote (comments, line breaks, spacing), from the
config through the compiled pipeline's default to the jobs.insert request on the wire."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import write_config
from voltpipe.config import load_config
from voltpipe.data.extract import extract_window
from voltpipe.data.sql import one_line
from voltpipe.runners.templates import compile_template
from voltpipe.testing.bigquery_server import BigQueryTestServer

USER_SQL = """\
-- the turbines' ten-minute rows before the cutoff
SELECT ts, turbine_id,   wind_speed_ms, power_kw
FROM `p.scada.turbine`  -- SCADA, as landed
WHERE ts < @cutoff
"""


@pytest.fixture(scope="module")
def server(wind_warehouse: Path):
    with BigQueryTestServer(wind_warehouse, project="p", location="EU") as srv:
        yield srv


@pytest.mark.integration
def test_bigquery_receives_the_users_sql_verbatim(server, tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text(USER_SQL)
    path = write_config(
        tmp_path,
        f"""
        name: verbatim
        warehouse: bigquery://p
        query_file: q.sql
        query_parameters: {{cutoff: {{type: TIMESTAMP, value: "2024-11-01"}}}}
        label: power_kw
        task: regression
        bigquery: {{location: EU, api_endpoint: "{server.endpoint}", read_api_endpoint: "{server.read_api_endpoint}"}}
        """,
    )
    cfg = load_config(path)
    assert one_line(cfg.sql) != cfg.sql  # sqlglot's rendering would have lost the comments
    template = compile_template("training", cfg, tmp_path / "training.yaml")
    params = yaml.safe_load(template.read_text())["root"]["inputDefinitions"]["parameters"]
    query = params["query"]["defaultValue"]  # what Vertex AI hands the extract step
    assert query == USER_SQL

    before = len(server.job_requests())
    result = extract_window(
        cfg.warehouse_uri,
        query,
        params["query_parameters"]["defaultValue"],
        tmp_path / "rows",
        params["warehouse_options"]["defaultValue"],
    )
    assert sum(result.row_counts.values()) > 0
    jobs = server.job_requests()[before:]
    assert jobs and all(USER_SQL.rstrip() in j["configuration"]["query"]["query"] for j in jobs)
    assert result.sql == USER_SQL
