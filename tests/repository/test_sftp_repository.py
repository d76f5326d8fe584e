"""SSH repositories through the offline CLI, against a real OpenSSH server on 127.0.0.1:
full + incremental + restore byte-identical, the host key pinned (a changed key is refused
with both fingerprints; no fingerprint shows the one to pass), password logins, bad URLs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import MiB, change_image, make_image, run_cli, sha256_of, write_areas
from tests.sshd import Sshd


def _ssh(sshd: Sshd, fingerprint: str | None = None) -> list[str]:
    return ["--ssh-key", str(sshd.key_file), "--host-key-fingerprint",
            fingerprint or sshd.fingerprint]


def test_full_incremental_and_restore_through_sftp(tmp_path: Path, cache: Path,
                                                    sshd: Sshd) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 16 * MiB, seed=5)
    url = sshd.url("cli-roundtrip")  # missing: made by the first backup
    r1 = run_cli(["image", "backup", "--repo", url, *_ssh(sshd), "--name", "web01",
                  str(image)], cache)
    assert r1.code == 0, r1.err
    sha1 = sha256_of(image)
    areas = write_areas(tmp_path / "areas.json", change_image(image, seed=6))
    r2 = run_cli(["image", "backup", "--repo", url, *_ssh(sshd), "--name", "web01",
                  "--changed", str(areas), str(image)], cache)
    assert r2.code == 0, r2.err
    listing = json.loads(run_cli(["image", "points", "--repo", url, *_ssh(sshd), "--json"],
                                 cache).out)
    assert [p["kind"] for p in listing] == ["full", "incremental"]
    assert listing[1]["bytes_read"] < listing[0]["bytes_read"]
    # The files are on the host, as the account wrote them.
    packs = list((sshd.base / "cli-roundtrip" / "packs").rglob("*.pack"))
    assert packs and all(p.stat().st_uid == sshd.ids()[0] for p in packs)
    for point, sha in ((r1.out.strip(), sha1), (r2.out.strip(), sha256_of(image))):
        out = tmp_path / f"{point}.img"
        r = run_cli(["image", "restore", "--repo", url, *_ssh(sshd), point, str(out)], cache)
        assert r.code == 0, r.err
        assert sha256_of(out) == sha
    r = run_cli(["image", "verify", "--repo", url, *_ssh(sshd)], cache)
    assert r.code == 0 and "no damage found" in r.out, r.err


def test_the_host_key_is_pinned(tmp_path: Path, cache: Path, sshd: Sshd) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 2 * MiB, seed=7)
    url = sshd.url("pinning")
    # No fingerprint, no terminal: refused, with the fingerprint to pass.
    r = run_cli(["image", "backup", "--repo", url, "--ssh-key", str(sshd.key_file), "--name",
                 "a", str(image)], cache)
    assert r.code == 14 and sshd.fingerprint in r.err and "--host-key-fingerprint" in r.err, r
    assert not (sshd.base / "pinning").exists()
    old = sshd.fingerprint
    assert run_cli(["image", "backup", "--repo", url, *_ssh(sshd), "--name", "a", str(image)],
                   cache).code == 0
    # The host is "reinstalled": its new key is refused, both fingerprints are named.
    new = sshd.new_host_key()
    r = run_cli(["image", "backup", "--repo", url, *_ssh(sshd, old), "--name", "a",
                 str(image)], cache)
    assert r.code == 14, r
    assert old in r.err and new in r.err and "not the pinned" in r.err
    r = run_cli(["image", "points", "--repo", url, *_ssh(sshd, new), "--json"], cache)
    assert r.code == 0 and len(json.loads(r.out)) == 1, r.err
    r = run_cli(["image", "points", "--repo", url, "--ssh-key", str(sshd.key_file),
                 "--host-key-fingerprint", "SHA256:nonsense"], cache)
    assert r.code == 2 and "ssh-keygen -l -E sha256" in r.err


def test_password_login_and_what_is_refused(tmp_path: Path, cache: Path, sshd: Sshd) -> None:
    image = tmp_path / "disk.img"
    make_image(image, 2 * MiB, seed=8)
    url = sshd.url("password")
    pin = ["--host-key-fingerprint", sshd.fingerprint]
    r = run_cli(["image", "backup", "--repo", url, *pin, "--password-stdin", "--name", "a",
                 str(image)], cache, stdin=sshd.password)
    assert r.code == 0, r.err
    r = run_cli(["image", "points", "--repo", url, *pin, "--password-stdin"], cache,
                stdin="wrong password")
    assert r.code == 14 and "refused the login" in r.err and "wrong password" not in r.err
    r = run_cli(["image", "points", "--repo", url, *pin], cache)
    assert r.code == 2 and "--ssh-key" in r.err
    for bad in ("sftp://host/relative", "sftp:///no-host", f"sftp://{sshd.user}@h:99999/x"):
        r = run_cli(["image", "points", "--repo", bad, "--ssh-key", str(sshd.key_file)], cache)
        assert r.code == 2 and "sftp://USER@HOST[:PORT]/ABSOLUTE/PATH" in r.err, (bad, r)
    r = run_cli(["image", "points", "--repo", str(tmp_path), "--ssh-key", "k"], cache)
    assert r.code == 2 and "local folder" in r.err
