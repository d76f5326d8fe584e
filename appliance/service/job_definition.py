"""A stored job as one value: ``JobDefinition``, its definition (``api.JobSpec``) parsed from the
catalog's JSON once, in ``parse_job`` only, and written back in ``row_of`` only. The services
read jobs through ``JobService`` (``appliance.service.jobs``); those that read them inside an
open catalog transaction call ``parse_job`` on the rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from appliance import api
from catalog.models import JobRow


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A stored job: its definition (parsed once) and the state the catalog keeps with it."""
    name: str
    spec: api.JobSpec
    enabled: bool
    created: datetime


def parse_job(row: JobRow) -> JobDefinition:
    """The catalog's row of a job as its definition: the one place its JSON is parsed."""
    return JobDefinition(row.name, api.JobSpec.model_validate_json(row.spec_json),
                         row.enabled, row.created)


def row_of(job: JobDefinition) -> JobRow:
    """The catalog's row of ``job``: the one place its definition is written as JSON."""
    return JobRow(job.name, job.spec.model_dump_json(), job.enabled, job.created)
