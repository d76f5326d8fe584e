"""Backup copy jobs and backup moves, local → SFTP (a real sshd): the copies verify and
restore in the target; a second copy run finds everything there; after a move the job's next
run is an incremental in the new repository and the source holds no points of it."""

from __future__ import annotations

import json

from tests.appliance.lab import VM, Lab
from tests.sshd import Sshd


def _points(lab: Lab) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(lab.vmkeep("points", "list", "--json").out)
    return listed


def test_copy_then_move_a_job_to_an_sftp_repository(lab: Lab, sshd: Sshd) -> None:
    r = lab.vmkeep("repo", "add", "remote", "--path", sshd.url(f"copies-{lab.tmp.name}"),
                   "--ssh-key", str(sshd.key_file), "--host-key-fingerprint",
                   sshd.fingerprint)
    assert r.code == 0, r.err
    assert lab.vmkeep("job", "create", "j", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                      "--enable-cbt", "--block-size", "256K").code == 0
    assert lab.vmkeep("job", "run", "j", "--wait").code == 0
    want = lab.content()

    r = lab.vmkeep("job", "create", "offsite", "--copy-of", "j", "--repo", "remote",
                   "--keep-last", "5")
    assert r.code == 0 and "copies of job j's points" in r.out, r.err
    bad = lab.vmkeep("job", "create", "loop", "--copy-of", "j", "--repo", "main")
    assert bad.code == 2 and "already" in bad.err
    r = lab.vmkeep("job", "run", "offsite", "--wait")
    assert r.code == 0, r.err
    copies = [p for p in _points(lab) if p["repository"] == "remote"]
    assert len(copies) == 1 and str(copies[0]["reason"]).startswith("copy of point ")
    target = lab.tmp / "copy.img"
    r = lab.vmkeep("restore", "disk", str(copies[0]["id"]), "--disk", "0", "--to",
                   str(target))
    assert r.code == 0, r.err
    assert target.read_bytes() == want
    assert lab.vmkeep("verify", "--repo", "remote").code == 0
    again = lab.vmkeep("job", "run", "offsite", "--wait")
    assert again.code == 0
    log = json.loads(lab.vmkeep("session", "show", again.out.strip(), "--json").out)["log"]
    assert any("in the target already" in x["message"] for x in log)

    # Move the job: its points leave main, and its next run is incremental in remote.
    r = lab.vmkeep("move", "--job", "j", "--to", "remote")
    assert r.code == 0, r.err
    assert "now writes to repository 'remote'" in r.out and "removed 1 point(s)" in r.out
    assert [p["repository"] for p in _points(lab)] == ["remote"]
    lab.write(128 << 10, b"after the move")
    assert lab.vmkeep("job", "run", "j", "--wait").code == 0
    last = _points(lab)[-1]
    assert (last["repository"], last["kind"]) == ("remote", "incremental")
    assert int(str(last["bytes_read"])) <= 256 << 10
