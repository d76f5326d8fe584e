"""vCenters: pinned certificates in the catalog, passwords in the secret store; and what is
read from them (inventory, containers, the Snapshot Hunter)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from appliance import api
from appliance.errors import ConflictError, NotFoundError, PinDetail, VmkeepError
from appliance.home import appliance_id
from appliance.service.job_definition import parse_job
from appliance.service.state import State, check_name, vcenter_secret
from appliance.vsphere import session as vsphere_session
from appliance.vsphere.hunter import describe, execute_hunt, plan_hunt
from appliance.vsphere.inventory import list_containers, list_vms, vms_in_container
from appliance.vsphere.privilege_check import check_privileges
from appliance.vsphere.session import VSphereSession
from catalog.models import VCenterRow

log = logging.getLogger("appliance.registry")



def _connect(host: str, port: int, user: str, password: str, *, fingerprint: str | None,
             insecure: bool) -> VSphereSession:
    """Log in; without a pin, the refusal names the request fields (the CLI maps them to its
    flags) and its detail holds the fingerprint to pin."""
    try:
        return vsphere_session.connect(host, port, user, password, fingerprint=fingerprint,
                                       insecure=insecure)
    except vsphere_session.FingerprintRequiredError as exc:
        if not isinstance(exc.detail, PinDetail):
            raise
        raise vsphere_session.FingerprintRequiredError(
            f"{host}:{port} presents certificate fingerprint {exc.detail.fingerprint}: check "
            "it, then set `fingerprint` to pin it (or `insecure` to skip verification)",
            detail=exc.detail) from None

class VCenterService:
    def __init__(self, state: State) -> None:
        self._state = state

    def add(self, name: str, host: str, port: int, user: str, password: str, *,
            fingerprint: str | None, insecure: bool, appliance_vm: str = "") -> VCenterRow:
        """Log in once (which checks the pin, or shows the server's fingerprint when none
        was given), then remember the vCenter and its password."""
        name = check_name("vCenter", name)
        with self._state.catalog() as cat:
            if cat.vcenter(name) is not None:
                raise ConflictError(f"a vCenter named {name!r} exists already; choose another "
                                    "name, or `vmkeep vcenter edit` it")
        with _connect(host, port, user, password, fingerprint=fingerprint,
                      insecure=insecure) as session:
            pinned = session.fingerprint
        row = VCenterRow(name, host, port, user, pinned, insecure, datetime.now(UTC),
                         appliance_vm.strip())
        self._state.secrets.put(vcenter_secret(name), password)
        with self._state.catalog() as cat:
            cat.add_vcenter(row)
        return row

    def all(self) -> list[VCenterRow]:
        with self._state.catalog() as cat:
            return cat.vcenters()

    def get(self, name: str) -> VCenterRow:
        with self._state.catalog() as cat:
            row = cat.vcenter(name)
        if row is None:
            raise NotFoundError(f"no vCenter named {name!r}; `vmkeep vcenter list` shows them")
        return row

    def edit(self, name: str, *, host: str | None = None, port: int | None = None,
             user: str | None = None, password: str | None = None,
             fingerprint: str | None = None, insecure: bool | None = None,
             appliance_vm: str | None = None) -> VCenterRow:
        """Change what is given; log in with the result before keeping it (re-pinning a
        renewed certificate is ``fingerprint=``)."""
        old = self.get(name)
        new_insecure = old.insecure if insecure is None else insecure
        pin = fingerprint if fingerprint is not None else (None if new_insecure
                                                           else old.fingerprint)
        secret = password if password is not None else self.password(name)
        vm = old.appliance_vm if appliance_vm is None else appliance_vm.strip()
        row = VCenterRow(name, host or old.host, port or old.port, user or old.user, pin,
                         new_insecure, old.added, vm)
        with _connect(row.host, row.port, row.user, secret, fingerprint=pin,
                      insecure=new_insecure) as session:
            row = VCenterRow(row.name, row.host, row.port, row.user, session.fingerprint,
                             row.insecure, row.added, vm)
        if password is not None:
            self._state.secrets.put(vcenter_secret(name), password)
        with self._state.catalog() as cat:
            cat.update_vcenter(row)
        return row

    def test(self, name: str) -> int:
        """Log in with what is stored; returns the number of VMs it sees."""
        with self.session(name) as session:
            return len(list_vms(session))

    def check(self, name: str) -> api.VCenterCheck:
        """Which privileges of each purpose (docs/VSPHERE.md) the stored account lacks, as
        vCenter answers for this session on the root folder; nothing is changed."""
        with self.session(name) as session:
            found = check_privileges(session)
        return api.VCenterCheck(
            name=name, user=found.user, entity=found.entity, ok=found.ok,
            purposes=[api.VCenterPurposeCheck(purpose=p.purpose, ok=not p.missing,
                                              required=list(p.required),
                                              missing=list(p.missing))
                      for p in found.purposes])

    def remove(self, name: str) -> None:
        self.get(name)
        with self._state.catalog() as cat:
            cat.remove_vcenter(name)
        self._state.secrets.delete(f"vcenter/{name}/")

    def password(self, name: str) -> str:
        return self._state.secrets.get(vcenter_secret(name))

    def session(self, name: str) -> VSphereSession:
        """A logged-in session with vCenter ``name`` (use it in ``with``)."""
        vc = self.get(name)
        return vsphere_session.connect(vc.host, vc.port, vc.user, self.password(vc.name),
                                       fingerprint=vc.fingerprint, insecure=vc.insecure)

    def _chosen(self, vcenter: str | None) -> list[VCenterRow]:
        return [self.get(vcenter)] if vcenter else self.all()

    # -- the Snapshot Hunter ------------------------------------------------------------------

    def hunt(self, *, vcenter: str | None, dry_run: bool, include_foreign: bool,
             running: Callable[[], Collection[str]] = frozenset,
             busy: Callable[[], Collection[str]] = frozenset
             ) -> list[tuple[str, list[str]]]:
        """Run the Snapshot Hunter on one vCenter or all; (vCenter, lines) for each. The
        snapshots of this appliance's ``running`` sessions are left alone, and the
        relocation of the VMs it is backing up (``busy``)."""
        out = []
        me = appliance_id(self._state.home)
        for vc in self._chosen(vcenter):
            with self.session(vc.name) as session:
                plan = plan_hunt(session, include_foreign=include_foreign, appliance_id=me,
                                 running=running, busy=busy, appliance_vm=vc.appliance_vm)
                lines = describe(plan)
                if not dry_run and not plan.empty:
                    result = execute_hunt(session, plan)
                    lines += [f"{o.status.value}: VM {o.finding.vm_name!r}: {o.detail}"
                              for o in result.outcomes]
            out.append((vc.name, lines))
        return out

    def hunt_findings(self) -> dict[str, list[tuple[str, str]]]:
        """The Snapshot Hunter's findings (VM name, what) on each vCenter, planned only; a
        vCenter that cannot be reached is a finding of its own."""
        out: dict[str, list[tuple[str, str]]] = {}
        for vc in self.all():
            try:
                with self.session(vc.name) as session:
                    out[vc.name] = [(f.vm_name, f.what) for f in plan_hunt(
                        session, appliance_vm=vc.appliance_vm).findings]
            except VmkeepError as exc:
                log.warning("the Snapshot Hunter could not look at vCenter %s: %s", vc.name,
                            exc)
        return out

    # -- inventory ----------------------------------------------------------------------------

    def inventory(self, vcenter: str | None = None) -> list[api.InventoryVm]:
        with self._state.catalog() as cat:
            jobs = [parse_job(j).spec for j in cat.jobs()]
            newest = {p.object_name: p for p in cat.points()}  # oldest first
        out = []
        for vc in self._chosen(vcenter):
            with self.session(vc.name) as session:
                held: dict[str, set[str]] = {}  # container path → instance UUIDs now in it
                for path in {c for j in jobs if j.vcenter == vc.name for c in j.containers}:
                    try:
                        held[path] = {v.instance_uuid for v in vms_in_container(session, path)}
                    except NotFoundError:
                        held[path] = set()
                for vm in list_vms(session):
                    out.append(api.InventoryVm(
                        vcenter=vc.name, datacenter=vm.datacenter, host=vm.host,
                        name=vm.name, instance_uuid=vm.instance_uuid,
                        power_state=api.as_power_state(vm.power_state),
                        cbt_enabled=vm.cbt_enabled,
                        snapshots=[s.name for s in vm.snapshots],
                        consolidation_needed=vm.consolidation_needed,
                        disks=[api.InventoryDisk(index=d.index, capacity_bytes=d.capacity_bytes,
                                                 file_name=d.file_name,
                                                 backing_type=d.backing_type)
                               for d in vm.disks],
                        jobs=[j.name for j in jobs if j.vcenter == vc.name and (
                            any(v.instance_uuid == vm.instance_uuid for v in j.vms)
                            or any(vm.instance_uuid in held[c] for c in j.containers))],
                        last_point=newest[vm.name].point_id if vm.name in newest else None,
                        last_point_time=newest[vm.name].created if vm.name in newest
                        else None))
        return out

    def containers(self, vcenter: str | None = None) -> list[api.InventoryContainer]:
        """Every datacenter, folder, cluster, host and resource pool of one vCenter or all."""
        out = []
        for vc in self._chosen(vcenter):
            with self.session(vc.name) as session:
                out += [api.InventoryContainer(vcenter=vc.name,
                                               kind=api.as_container_kind(c.kind), path=c.path,
                                               vms=list(c.vms))
                        for c in list_containers(session)]
        return out
