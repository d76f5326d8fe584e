"""The route of the catalog console: one read-only query over the catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def _json_value(x: Any) -> Any:
    """A catalog value as JSON: numbers and strings as they are, the rest as text (bytes as
    hex)."""
    if x is None or isinstance(x, bool | str):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**53 else str(x)
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else str(x)
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x).hex()
    if isinstance(x, list | tuple):
        return [_json_value(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _json_value(v) for k, v in x.items()}
    if isinstance(x, datetime):
        return x.isoformat()
    return str(x)


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.post(f"{v}/catalog/query", response_model=api.QueryAnswer, responses=ERRORS)
    def catalog_query(body: api.QueryRequest) -> api.QueryAnswer:
        """One read-only SELECT over the catalog, checked by DuckDB's parser; 422 with the
        reason when refused."""
        result = reg.queries.run(body.sql, max_rows=body.max_rows, timeout=body.timeout)
        return api.QueryAnswer(columns=list(result.columns),
                               rows=[[_json_value(x) for x in row] for row in result.rows],
                               truncated=result.truncated, seconds=result.seconds)
