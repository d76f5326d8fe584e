"""The HTTP status of each error family, and the error answers every route declares."""

from __future__ import annotations

from typing import Any

from appliance import api
from appliance.errors import (
    ApplianceError,
    BadInputError,
    ConflictError,
    LockedError,
    NotFoundError,
    SshError,
    TooLargeError,
    UsageError,
    VmkeepError,
    VSphereError,
)

_STATUS: tuple[tuple[type[VmkeepError], int], ...] = (
    (TooLargeError, 413),
    (NotFoundError, 404),
    (UsageError, 400),
    (BadInputError, 422),
    (LockedError, 409),
    (ConflictError, 409),
    (ApplianceError, 503),
    (VSphereError, 424),  # the vCenter refused or could not be reached: not our fault
    (SshError, 424),  # so did an SSH host
)


def http_status(exc: VmkeepError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": api.ErrorBody} for status in (400, 404, 409, 413, 422, 424, 500, 503)}
