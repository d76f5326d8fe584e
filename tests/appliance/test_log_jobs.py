"""Log backup jobs through the appliance, a real sshd as the guest: collected files become a
point of "<VM>:logs" and leave the guest; a wrong guest password or a host key that is not the
pinned one fails the session with the reason and leaves every file in the guest."""

from __future__ import annotations

import json
import os
import time

from tests.appliance.lab import VM, Lab
from tests.sshd import Sshd


def test_a_log_backup_job_collects_and_fails_safely(lab: Lab, sshd: Sshd) -> None:
    archive = sshd.owned_folder(f"wal-{lab.tmp.name}")
    past = time.time() - 60
    for n in range(2):
        path = archive / f"00000001000000000000000{n}"
        path.write_bytes(os.urandom(256 << 10))
        os.chown(path, *sshd.ids())
        os.utime(path, (past, past))
    wrong = lab.tmp / "wrong"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    common = ["--logs-of", VM, "--guest-host", f"127.0.0.1:{sshd.port}", "--guest-user",
              sshd.user, "--guest-host-key-fingerprint", sshd.fingerprint, "--log-folder",
              str(archive), "--log-settle", "1s", "--repo", "main"]
    r = lab.vmkeep("job", "create", "bad", "--guest-password-file", str(wrong), *common)
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "bad", "--wait")
    assert r.code == 2, r
    log = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"]
    assert any("refused the login" in x["message"] for x in log), log
    assert len(list(archive.iterdir())) == 2  # nothing lost

    # A guest whose host key is not the pinned one: refused, both keys named, nothing lost.
    other = [a if a != sshd.fingerprint else "SHA256:" + "A" * 43 for a in common]
    r = lab.vmkeep("job", "create", "moved", "--guest-key", str(sshd.key_file), *other)
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "moved", "--wait")
    assert r.code == 2, r
    log = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"]
    assert any("not the pinned" in x["message"] and sshd.fingerprint in x["message"]
               for x in log), log
    assert len(list(archive.iterdir())) == 2

    r = lab.vmkeep("job", "create", "wal", "--guest-key", str(sshd.key_file), *common)
    assert r.code == 0, r.err
    job = json.loads(lab.vmkeep("job", "show", "wal", "--json").out)
    assert job["spec"]["schedule"]["every"] == "15m"  # a log job runs every 15 minutes
    r = lab.vmkeep("job", "run", "wal", "--wait")
    assert r.code == 0, r.err
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [p["vm"] for p in points] == [f"{VM}:logs"]
    assert sorted(d["label"] for d in points[0]["disks"]) == [
        "000000010000000000000000", "000000010000000000000001"]
    assert list(archive.iterdir()) == []


def test_a_log_command_runs_in_the_guest_before_collecting(lab: Lab, sshd: Sshd) -> None:
    """The generic log backup (SQL Server's BACKUP LOG, RMAN …): the job's command runs in
    the guest first, its output goes to the session, then what it wrote is collected."""
    folder = sshd.owned_folder(f"logbackup-{lab.tmp.name}")
    command = (f"echo backing up the log; head -c 65536 /dev/urandom > {folder}/db.trn; "
               f"touch -d '1 minute ago' {folder}/db.trn")
    r = lab.vmkeep("job", "create", "trn", "--logs-of", VM, "--guest-host",
                   f"127.0.0.1:{sshd.port}", "--guest-user", sshd.user, "--guest-key",
                   str(sshd.key_file), "--guest-host-key-fingerprint", sshd.fingerprint,
                   "--log-folder", str(folder), "--log-pattern", "*.trn", "--log-command",
                   command, "--log-settle", "1s", "--repo", "main")
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "trn", "--wait")
    assert r.code == 0, r.err
    log = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"]
    assert "backing up the log" in [x["message"] for x in log]
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [d["label"] for d in points[-1]["disks"]] == ["db.trn"]
    assert list(folder.iterdir()) == []
