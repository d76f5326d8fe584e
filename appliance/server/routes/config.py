"""Routes of the appliance's configuration: its backup and restore, and the settings (the
configuration backup's schedule, notifications)."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.post(f"{v}/config/backup", response_model=api.ConfigBackupDone, responses=ERRORS)
    def config_backup(body: api.ConfigBackup) -> api.ConfigBackupDone:
        """Seal vCenters, repositories, jobs, settings and secrets with the password into
        the repository (``appliance-config/``)."""
        return api.ConfigBackupDone(path=str(reg.config.backup(body.repository,
                                                                body.password)))

    @app.post(f"{v}/config/restore", response_model=api.ConfigRestored, responses=ERRORS)
    def config_restore(body: api.ConfigRestore) -> api.ConfigRestored:
        """Bring a configuration backup back into this fresh appliance."""
        return reg.config.restore(body.path, body.password)

    @app.get(f"{v}/settings/config-backup", response_model=api.ConfigScheduleView,
             responses=ERRORS)
    def get_config_schedule() -> api.ConfigScheduleView:
        """The configuration backup's schedule and how its last scheduled run went."""
        return reg.config.view()

    @app.put(f"{v}/settings/config-backup", response_model=api.ConfigScheduleView,
             responses=ERRORS)
    def put_config_schedule(body: api.ConfigSchedule) -> api.ConfigScheduleView:
        """Back the configuration up on a schedule (``schedule.kind`` none: never)."""
        return reg.config.set_schedule(body)

    @app.get(f"{v}/settings/notifications", response_model=api.Notifications,
             responses=ERRORS)
    def get_notifications() -> api.Notifications:
        return reg.config.notifications()

    @app.put(f"{v}/settings/notifications", response_model=api.Notifications,
             responses=ERRORS)
    def put_notifications(body: api.Notifications) -> api.Notifications:
        """E-mail (SMTP) and webhook for sessions that end with the results in ``on``."""
        return reg.config.set_notifications(body)
