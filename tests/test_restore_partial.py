"""Partial restore files: a restore writes ``.NAME.vmkeep-partial-…`` beside its target; one a
killed restore left is removed by the next restore into that folder, one a running restore is
writing is kept (the name carries the writer's pid and start time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT, make_image, poll, run_cli, run_inproc, sha256_of

KILLED = -9


def test_a_dead_restores_partial_file_goes_a_live_ones_stays(tmp_path: Path) -> None:
    cache, repo, image = tmp_path / "cache", tmp_path / "repo", tmp_path / "disk.img"
    make_image(image, size=4 << 20, seed=7)
    r = run_inproc(["image", "backup", "--repo", str(repo), "--name", "vm1", str(image)], cache)
    assert r.code == 0, r.err
    point = r.out.strip()
    out = tmp_path / "restored"
    out.mkdir()

    # A restore held while writing: its partial file is a live one.
    release = tmp_path / "release"
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache), "VMKEEP_HOLD_AT": "restore-writing",
           "VMKEEP_HOLD_RELEASE": str(release)}
    held = subprocess.Popen([sys.executable, "-m", "appliance.cli", "image", "restore",
                             "--repo", str(repo), point, str(out / "b.img")], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        poll("the held restore's partial file",
             lambda: list(out.glob(".b.img.vmkeep-partial-*")), 60, every=0.05)
        live = list(out.glob(".b.img.vmkeep-partial-*"))
        assert str(held.pid) in live[0].name

        # A restore killed while writing leaves its partial file, named with its pid (and its
        # own pass over the folder kept the held one's).
        killed = run_cli(["image", "restore", "--repo", str(repo), point, str(out / "a.img")],
                         tmp_path / "cache3", env={"VMKEEP_CRASH_AT": "restore-block-written"})
        assert killed.code == KILLED, killed.err
        dead = list(out.glob(".a.img.vmkeep-partial-*"))
        assert len(dead) == 1 and not (out / "a.img").exists()
        assert [p for p in live if p.exists()] == live

        # The next restore into the folder removes the dead one's file and says so (its own
        # catalog cache: the held restore holds the first).
        r = run_cli(["image", "restore", "--repo", str(repo), point, str(out / "c.img")],
                    tmp_path / "cache2")
        assert r.code == 0, r.err
        assert not dead[0].exists()
        assert dead[0].name in r.err
        assert [p for p in live if p.exists()] == live
        assert sha256_of(out / "c.img") == sha256_of(image)
    finally:
        release.touch()
        _stdout, stderr = held.communicate(timeout=120)
    assert held.returncode == 0, stderr
    assert sha256_of(out / "b.img") == sha256_of(image)
    assert sorted(p.name for p in out.iterdir()) == ["b.img", "c.img"]


def test_a_target_made_while_the_restore_wrote_is_not_overwritten(tmp_path: Path) -> None:
    """The target is checked before the restore starts and again when the written file takes
    its name: a file someone put there meanwhile is kept, the restore refused (exit 2)."""
    cache, repo, image = tmp_path / "cache", tmp_path / "repo", tmp_path / "disk.img"
    make_image(image, size=1 << 20, seed=8)
    r = run_inproc(["image", "backup", "--repo", str(repo), "--name", "vm1", str(image)], cache)
    assert r.code == 0, r.err
    target, release = tmp_path / "restored.img", tmp_path / "release"
    env = {**os.environ, "VMKEEP_CACHE_DIR": str(cache), "VMKEEP_HOLD_AT": "restore-writing",
           "VMKEEP_HOLD_RELEASE": str(release)}
    held = subprocess.Popen([sys.executable, "-m", "appliance.cli", "image", "restore",
                             "--repo", str(repo), r.out.strip(), str(target)], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        poll("the held restore's partial file",
             lambda: list(tmp_path.glob(".restored.img.vmkeep-partial-*")), 60, every=0.05)
        target.write_bytes(b"someone else's file")
    finally:
        release.touch()
        _stdout, stderr = held.communicate(timeout=120)
    assert held.returncode == 2, stderr
    assert "already exists" in stderr, stderr
    assert target.read_bytes() == b"someone else's file"
    assert not list(tmp_path.glob(".restored.img.vmkeep-partial-*"))
