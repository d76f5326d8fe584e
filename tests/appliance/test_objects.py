"""vCenters and repositories through the appliance (`vmkeep vcenter …`, `vmkeep repo …`):
kept across restarts, the passwords (a vCenter's, an SSH repository's) only in the secret
store (and there only sealed), and clear errors for what cannot be done."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep
from tests.helpers import REPO_ROOT, CliResult, make_image
from tests.sshd import Sshd
from tests.vcsim import Vcsim, start_vcsim, with_host_endpoints

SECRET = "vmkeep-unique-secret-7f3a9c"  # vcsim's password for these tests


@dataclass
class Setup:
    home: Path
    env: dict[str, str]
    runs: list[CliResult]

    def vmkeep(self, *args: str, stdin: str = "", cwd: Path = REPO_ROOT) -> CliResult:
        r = run_vmkeep(self.env, *args, stdin=stdin, cwd=cwd)
        self.runs.append(r)
        return r


@pytest.fixture
def vcsim(vcsim_binary: Path) -> Iterator[Vcsim]:
    """A simulator whose password is SECRET."""
    proc, sim = start_vcsim(vcsim_binary, env=with_host_endpoints(), password=SECRET)
    try:
        yield sim
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "home"),
           "VMKEEP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMKEEP_SOCKET", None)
    env.pop("VMKEEP_VSPHERE_PASSWORD", None)
    s = Setup(tmp_path / "home", env, [])
    assert s.vmkeep("appliance", "start").code == 0
    try:
        yield s
    finally:
        s.vmkeep("appliance", "stop")


def one_error(r: CliResult, code: int) -> str:
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmkeep: error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


def test_vcenters_are_pinned_kept_and_their_password_sealed(setup: Setup,
                                                            vcsim: Vcsim) -> None:
    s = setup
    add = ["vcenter", "add", "vc01", "--host", vcsim.host, "--port", str(vcsim.port),
           "--user", vcsim.user, "--password-stdin"]
    # Neither --fingerprint nor --insecure: refused, and the server's fingerprint is shown.
    line = one_error(s.vmkeep(*add, stdin=SECRET), 12)
    fp = s.vmkeep("vsphere", "fingerprint", "--host", vcsim.host, "--port",
                  str(vcsim.port)).out.strip()
    assert fp in line and "--fingerprint" in line
    assert one_error(s.vmkeep(*add, "--fingerprint", "00" * 32, stdin=SECRET), 12)
    wrong = s.vmkeep(*add, "--fingerprint", fp, stdin="not-the-password")
    assert "refused user" in one_error(wrong, 12)
    r = s.vmkeep(*add, "--fingerprint", fp, stdin=SECRET)
    assert r.code == 0, r.err
    assert "vc01" in r.out and fp in r.out
    assert "already" in one_error(s.vmkeep(*add, "--fingerprint", fp, stdin=SECRET), 2)

    r = s.vmkeep("vcenter", "test", "vc01")
    assert r.code == 0 and "shows 4 VMs" in r.out, r.err
    # Restarting keeps it.
    assert s.vmkeep("appliance", "stop").code == 0
    assert s.vmkeep("appliance", "start").code == 0
    listing = json.loads(s.vmkeep("vcenter", "list", "--json").out)
    assert [(v["name"], v["host"], v["port"]) for v in listing] == [
        ("vc01", vcsim.host, vcsim.port)]
    assert listing[0]["fingerprint"] == fp.replace(":", "").lower()
    assert "password" not in json.dumps(listing)
    assert s.vmkeep("vcenter", "test", "vc01").code == 0
    # Re-pinning to a wrong certificate is refused and changes nothing.
    assert one_error(s.vmkeep("vcenter", "edit", "vc01", "--fingerprint", "11" * 32), 12)
    assert s.vmkeep("vcenter", "test", "vc01").code == 0
    assert "no vCenter named 'nope'" in one_error(s.vmkeep("vcenter", "test", "nope"), 3)

    # The same secret as a guest's password (a job's guest processing).
    secret_file = s.home.parent / "guest-password"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    assert s.vmkeep("repo", "add", "r", "--path", str(s.home.parent / "repo")).code == 0
    r = s.vmkeep("job", "create", "g", "--vcenter", "vc01", "--vm", "DC0_H0_VM0", "--repo", "r",
                 "--guest-host", "127.0.0.1:22", "--guest-user", "app", "--guest-password-file",
                 str(secret_file), "--guest-host-key-fingerprint", "SHA256:" + "A" * 43)
    assert r.code == 0, r.err
    assert SECRET not in s.vmkeep("job", "show", "g", "--json").out

    # The secret is nowhere under the home (catalog, its WAL, log: not even in the store,
    # which keeps it sealed) and in no output.
    s.vmkeep("appliance", "stop")
    for path in s.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert (s.home / "secrets.enc").exists()
    assert (s.home / "secrets.enc").stat().st_mode & 0o077 == 0
    for r in s.runs:
        assert SECRET not in r.out + r.err

    assert s.vmkeep("appliance", "start").code == 0
    assert s.vmkeep("job", "delete", "g").code == 0
    assert s.vmkeep("vcenter", "remove", "vc01").code == 0
    assert json.loads(s.vmkeep("vcenter", "list", "--json").out) == []


def test_repositories_are_created_imported_rescanned_and_kept(setup: Setup,
                                                              tmp_path: Path) -> None:
    s = setup
    new = tmp_path / "backups" / "main"
    r = s.vmkeep("repo", "add", "main", "--path", str(new))
    assert r.code == 0 and "0 restore point(s)" in r.out, r.err
    assert (new / "config").exists()
    # An existing repository with points is imported.
    old = tmp_path / "old-repo"
    image = tmp_path / "disk.img"
    make_image(image, 8 << 20, seed=3)
    for _ in range(2):
        assert s.vmkeep("image", "backup", "--repo", str(old), "--name", "db01",
                        str(image)).code == 0
    # A relative path is taken from the caller's folder.
    r = s.vmkeep("repo", "add", "old", "--path", "old-repo", cwd=tmp_path)
    assert r.code == 0 and "2 restore point(s)" in r.out, r.err
    assert "already repository 'old'" in one_error(
        s.vmkeep("repo", "add", "again", "--path", str(old)), 2)
    assert "exists already" in one_error(s.vmkeep("repo", "add", "old", "--path",
                                                  str(tmp_path / "x")), 2)
    # A third point written offline shows after a rescan; restarting keeps both.
    assert s.vmkeep("image", "backup", "--repo", str(old), "--name", "db02",
                    str(image)).code == 0
    assert "3 restore point(s)" in s.vmkeep("repo", "rescan", "old").out
    assert s.vmkeep("appliance", "stop").code == 0
    assert s.vmkeep("appliance", "start").code == 0
    listing = {r["name"]: r for r in json.loads(s.vmkeep("repo", "list", "--json").out)}
    assert set(listing) == {"main", "old"}
    assert listing["old"]["points"] == 3 and listing["old"]["location"] == str(old)
    assert s.vmkeep("repo", "remove", "old").code == 0
    assert (old / "config").exists()  # the files stay
    assert [r["name"] for r in json.loads(s.vmkeep("repo", "list", "--json").out)] == ["main"]


def test_commands_without_an_appliance_say_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "nohome")}
    env.pop("VMKEEP_SOCKET", None)
    line = one_error(run_vmkeep(env, "repo", "list"), 13)
    assert "vmkeep appliance start" in line


def test_a_repositorys_ssh_password_is_sealed_too(setup: Setup, sshd: Sshd) -> None:
    """The account's SSH password (a string found nowhere else) as the password of an
    sftp:// repository: after adding it, a backup of the configuration and a restart, it is
    nowhere under the home but sealed in the store, and in no output or API answer. (The
    account's password is never changed here: the sshd of another test worker sets it when
    it starts, which raced a changed one.)"""
    s = setup
    secret = sshd.password
    url = sshd.url(f"sealed-{s.home.parent.name}")
    r = s.vmkeep("repo", "add", "ssh", "--path", url, "--password-stdin",
                 "--host-key-fingerprint", sshd.fingerprint, stdin=secret)
    assert r.code == 0, r.err
    r = s.vmkeep("config", "backup", "--repo", "ssh", "--password-stdin",
                 stdin="config-password-1")
    assert r.code == 0 and r.out.startswith(url), r
    assert s.vmkeep("appliance", "stop").code == 0
    assert s.vmkeep("appliance", "start").code == 0
    assert s.vmkeep("repo", "rescan", "ssh").code == 0  # the password came back sealed
    assert secret not in s.vmkeep("repo", "list", "--json").out
    s.vmkeep("appliance", "stop")
    for path in s.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    for r in s.runs:
        assert secret not in r.out + r.err
