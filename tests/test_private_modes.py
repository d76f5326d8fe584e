"""Private by default (issue 11): under the usual umask 022 and in a folder everyone can read
(/tmp, not pytest's 0700 temporary root, which would hide the problem), what vmkeep makes —
a repository made by `image backup`, the offline catalog cache, a repository on an SSH host —
is its owner's alone: every folder 0700, every file 0600, and `nobody` can open or list none
of it. A repository left open by an older vmkeep is tightened by the next backup, which names
each path it changed and leaves an immutable file as it is."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from appliance.private import tighten_tree
from appliance.repository.address import Address, tighten
from appliance.repository.repo import Repository
from appliance.ssh import SshAuth
from catalog.store import Catalog
from tests.helpers import REPO_ROOT, CliResult, MiB, make_image, skip_unless_ci
from tests.private import (
    as_nobody,
    assert_private,
    every_path,
    need_root,
    open_dir,
    shared_modes,
    umask022,
)
from tests.sshd import Sshd

__all__ = ["open_dir", "umask022"]  # fixtures

def vmkeep(env: dict[str, str], *args: str) -> CliResult:
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_the_nobody_probe_sees_what_is_open(open_dir: Path) -> None:
    """The probe itself: an open folder and file are "ok" to nobody, a 0700 one is not."""
    need_root()
    (open_dir / "open.txt").write_text("x")  # 0644 under umask 022
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    got = as_nobody([open_dir, open_dir / "open.txt", closed])
    assert got == {str(open_dir): "ok", str(open_dir / "open.txt"): "ok", str(closed): "EACCES"}


def test_image_backup_makes_a_private_repository_and_catalog_cache(open_dir: Path,
                                                                    tmp_path: Path) -> None:
    need_root()
    image = tmp_path / "disk.img"
    make_image(image, 4 * MiB, seed=3)
    # No VMKEEP_CACHE_DIR: the default cache folder, under the user's data folder.
    env = {k: v for k, v in os.environ.items() if k != "VMKEEP_CACHE_DIR"}
    env["XDG_DATA_HOME"] = str(open_dir / "data")
    r = vmkeep(env, "image", "backup", "--repo", str(open_dir / "repo"), "--name", "db01",
               str(image))
    assert r.code == 0, r.err
    assert "warning" not in r.err  # a new repository: nothing to tighten
    repo = open_dir / "repo"
    paths = assert_private(repo)
    assert any(p.parent.name == "keys" for p in paths)  # the block-id key among them
    assert any(p.suffix == ".pack" for p in paths)
    assert (repo / "manifests").is_dir() and any((repo / "manifests").iterdir())
    caches = assert_private(open_dir / "data")
    assert any(p.suffix == ".duckdb" for p in caches)


def test_the_repository_layer_makes_private_files_itself(open_dir: Path) -> None:
    """Without the CLI's umask: the backend's own modes (keys, config, locks, removed/
    records, tmp/) and a new catalog file are private under umask 022."""
    repo = Repository.open_local(open_dir / "repo", create=True)
    with repo.lock(exclusive=False, operation="test") as held:
        assert (open_dir / "repo" / held.name).exists()
        repo.note_removed(["20260101T000000Z-00000000"])
        repo.backend.put("tmp/left-behind", b"x")
        shared = shared_modes(every_path(open_dir / "repo"))
    assert shared == {}
    cat = Catalog.open(open_dir / "cache" / "c.duckdb")
    cat.close()
    assert shared_modes(every_path(open_dir / "cache")) == {}


def test_image_backup_tightens_an_open_repository_and_names_what_it_changed(
        open_dir: Path, tmp_path: Path) -> None:
    """A repository an older vmkeep made 0755/0644: the next backup makes it private, naming
    each path on stderr; a file held immutable is named as left as it is."""
    need_root()
    image = tmp_path / "disk.img"
    make_image(image, 4 * MiB, seed=4)
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(open_dir / "cache")}
    repo = open_dir / "repo"
    assert vmkeep(env, "image", "backup", "--repo", str(repo), "--name", "a",
                  str(image)).code == 0
    for p in every_path(repo):
        p.chmod(0o755 if p.is_dir() else 0o644)
    manifest = next((repo / "manifests").iterdir())
    if subprocess.run(["chattr", "+i", str(manifest)], capture_output=True).returncode != 0:
        skip_unless_ci(f"chattr +i does not work under {open_dir}")
    key = next((repo / "keys").iterdir())
    assert as_nobody([key])[str(key)] == "ok"  # open, as the issue found it
    r = vmkeep(env, "image", "backup", "--repo", str(repo), "--name", "a", str(image))
    assert r.code == 0, r.err
    warning = next(line for line in r.err.splitlines() if "group or other access" in line)
    assert f"{repo} (0755 -> 0700)" in warning
    assert f"{key} (0644 -> 0600)" in warning
    assert f"{manifest} (0644: immutable, left as it is)" in warning
    subprocess.run(["chattr", "-i", str(manifest)], check=True)
    assert shared_modes(every_path(repo)) == {str(manifest): "0644"}
    assert as_nobody([key])[str(key)] == "EACCES"


def test_an_ssh_repository_is_private_on_the_host(sshd: Sshd, umask022: None) -> None:
    """Folders 0700 and files 0600 on the host whatever its SFTP server's umask, and an
    open one is tightened (an immutable file reported, not changed)."""
    need_root()
    name = "private-modes"
    address = Address(sshd.url(name), SshAuth(key_file=str(sshd.key_file)), sshd.fingerprint)
    with address.open(create=True) as repo:
        with repo.lock(exclusive=False, operation="test"):
            repo.note_removed(["20260101T000000Z-00000000"])
            repo.backend.put("packs/ab/ab.pack", b"x" * 1000)
        root = sshd.base / name
        paths = every_path(root)
        assert {p.relative_to(root).parts[0] for p in paths[1:]} >= {"config", "keys", "locks",
                                                                    "removed", "packs", "tmp"}
        assert shared_modes(paths) == {}
        for p in paths:
            assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
        # Opened up (an older vmkeep under umask 022), one file immutable on the host.
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
        held = root / "packs" / "ab" / "ab.pack"
        if subprocess.run(["chattr", "+i", str(held)], capture_output=True).returncode != 0:
            skip_unless_ci(f"chattr +i does not work under {root}")
        try:
            changed = {t.path: t for t in tighten(repo.backend)}
        finally:
            subprocess.run(["chattr", "-i", str(held)], check=True)
    host = f"{sshd.user}@{sshd.host}:{sshd.port}"
    assert changed[f"{host}:{root}"].new == 0o700
    assert changed[f"{host}:{root}/config"].new == 0o600
    assert changed[f"{host}:{held}"].new is None
    assert "immutable" in changed[f"{host}:{held}"].why
    assert shared_modes(every_path(root)) == {str(held): "0644"}


def test_tighten_tree_leaves_symbolic_links_and_what_is_outside(open_dir: Path) -> None:
    """A link in a repository is neither followed nor changed: what it points at is not the
    repository's to change."""
    outside = open_dir / "outside.txt"
    outside.write_text("x")
    inside = open_dir / "repo"
    inside.mkdir()
    (inside / "link").symlink_to(outside)
    changed = tighten_tree(inside)
    assert [t.path for t in changed] == [str(inside)]
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_an_open_cache_folder_is_made_private_but_only_its_cache_files(
        open_dir: Path, tmp_path: Path) -> None:
    """The cache folder may be the administrator's (VMKEEP_CACHE_DIR): it and vmkeep's cache
    files in it are made private, named on stderr; what else is there is left as it is. A
    folder shared by design (sticky, like /tmp) is named and left, and the backup works."""
    image = tmp_path / "disk.img"
    make_image(image, 2 * MiB, seed=6)
    cache = open_dir / "cache"
    cache.mkdir()  # 0755 under umask 022
    old = cache / ("0" * 32 + ".duckdb")
    old.write_bytes(b"")  # an older vmkeep's cache file, 0644
    other = cache / "notes.txt"
    other.write_text("not vmkeep's\n")
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache)}
    r = vmkeep(env, "image", "backup", "--repo", str(open_dir / "repo"), "--name", "a",
               str(image))
    assert r.code == 0, r.err
    warning = next(line for line in r.err.splitlines() if "group or other access" in line)
    assert f"the catalog cache {cache} had" in warning
    assert f"{cache} (0755 -> 0700)" in warning and f"{old} (0644 -> 0600)" in warning
    assert str(other) not in warning
    assert stat.S_IMODE(other.stat().st_mode) == 0o644
    assert shared_modes(every_path(cache)) == {str(other): "0644"}

    sticky = open_dir / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    env["VMKEEP_CACHE_DIR"] = str(sticky)
    r = vmkeep(env, "image", "backup", "--repo", str(open_dir / "repo"), "--name", "a",
               str(image))
    assert r.code == 0, r.err
    assert f"{sticky} (1777: a folder shared by design" in r.err
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777
    assert shared_modes(every_path(sticky)[1:]) == {}  # its cache file is private anyway
    assert [t.path for t in tighten_tree(sticky)] == [str(sticky)]
