"""Log collection from a guest (a real sshd plays it): files are stored as a point of
``<VM>:logs``, restorable byte for byte, removed from the guest only once stored; a file
stored before is not stored twice; a file still being written waits for the next run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from appliance.guest.scripts import Guest
from appliance.jobs.log_backup import collect_logs, logs_object
from appliance.jobs.restore import restore_disk
from appliance.repository.repo import Repository
from appliance.ssh import SshAuth, SshTarget
from catalog.store import Catalog
from tests.helpers import in_ws
from tests.sshd import Sshd


def test_logs_are_collected_stored_and_removed(sshd: Sshd, tmp_path: Path) -> None:
    archive = sshd.owned_folder(f"archive-{tmp_path.name}")
    segments = {f"00000001000000000000000{n}": os.urandom(1 << 20) + bytes(1 << 20)
                for n in range(1, 4)}
    past = time.time() - 120
    for name, data in segments.items():
        (archive / name).write_bytes(data)
        os.chown(archive / name, *sshd.ids())
        os.utime(archive / name, (past, past))
    (archive / "fresh.partial").write_bytes(b"being written")
    repo = Repository.open_local(tmp_path / "repo", create=True)
    cat = Catalog.open(None)
    with Guest(SshTarget(sshd.host, sshd.port, sshd.user), SshAuth(key_file=str(sshd.key_file)),
               sshd.fingerprint) as guest:
        first = in_ws(repo, cat, lambda ws: collect_logs(guest, str(archive), "0000*", ws,
                                                         "db01"))
        assert first.stored == tuple(sorted(segments)) and first.removed == first.stored
        assert sorted(p.name for p in archive.iterdir()) == ["fresh.partial"]
        # A stored file that comes back (its removal failed) is removed, not stored twice.
        name = sorted(segments)[0]
        (archive / name).write_bytes(segments[name])
        os.utime(archive / name, (past, past))
        again = in_ws(repo, cat, lambda ws: collect_logs(guest, str(archive), "*", ws, "db01",
                                                         settle_seconds=60))
        assert again.point_id is None and again.removed == (name,)
        assert again.waiting == ("fresh.partial",)
    points = cat.points(repo.id, logs_object("db01"))
    assert first.point_id is not None and [p.point_id for p in points] == [first.point_id]
    for d in cat.disks(first.point_id):
        out = tmp_path / f"{d.label}.restored"
        in_ws(repo, cat, restore_disk, first.point_id, d.disk_index, out)
        assert out.read_bytes() == segments[d.label]
    cat.close()
