"""An encrypted repository through the appliance: made encrypted by `repo add
--encryption-password-file`, a job backs up into it and a disk restores byte-identical
after a restart; the password is only in the secret store; the files are unreadable
without it."""

from __future__ import annotations

import json

from tests.appliance.lab import VM, Lab
from tests.helpers import run_cli

PASSWORD = "an encryption password 4711"


def test_a_job_into_an_encrypted_repository(lab: Lab) -> None:
    secret = lab.tmp / "password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    folder = lab.tmp / "sealed"
    r = lab.vmkeep("repo", "add", "sealed", "--path", str(folder),
                   "--encryption-password-file", str(secret))
    assert r.code == 0 and "encrypted" in r.out, r.err
    assert json.loads(lab.vmkeep("repo", "list", "--json").out)[1]["encrypted"] is True
    assert lab.vmkeep("job", "create", "enc", "--vcenter", "vc", "--vm", VM, "--repo",
                      "sealed", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "enc", "--wait").code == 0
    want = lab.content()
    assert lab.vmkeep("appliance", "stop").code == 0
    assert lab.vmkeep("appliance", "start").code == 0
    point = json.loads(lab.vmkeep("points", "list", "--json").out)[0]["id"]
    target = lab.tmp / "disk0.img"
    r = lab.vmkeep("restore", "disk", point, "--disk", "0", "--to", str(target))
    assert r.code == 0, r.err
    assert target.read_bytes() == want
    assert lab.vmkeep("verify", "--repo", "sealed").code == 0
    # Offline, without the password, the repository opens to nothing.
    r = run_cli(["image", "points", "--repo", str(folder)], lab.tmp / "cache2")
    assert r.code == 4 and "is encrypted" in r.err
    lab.vmkeep("appliance", "stop")
    for path in lab.home.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
