"""A client acts on an error's ``detail``, never on its message: with every ``ErrorBody``
message the appliance sends replaced by random text, pinning a vCenter's certificate or an
SSH repository's host key and confirming a restore over the original VM still work, and
the CLI says which of its flags to use (issue 12)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance import api
from appliance import client as client_module
from appliance.cli.commands import main
from appliance.client import ApplianceClient
from appliance.errors import ConfirmDetail, PinDetail, RemoteError, VmkeepError
from appliance.vsphere.session import fetch_fingerprint, format_fingerprint
from tests.appliance.lab import VM, Lab
from tests.helpers import CliResult
from tests.sshd import Sshd

SCRAMBLED: list[str] = []  # the random texts the client was given instead of messages


@pytest.fixture
def scrambled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every error body the appliance sends reaches the client with a random message."""
    original = client_module._error_of

    def scramble(resp: httpx.Response) -> VmkeepError:
        body = resp.json()
        body["message"] = secrets.token_urlsafe(24)
        SCRAMBLED.append(body["message"])
        return original(httpx.Response(resp.status_code, json=body))

    monkeypatch.setattr(client_module, "_error_of", scramble)
    SCRAMBLED.clear()
    yield


def vmkeep(lab: Lab, monkeypatch: pytest.MonkeyPatch, *args: str) -> CliResult:
    """The CLI's ``main()`` in this process (so the scrambling reaches it), on ``lab``."""
    for key in ("VMKEEP_HOME", "VMKEEP_CACHE_DIR"):
        monkeypatch.setenv(key, lab.env[key])
    monkeypatch.delenv("VMKEEP_SOCKET", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.mark.usefixtures("scrambled")
def test_pinning_a_vcenter_reads_the_fingerprint_from_the_detail(
        lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sim = lab.sim
    seen = format_fingerprint(fetch_fingerprint(sim.host, sim.port))
    password = tmp_path / "pw"
    password.write_text(sim.password)
    os.chmod(password, 0o600)
    add = ["vcenter", "add", "vc2", "--host", sim.host, "--port", str(sim.port),
           "--user", sim.user, "--password-file", str(password)]
    r = vmkeep(lab, monkeypatch, *add)
    assert r.code == 12, r.err
    assert f"pass --fingerprint {seen}" in r.err and "--insecure" in r.err
    assert SCRAMBLED and not any(text in r.err for text in SCRAMBLED)
    # What the API says: the fingerprint and the field that pins it.
    with ApplianceClient(lab.home / "appliance.sock") as client, \
            pytest.raises(RemoteError) as refused:
        client.add_vcenter(api.VCenterAdd(name="vc2", host=sim.host, port=sim.port,
                                          user=sim.user, password=sim.password))
    assert refused.value.detail == PinDetail(seen, "vcenter", "fingerprint")
    assert refused.value.code == "vsphere_fingerprint_required"

    r = vmkeep(lab, monkeypatch, *add, "--fingerprint", seen)
    assert r.code == 0, r.err
    vcs = {v["name"]: v for v in json.loads(vmkeep(lab, monkeypatch, "vcenter", "list",
                                                   "--json").out)}
    assert vcs["vc2"]["fingerprint"] == fetch_fingerprint(sim.host, sim.port)


@pytest.mark.usefixtures("scrambled")
def test_pinning_an_ssh_host_key_reads_it_from_the_detail(
        lab: Lab, sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    url = sshd.url(f"appliance-{lab.tmp.name}")
    key = ["--ssh-key", str(sshd.key_file)]
    r = vmkeep(lab, monkeypatch, "repo", "add", "offsite", "--path", url, *key)
    assert r.code == 14, r.err
    assert f"--host-key-fingerprint {sshd.fingerprint}" in r.err
    assert SCRAMBLED and not any(text in r.err for text in SCRAMBLED)
    with ApplianceClient(lab.home / "appliance.sock") as client, \
            pytest.raises(RemoteError) as refused:
        client.add_repository("offsite", url, ssh_key=sshd.key_file.read_text())
    assert refused.value.detail == PinDetail(sshd.fingerprint, "ssh_host",
                                             "host_key_fingerprint")
    r = vmkeep(lab, monkeypatch, "repo", "add", "offsite", "--path", url, *key,
               "--host-key-fingerprint", sshd.fingerprint)
    assert r.code == 0, r.err


@pytest.mark.usefixtures("scrambled")
def test_restoring_over_the_original_shows_the_plan_from_the_detail(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    want = lab.content()
    point = json.loads(lab.vmkeep("points", "list", "--json").out)[0]["id"]

    with ApplianceClient(lab.home / "appliance.sock") as client, \
            pytest.raises(RemoteError) as refused:
        client.restore_vm(api.VmRestore(point=point))
    plan = refused.value.detail
    assert isinstance(plan, ConfirmDetail) and plan.field == "confirm"
    assert f"restore point {point} over VM {VM!r}" in plan.plan[0]
    assert "THIS OVERWRITES its disks" in plan.plan[0]
    assert any(line.strip().startswith("disk 0: overwrite") for line in plan.plan)

    r = vmkeep(lab, monkeypatch, "restore", "vm", point, "--original")
    assert r.code == 2
    assert "THIS OVERWRITES its disks" in r.err and "disk 0: overwrite" in r.err
    assert r.err.rstrip().endswith("confirm it (--yes)")
    assert SCRAMBLED and not any(text in r.err for text in SCRAMBLED)

    lab.write(0, b"damage" * 100)
    r = vmkeep(lab, monkeypatch, "restore", "vm", point, "--original", "--yes")
    assert r.code == 0, r.err
    assert lab.content() == want
