"""An SSH repository through the appliance, against a real OpenSSH server on 127.0.0.1: added
with its host key pinned (shown when missing), a job's full and incremental land there and a
disk restores byte-identical; a changed host key fails the next run with both fingerprints,
`repo edit` trusts the new key, and the SSH key and password are kept only in the secret
store."""

from __future__ import annotations

import json

from tests.appliance.lab import VM, Lab
from tests.appliance.test_follow import grow_and_fill
from tests.proxy import CuttingProxy
from tests.sshd import Sshd


def test_a_job_into_an_sftp_repository(lab: Lab, sshd: Sshd) -> None:
    url = sshd.url(f"appliance-{lab.tmp.name}")
    key = ["--ssh-key", str(sshd.key_file)]
    r = lab.vmkeep("repo", "add", "offsite", "--path", url, *key)
    assert r.code == 14 and sshd.fingerprint in r.err, r
    r = lab.vmkeep("repo", "add", "offsite", "--path", url, *key,
                   "--host-key-fingerprint", sshd.fingerprint)
    assert r.code == 0, r.err
    repos = {x["name"]: x for x in json.loads(lab.vmkeep("repo", "list", "--json").out)}
    assert repos["offsite"]["kind"] == "sftp" and repos["offsite"]["location"] == url
    assert repos["offsite"]["host_key_fingerprint"] == sshd.fingerprint
    assert repos["offsite"]["free_bytes"] and repos["offsite"]["total_bytes"]

    assert lab.vmkeep("job", "create", "remote", "--vcenter", "vc", "--vm", VM, "--repo",
                      "offsite", "--enable-cbt", "--block-size", "256K").code == 0
    first = lab.vmkeep("job", "run", "remote", "--wait")
    assert first.code == 0, first.err
    want = lab.content()
    lab.write(200 << 10, b"changed on the VM between the runs")
    second = lab.vmkeep("job", "run", "remote", "--wait")
    assert second.code == 0, second.err
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [(p["kind"], p["repository"]) for p in points] == [
        ("full", "offsite"), ("incremental", "offsite")]
    target = lab.tmp / "disk0.img"
    r = lab.vmkeep("restore", "disk", points[0]["id"], "--disk", "0", "--to", str(target))
    assert r.code == 0, r.err
    assert target.read_bytes() == want
    assert lab.vmkeep("verify", "--repo", "offsite").code == 0

    # The host is reinstalled: the next run fails and says which keys.
    old = sshd.fingerprint
    new = sshd.new_host_key()
    r = lab.vmkeep("job", "run", "remote", "--wait")
    assert r.code == 2, r
    log = " ".join(x["message"] for x in json.loads(
        lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"])
    assert new in log and old in log and "not the pinned" in log
    r = lab.vmkeep("repo", "edit", "offsite", "--host-key-fingerprint", new)
    assert r.code == 0, r.err
    assert lab.vmkeep("job", "run", "remote", "--wait").code == 0

    # The key's text lives only in the sealed secret store.
    secret = sshd.key_file.read_text().splitlines()[1].encode()
    for path in lab.home.rglob("*"):
        if path.is_file() and path.name not in ("secrets.enc",):
            assert secret not in path.read_bytes(), path


def test_a_session_reconnects_and_completes_one_point(lab: Lab, sshd: Sshd) -> None:
    """The connection to the SSH repository is cut twice during the job's backup (a proxy in
    between): the session logs the reconnects and ends successful with one point."""
    grow_and_fill(lab)
    proxy = CuttingProxy(sshd.port)
    try:
        url = f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{sshd.base}/flaky-{lab.tmp.name}"
        r = lab.vmkeep("repo", "add", "flaky", "--path", url, "--ssh-key", str(sshd.key_file),
                       "--host-key-fingerprint", sshd.fingerprint, "--reconnect-every",
                       "1s", "--reconnect-for", "2m")
        assert r.code == 0, r.err
        assert lab.vmkeep("job", "create", "flaky", "--vcenter", "vc", "--vm", VM, "--repo",
                          "flaky", "--enable-cbt").code == 0
        start = proxy.upstream_bytes
        proxy.marks = [start + (20 << 20), start + (70 << 20)]
        r = lab.vmkeep("job", "run", "flaky", "--wait")
        assert r.code == 0, r.err
        assert proxy.cuts == 2
        shown = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)
        reconnects = [x for x in shown["log"] if "reconnecting" in x["message"]]
        assert reconnects and all(x["level"] == "warning" for x in reconnects)
        points = json.loads(lab.vmkeep("points", "list", "--json").out)
        assert [(p["repository"], p["kind"]) for p in points] == [("flaky", "full")]
        assert lab.vmkeep("verify", "--repo", "flaky").code == 0
    finally:
        proxy.close()
