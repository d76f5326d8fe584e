"""Which of the privileges vmkeep needs (``privileges.PRIVILEGES``) the logged-in account lacks.

One call: ``AuthorizationManager.HasPrivilegeOnEntities`` for this session's key on the
inventory's root folder, where a backup product's role is granted and propagated (some
privileges, ``Global.*`` and ``Provisioning.GetVmFiles``, are only effective there). vCenter
Server implements it; a standalone ESXi host does not, and the check then fails naming that.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyVmomi import vmodl

from appliance.errors import VSphereError
from appliance.vsphere._vim import fault_text
from appliance.vsphere.privileges import PURPOSES, Purpose, all_ids, required
from appliance.vsphere.session import VSphereSession


class PrivilegeCheckError(VSphereError):
    """vSphere could not say which privileges the account holds."""

    code = "vsphere_privileges"


@dataclass(frozen=True, slots=True)
class PurposeCheck:
    """One purpose: the privileges it needs, and those of them the account lacks."""

    purpose: Purpose
    required: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrivilegeCheck:
    user: str  # the account, as vCenter names it (DOMAIN\\user or user@domain)
    entity: str  # where the privileges were checked: the root folder's moref id
    purposes: tuple[PurposeCheck, ...]

    @property
    def ok(self) -> bool:
        return not any(p.missing for p in self.purposes)


def check_privileges(session: VSphereSession) -> PrivilegeCheck:
    """The privileges of each purpose the session's account lacks on the root folder."""
    ids = list(all_ids())

    def run() -> tuple[str, str, dict[str, bool]]:
        content = session.content
        current = content.sessionManager.currentSession
        root = content.rootFolder
        answers = content.authorizationManager.HasPrivilegeOnEntities(
            entity=[root], sessionId=current.key, privId=ids)
        granted = {str(p.privId): bool(p.isGranted)
                   for a in answers or [] for p in a.privAvailability or []}
        return str(current.userName), str(root._moId), granted

    try:
        user, entity, granted = session.call(run)
    except vmodl.MethodFault as exc:
        raise PrivilegeCheckError(
            f"vSphere at {session.host}:{session.port} did not say which privileges the "
            f"account holds ({fault_text(exc)}): AuthorizationManager.HasPrivilegeOnEntities "
            "is answered by vCenter Server only, not by a standalone ESXi host") from exc
    return PrivilegeCheck(user, entity, tuple(
        PurposeCheck(purpose, required(purpose),
                     tuple(p for p in required(purpose) if not granted.get(p, False)))
        for purpose in PURPOSES))
