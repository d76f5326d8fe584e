"""Administrators' SQL: one read-only SELECT over the catalog (``catalog.query``), on a
cursor of its own, capped in rows and seconds, interrupted when the appliance stops."""

from __future__ import annotations

import logging

from appliance.errors import ApplianceError, BadInputError, UsageError
from appliance.faults import hold_point
from appliance.service.state import State
from catalog.query import QueryRefused, QueryResult, QueryStopped, Stopper

log = logging.getLogger("appliance.registry")
MAX_ROWS = 100_000
MAX_SECONDS = 60.0


class QueryService:
    def __init__(self, state: State) -> None:
        self._state = state
        self._queries = Stopper()

    def run(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """One read-only SELECT over the catalog (see ``catalog.query``)."""
        if not 1 <= max_rows <= MAX_ROWS:
            raise UsageError(f"max_rows must be 1 to {MAX_ROWS}, not {max_rows}")
        if not 0 < timeout <= MAX_SECONDS:
            raise UsageError(f"the time limit must be more than 0 and at most {MAX_SECONDS:g} "
                             f"seconds, not {timeout:g}")
        check = self._state.cursor()  # its own cursor: the catalog lock is not held
        try:
            log.info("catalog query (limit %g s, %d rows): %s", timeout, max_rows,
                     " ".join(sql.split())[:500])
            hold_point("catalog-query")
            return check.select(sql, max_rows=max_rows, timeout=timeout,
                                stopper=self._queries)
        except QueryStopped as exc:
            raise ApplianceError(str(exc)) from None
        except QueryRefused as exc:
            raise BadInputError(f"query refused: {exc}") from None
        finally:
            check.close()

    def stop(self) -> None:
        """Interrupt the administrators' queries that run now and refuse new ones (the
        appliance is stopping)."""
        self._queries.stop()
