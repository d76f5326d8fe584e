"""The route of the restore points, with the guest processing of their backups."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.get(f"{v}/points", response_model=list[api.Point], responses=ERRORS)
    def list_points(vm: str | None = None) -> list[api.Point]:
        """Restore points of every repository, oldest first (``vm``: only that VM's), with
        the job whose session made each and the guest processing of their backups."""
        guest = reg.restores.guest_processing()
        jobs = reg.restores.point_jobs()
        return [api.Point(id=p.point_id, vm=p.object_name, created=p.created,
                          kind=cast("api.PointKind", p.kind),  # the manifest's; checked here
                          bytes_read=p.bytes_read, bytes_stored=p.bytes_stored,
                          repository=repo, job=jobs.get(p.point_id), parent=p.parent_id,
                          reason=p.reason,
                          disks=[api.PointDisk(index=d.disk_index, label=d.label, size=d.size,
                                               block_size=d.block_size, change_id=d.change_id)
                                 for d in disks],
                          guest_processing=api.GuestProcessing.model_validate(
                              guest[p.point_id]) if p.point_id in guest else None)
                for repo, p, disks in reg.restores.points(vm)]
