"""Routes of the vCenters the appliance knows: add, list, edit, test, check, remove."""

from __future__ import annotations

from fastapi import FastAPI

from appliance import api
from appliance.server.responses import ERRORS
from appliance.server.state import ApplianceState
from catalog.models import VCenterRow


def _vcenter(row: VCenterRow) -> api.VCenter:
    return api.VCenter(name=row.name, host=row.host, port=row.port, user=row.user,
                       fingerprint=row.fingerprint, insecure=row.insecure, added=row.added,
                       appliance_vm=row.appliance_vm)


def add_routes(app: FastAPI, state: ApplianceState) -> None:
    reg = state.registry
    v = api.PREFIX

    @app.get(f"{v}/vcenters", response_model=list[api.VCenter], responses=ERRORS)
    def list_vcenters() -> list[api.VCenter]:
        return [_vcenter(r) for r in reg.vcenters.all()]

    @app.post(f"{v}/vcenters", response_model=api.VCenter, status_code=201,
              responses=ERRORS)
    def add_vcenter(body: api.VCenterAdd) -> api.VCenter:
        """Log in once (checks the pinned fingerprint; without one and without ``insecure``
        the error shows the server's), then keep the vCenter; the password goes to the
        secret store."""
        return _vcenter(reg.vcenters.add(body.name, body.host, body.port, body.user,
                                        body.password, fingerprint=body.fingerprint,
                                        insecure=body.insecure,
                                        appliance_vm=body.appliance_vm))

    @app.get(f"{v}/vcenters/{{name}}", response_model=api.VCenter, responses=ERRORS)
    def get_vcenter(name: str) -> api.VCenter:
        return _vcenter(reg.vcenters.get(name))

    @app.patch(f"{v}/vcenters/{{name}}", response_model=api.VCenter, responses=ERRORS)
    def edit_vcenter(name: str, body: api.VCenterEdit) -> api.VCenter:
        return _vcenter(reg.vcenters.edit(name, host=body.host, port=body.port,
                                         user=body.user, password=body.password,
                                         fingerprint=body.fingerprint,
                                         insecure=body.insecure,
                                         appliance_vm=body.appliance_vm))

    @app.post(f"{v}/vcenters/{{name}}/test", response_model=api.VCenterTest,
              responses=ERRORS)
    def test_vcenter(name: str) -> api.VCenterTest:
        vms = reg.vcenters.test(name)
        return api.VCenterTest(name=name, ok=True, vms=vms,
                               message=f"logged in to {name!r}; it shows {vms} VMs")

    @app.get(f"{v}/vcenters/{{name}}/check", response_model=api.VCenterCheck,
             responses=ERRORS)
    def check_vcenter(name: str) -> api.VCenterCheck:
        """Which privileges the stored account lacks, per purpose (backup, restore, hunter),
        on the inventory's root folder (``AuthorizationManager.HasPrivilegeOnEntities``)."""
        return reg.vcenters.check(name)

    @app.delete(f"{v}/vcenters/{{name}}", response_model=api.Done, responses=ERRORS)
    def remove_vcenter(name: str) -> api.Done:
        reg.vcenters.remove(name)
        return api.Done(message=f"removed vCenter {name!r} and its stored password")
