"""A backup process killed while it holds its snapshot: the snapshot stays behind in vSphere,
the repository shows no half point, Snapshot Hunter's dry run lists the leftover first, the
hunter removes it, and the next backup succeeds."""

from __future__ import annotations

import signal
from pathlib import Path

from appliance.jobs.backup import BackupOptions
from appliance.jobs.vm_backup import backup_vm
from appliance.repository.repo import Repository
from appliance.vsphere.hunter import FindingKind, describe, execute_hunt, plan_hunt
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from appliance.vsphere.snapshot import create_snapshot
from catalog.store import Catalog
from tests.helpers import in_ws, session_first, synced
from tests.vcsim import Vcsim
from tests.vsphere.killed import killed_backup
from tests.vsphere.vmenv import VM, Env


def test_killed_backup_leaves_a_snapshot_the_hunter_removes(vcsim: Vcsim, env: Env,
                                                           tmp_path: Path) -> None:
    e = env
    # A snapshot of the user's own, which the hunter must leave alone.
    create_snapshot(e.session, e.vm._moId, "before-upgrade", "the admin's")
    repo_dir = tmp_path / "crashrepo"
    proc = killed_backup(vcsim, repo_dir, VM, kill_at="before_read")
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    names = [s.name for s in find_vm(e.session, VM).snapshots]
    assert names[0] == "before-upgrade" and len(names) == 2 and names[1].startswith("vmkeep-")
    repo = Repository.open_local(repo_dir, create=False)
    assert repo.point_ids() == []  # no half point

    plan = plan_hunt(e.session)
    first = plan.findings[0]
    assert first.kind is FindingKind.LEFTOVER_SNAPSHOT and first.snapshot_name == names[1]
    assert names[1] in describe(plan)[1]
    assert "before-upgrade" not in "\n".join(describe(plan))
    assert execute_hunt(e.session, plan).ok
    assert [s.name for s in find_vm(e.session, VM).snapshots] == ["before-upgrade"]

    # The next run succeeds in the same repository (its leftovers are not a point).
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as s, Catalog.open(None) as cat, \
            repo.lock(exclusive=False, operation="backup"):
        synced(repo, cat)
        r = in_ws(repo, cat, session_first(backup_vm, s), VM, BackupOptions(block_size=256 << 10),
                      enable_cbt_consent=True, log=e.log)
    assert r.point_id and r.status in ("success", "warning"), e.logs
    assert repo.point_ids() == [r.point_id]
