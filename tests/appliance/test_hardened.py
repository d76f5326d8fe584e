"""A hardened repository on a real SSH host: after a backup its files are immutable (chattr
+i, set by the root-owned helper through one sudo rule); the appliance's account can neither
remove a pack nor lift the flag; prune refuses with the date; once the helper's clock (a
setting only root can change) passes the date, maintenance lifts the locks and prune works.
`repo audit` agrees with the host."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.appliance.lab import VM, Lab
from tests.helpers import REPO_ROOT
from tests.sshd import Sshd

CONF = Path("/etc/vmkeep-immutable.conf")


@pytest.fixture
def host(sshd: Sshd, tmp_path: Path) -> Iterator[Path]:
    """The repository folder on the "host", and the helper installed for the account —
    after checking that chattr +i really works there."""
    probe = sshd.base / f"probe-{tmp_path.name}"
    probe.write_bytes(b"x")
    try:
        r = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
        assert r.returncode == 0, f"chattr +i does not work on {sshd.base}: {r.stderr}"
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
        probe.unlink()
    root = sshd.base / f"hardened-{tmp_path.name}"
    saved = CONF.read_text() if CONF.exists() else None
    yield root
    subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True)
    Path(f"/etc/sudoers.d/vmkeep-immutable-{sshd.user}").unlink(missing_ok=True)
    if saved is None:
        CONF.unlink(missing_ok=True)
    else:
        CONF.write_text(saved)


def _install(sshd: Sshd, root: Path) -> None:
    r = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install-immutable-helper.sh"),
                        sshd.user, str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_hardened_repository_holds_until_the_hosts_clock_says(lab: Lab, sshd: Sshd,
                                                                host: Path) -> None:
    url = sshd.url(host.name)
    login = ["--ssh-key", str(sshd.key_file), "--host-key-fingerprint", sshd.fingerprint]
    assert lab.vmkeep("repo", "add", "hard", "--path", url, *login).code == 0
    r = lab.vmkeep("repo", "harden", "hard", "--days", "7")
    assert r.code != 0 and "install-immutable-helper.sh" in r.err, r  # no helper yet
    _install(sshd, host)
    assert lab.vmkeep("repo", "harden", "hard", "--days", "3").code == 2  # under 7 days
    r = lab.vmkeep("repo", "harden", "hard", "--days", "7", "--epoch-days", "7")
    assert r.code == 0 and "hardened (7 days" in r.out, r.err

    assert lab.vmkeep("job", "create", "j", "--vcenter", "vc", "--vm", VM, "--repo", "hard",
                      "--enable-cbt").code == 0
    for n in range(2):
        lab.write(n << 16, b"run %d" % n)
        r = lab.vmkeep("job", "run", "j", "--wait")
        assert r.code == 0, r.err
    log = " ".join(x["message"] for x in json.loads(
        lab.vmkeep("session", "show", r.out.strip(), "--json").out)["log"])
    assert "made immutable until" in log

    # The account cannot remove a pack, nor lift the flag.
    pack = next(host.rglob("*.pack"))
    assert "i" in subprocess.run(["lsattr", str(pack)], capture_output=True,
                                 text=True).stdout.split()[0]
    assert sshd.run_as_user("rm", "-f", str(pack)).returncode != 0
    assert sshd.run_as_user("chattr", "-i", str(pack)).returncode != 0
    assert pack.exists()
    assert lab.vmkeep("repo", "audit", "hard").code == 0
    # A rescan rebuilds the index; the ledger comes back from the repository's own records.
    assert lab.vmkeep("repo", "rescan", "hard").code == 0
    r = lab.vmkeep("repo", "audit", "hard")
    assert r.code == 0 and r.out.startswith("ok"), (r.out, r.err)
    listed = json.loads(lab.vmkeep("repo", "list", "--json").out)
    hard = next(x for x in listed if x["name"] == "hard")
    assert hard["immutable_days"] == 7 and hard["immutable_until"]

    # Prune refuses, naming the date.
    r = lab.vmkeep("prune", "--repo", "hard", "--keep-last", "1")
    assert r.code == 6 and "immutable until" in r.err, r
    found = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d)", r.err)
    assert found is not None, r.err
    until = datetime.strptime(found[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)  # says UTC
    assert 7 <= (until - datetime.now(UTC)).days <= 15
    assert len(json.loads(lab.vmkeep("points", "list", "--json").out)) == 2

    # The host's clock passes the date: maintenance lifts the locks, prune goes through.
    CONF.write_text(CONF.read_text() + f"now {int(until.timestamp()) + 86400 * 10}\n")
    r = lab.vmkeep("prune", "--repo", "hard", "--keep-last", "1")
    assert r.code == 0, r.err
    assert len(json.loads(lab.vmkeep("points", "list", "--json").out)) == 1
    for left in host.rglob("*.pack"):  # every lock expired: none is immutable any more
        assert "i" not in subprocess.run(["lsattr", str(left)], capture_output=True,
                                         text=True).stdout.split()[0], left
