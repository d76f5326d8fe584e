"""Resume on disconnect: a loopback proxy between vmkeep and sshd cuts every connection three
times during a backup. The backup reconnects (and says so), completes as one point that
verifies and restores byte-identical, and re-sends less than (cuts × pack size)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.restore import restore_disk
from appliance.jobs.verify import verify_repository
from appliance.repository.address import Address
from appliance.repository.repo import DEFAULT_PACK_SIZE, Repository
from appliance.repository.sftp import Reconnect
from appliance.source import ImageFileSource
from appliance.ssh import SshAuth
from catalog.store import Catalog
from tests.helpers import MiB, in_ws, sha256_of, synced
from tests.proxy import CuttingProxy
from tests.sshd import Sshd


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(64 * MiB))  # incompressible: 4 packs of 16 MiB
    return path


@pytest.fixture
def proxies(sshd: Sshd) -> Iterator[list[CuttingProxy]]:
    made: list[CuttingProxy] = []
    yield made
    for p in made:
        p.close()


def _backup(sshd: Sshd, proxy: CuttingProxy, folder: str, image: Path,
            log: list[str]) -> tuple[Repository, Catalog, str]:
    url = f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{sshd.base}/{folder}"
    address = Address(url, SshAuth(key_file=str(sshd.key_file)), sshd.fingerprint,
                      Reconnect(every=0.2, give_up=60))
    repo = address.open(create=True, on_reconnect=log.append)
    cat = Catalog.open(None)
    synced(repo, cat)
    with repo.lock(exclusive=False, operation="backup"):
        result = in_ws(repo, cat, run_backup, "vm", [DiskInput(0, ImageFileSource(image), None)],
                            BackupOptions())
    return repo, cat, result.point_id


def test_a_backup_survives_three_cuts_without_starting_over(
        sshd: Sshd, image: Path, tmp_path: Path, proxies: list[CuttingProxy]) -> None:
    calm = CuttingProxy(sshd.port)
    proxies.append(calm)
    quiet: list[str] = []
    repo0, cat0, _ = _backup(sshd, calm, "resume-baseline", image, quiet)
    repo0.close()
    cat0.close()
    baseline = calm.upstream_bytes
    assert quiet == [] and calm.cuts == 0

    cutting = CuttingProxy(sshd.port, cut_at=(8 * MiB, 26 * MiB, 44 * MiB))
    proxies.append(cutting)
    log: list[str] = []
    repo, cat, point = _backup(sshd, cutting, "resume", image, log)
    try:
        assert cutting.cuts == 3
        assert any("dropped" in m and "reconnecting" in m for m in log), log
        assert [p.point_id for p in cat.points(repo.id)] == [point]  # one point, no restart
        resent = cutting.upstream_bytes - baseline
        assert resent < cutting.cuts * DEFAULT_PACK_SIZE, (resent, baseline)
        assert in_ws(repo, cat, verify_repository).ok
        out = tmp_path / "restored.img"
        in_ws(repo, cat, restore_disk, point, 0, out)
        assert sha256_of(out) == sha256_of(image)
    finally:
        repo.close()
        cat.close()
