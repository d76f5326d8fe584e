"""Encryption at rest (docs/FORMAT.md §8), through the offline CLI: a marker planted in
incompressible data is in the files of a plain control repository and in none of the
encrypted one's; backup, restore, verify and rescan work with the password; a wrong or a
missing password opens nothing and says so."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import MiB, run_cli, sha256_of

MARKER = b"vmkeep-marker-5d1c0e47a9b3f266"
PASSWORD = "correct horse battery staple"


def _image(path: Path) -> None:
    data = bytearray(os.urandom(8 * MiB))  # incompressible: stored as it is when plain
    for at in (12345, 3 * MiB + 7, 7 * MiB + 99):
        data[at : at + len(MARKER)] = MARKER
    path.write_bytes(bytes(data))


def _holds_marker(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and MARKER in p.read_bytes()]


def test_encrypted_repository_hides_the_data_and_needs_its_password(tmp_path: Path,
                                                                    cache: Path) -> None:
    image = tmp_path / "disk.img"
    _image(image)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    enc = ["--encryption-password-file", str(secret)]

    assert run_cli(["image", "backup", "--repo", str(plain), "--name", "db01", str(image)],
                   cache).code == 0
    r = run_cli(["image", "backup", "--repo", str(sealed), *enc, "--name", "db01",
                 str(image)], cache)
    assert r.code == 0, r.err
    point = r.out.strip()
    assert _holds_marker(plain), "the control repository should hold the marker"
    assert _holds_marker(sealed) == []
    assert b"db01" not in b"".join(p.read_bytes() for p in (sealed / "manifests").rglob("*")
                                   if p.is_file())

    # Without the password, or with a wrong one: nothing is read, the error says why.
    r = run_cli(["image", "points", "--repo", str(sealed)], cache / "other")
    assert r.code == 4 and "is encrypted: give its password" in r.err, r
    r = run_cli(["image", "points", "--repo", str(sealed), "--encryption-password-file",
                 str(wrong)], cache / "other")
    assert r.code == 4 and "password does not open" in r.err and "cannot be recovered" in r.err
    r = run_cli(["image", "restore", "--repo", str(sealed), "--encryption-password-file",
                 str(wrong), point, str(tmp_path / "nope.img")], cache)
    assert r.code == 4 and not (tmp_path / "nope.img").exists()
    r = run_cli(["image", "points", "--repo", str(plain), *enc], cache)
    assert r.code == 2 and "not encrypted" in r.err

    # With it: restore, verify, rescan (into a new catalog cache) and an incremental.
    out = tmp_path / "restored.img"
    r = run_cli(["image", "restore", "--repo", str(sealed), *enc, point, str(out)], cache)
    assert r.code == 0, r.err
    assert sha256_of(out) == sha256_of(image)
    r = run_cli(["image", "verify", "--repo", str(sealed), *enc], cache)
    assert r.code == 0 and "no damage found" in r.out, r.err
    fresh = cache / "fresh"
    r = run_cli(["image", "rescan", "--repo", str(sealed)], fresh,
                env={"VMKEEP_ENCRYPTION_PASSWORD": PASSWORD})
    assert r.code == 0 and "1 restore points" in r.out, (r.out, r.err)
    with image.open("r+b") as f:
        f.seek(5 * MiB)
        f.write(os.urandom(4096))
    r = run_cli(["image", "backup", "--repo", str(sealed), *enc, "--name", "db01",
                 str(image)], cache)
    assert r.code == 0, r.err
    listing = json.loads(run_cli(["image", "points", "--repo", str(sealed), *enc, "--json"],
                                 cache).out)
    assert len(listing) == 2  # (both read every block: no --changed list)
    assert listing[1]["bytes_stored"] < 2 * MiB  # deduplicated as in a plain repository
    out2 = tmp_path / "restored2.img"
    assert run_cli(["image", "restore", "--repo", str(sealed), *enc, listing[1]["id"],
                    str(out2)], cache).code == 0
    assert sha256_of(out2) == sha256_of(image)
