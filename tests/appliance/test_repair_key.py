"""A damaged block-id key file is put back from the appliance's sealed copy (issue 10, failure
9): the failed backup names `vmkeep repo repair-key NAME`, which writes the copy back (never
over an intact key that differs); the configuration backup carries the copy."""

from __future__ import annotations

import json
from pathlib import Path

from appliance import config_backup
from appliance.repository import objfile
from tests.appliance.lab import VM, Lab

PASSWORD = "config backup password 4711"


def test_a_damaged_key_is_put_back_by_repo_repair_key(lab: Lab) -> None:
    repo = lab.tmp / "repo"
    key = next(p for p in (repo / "keys").iterdir())
    good = key.read_bytes()
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--retries", "0").code == 0
    first = lab.vmkeep("job", "run", "nightly", "--wait")
    assert first.code == 0, first.err

    # The configuration backup carries the copy of the key file.
    r = lab.vmkeep("config", "backup", "--repo", "main", "--password-stdin", stdin=PASSWORD)
    assert r.code == 0, r.err
    doc = config_backup.unseal(Path(r.out.strip()).read_bytes(), PASSWORD, "backup")
    assert "repository/main/block-id-key" in doc["secrets"]

    damaged = bytearray(good)
    damaged[30] ^= 0x01
    key.write_bytes(bytes(damaged))
    lab.write(100 << 10, b"changed while the key was damaged")
    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 2, (r.out, r.err)
    shown = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)
    text = "\n".join(line["message"] for line in shown["log"])
    assert "vmkeep repo repair-key main" in text, text
    assert f"keys/{key.name}" in text, text

    r = lab.vmkeep("repo", "repair-key", "main")
    assert r.code == 0, r.err
    assert key.name in r.out
    assert key.read_bytes() == good
    assert list((repo / "tmp").iterdir()) == []
    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 0, r.err
    # An intact key is left alone (nothing to do) ...
    r = lab.vmkeep("repo", "repair-key", "main")
    assert r.code == 0 and "intact" in r.out, (r.out, r.err)
    # ... and an intact key that differs from the copy is never overwritten.
    key_doc = objfile.decode_json(objfile.MAGIC_KEY, good, "key")
    other = objfile.encode_json(objfile.MAGIC_KEY, {**key_doc, "key": "ab" * 32})
    key.write_bytes(other)
    r = lab.vmkeep("repo", "repair-key", "main")
    assert r.code == 2, (r.out, r.err)
    assert "intact" in r.err and "differs" in r.err, r.err
    assert key.read_bytes() == other


def test_a_key_damaged_before_the_appliance_knew_it_is_named(lab: Lab) -> None:
    folder = lab.tmp / "second"
    assert lab.vmkeep("repo", "add", "second", "--path", str(folder)).code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    # A home without the copy (an appliance of before this change), then the key is lost.
    from appliance.secret_store import SecretStore

    SecretStore(lab.home).delete("repository/second/block-id-key")
    next((folder / "keys").iterdir()).unlink()
    assert lab.vmkeep("appliance", "start").code == 0
    r = lab.vmkeep("repo", "repair-key", "second")
    assert r.code == 3, (r.out, r.err)
    assert "no copy" in r.err, r.err
